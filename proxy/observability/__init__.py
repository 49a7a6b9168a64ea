"""What operators see: Prometheus metrics, structured logs, health and readiness."""
