"""Helpers for running the system without Docker: the object store, the broker, readiness."""
