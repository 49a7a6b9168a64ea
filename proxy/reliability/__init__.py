"""Retries, fallbacks and circuit breakers: getting a paid image made despite a flaky upstream,
without ever paying twice."""
