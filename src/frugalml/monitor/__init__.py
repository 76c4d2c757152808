"""Monitoring: Prometheus metrics (alerts and drift come in later stages)."""
