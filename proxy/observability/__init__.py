"""What operators see: Prometheus metrics, structured logs, OpenTelemetry traces, health and
readiness."""
