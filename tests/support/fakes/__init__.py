"""Fake upstreams that speak each provider's real wire format, for tests on loopback."""
