"""Pieces of ``scripts/bench.py``: the gateway measured against the fake upstream called directly
and against a bare relay, on loopback, in one run.

- ``payloads``: the pre-built answers of the fake upstream (and the timing stamp they carry);
- ``servers``: the fake upstream and the bare relay as Starlette apps;
- ``fleet``: every process a run starts (and stops), free ports, readiness, memory and CPU
  readings, the machine's load;
- ``gateway``: the gateway's generated configuration and command line;
- ``load``: the HTTP load generator and the SSE latency probe;
- ``fanout``: Socket.IO subscribers in worker processes, and the fan-out measurement;
- ``redismode``: Redis mode against memory mode, ``--workers 2`` against 1 worker;
- ``longjobs`` / ``longclient``: thousands of concurrent long jobs, the coordinator and the
  client processes;
- ``peer``: LiteLLM's proxy, when installed;
- ``report`` / ``report_scale``: the one markdown table, targets and verdicts;
- ``runinfo``: the machine and the commit measured, the lines under the table.
"""
