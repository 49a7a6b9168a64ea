"""The gateway as the benchmark runs it: ``python -m proxy serve`` with a generated configuration
(one ``openai`` model in front of the fake upstream, its usage ledger in a temporary data_dir, no
keys, everything else default), optionally in Redis mode and with ``--workers N``.

Nothing here tunes the gateway: the bench measures its defaults. The model's timeouts are set
explicitly only to say that 20 s jobs are well inside them (the defaults are longer still).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchlib import payloads
from benchlib.fleet import Fleet

HOST = "127.0.0.1"


def gateway_config(tmp: Path, name: str, port: int, upstream_port: int, *,
                   redis_url: str | None = None) -> Path:
    """The gateway's configuration file ``<tmp>/<name>.yaml``, data in ``<tmp>/data-<name>``."""
    path = tmp / f"{name}.yaml"
    redis = (f"redis_url: {json.dumps(redis_url)}\nredis_prefix: bench-{name}-{port}\n"
             if redis_url else "")
    path.write_text(f"""\
server:
  host: {HOST}
  port: {port}
  shutdown_grace: 1
data_dir: {json.dumps(str(tmp / f"data-{name}"))}
{redis}models:
  - name: {payloads.MODEL}
    provider: openai
    upstream_model: gpt-image-1
    base_url: "http://{HOST}:{upstream_port}/v1"
    api_key: sk-bench-not-a-real-key
    timeout: {{connect: 10, first_byte: 120, total: 300}}
""")
    return path


def spawn_gateway(fleet: Fleet, root: str, name: str, config: Path, port: int, *,
                  workers: int = 1) -> subprocess.Popen[bytes]:
    """Start it (its open-file limit raised to the hard limit by the fleet, like every child)."""
    argv = [sys.executable, "-m", "proxy", "serve", "--config", str(config), "--port", str(port),
            "--log-level", "warning"]
    if workers > 1:
        argv += ["--workers", str(workers)]
    return fleet.spawn(name, argv, cwd=root)
