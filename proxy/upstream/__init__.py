"""Talking to upstreams: the shared HTTP client and the byte-level SSE decoder."""
