"""Pieces of ``scripts/bench.py``: the gateway measured against the fake upstream called directly
and against a bare relay, on loopback, in one run.

- ``payloads``: the pre-built answers of the fake upstream (and the SSE timing stamp);
- ``servers``: the fake upstream and the bare relay as Starlette apps;
- ``fleet``: every process a run starts (and stops), free ports, readiness, memory readings;
- ``load``: the HTTP load generator and the SSE latency probe;
- ``fanout``: Socket.IO subscribers in worker processes, and the fan-out measurement;
- ``report``: the one markdown table, targets and verdicts.
"""
