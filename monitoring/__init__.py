"""Monitoring scripts (queue_monitor.py, performance_monitor.py) and the Prometheus / Grafana setup."""
