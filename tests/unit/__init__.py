"""Unit tests. A package so that test_pipeline.py does not clash with tests/integration's."""
