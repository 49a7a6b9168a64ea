"""The ``image-proxy`` command: refusals before anything is served, ``new-key``, config errors.

(``image-proxy serve`` answering requests is in ``tests/e2e/cli/``.)"""

from __future__ import annotations

import hashlib
import subprocess
import sys

from tests.support.servers import free_port


def test_no_keys_means_loopback_only() -> None:
    port = free_port()
    refused = subprocess.run([sys.executable, "-m", "proxy", "serve", "--host", "0.0.0.0",
                              "--port", str(port)], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2
    assert "refusing to serve 0.0.0.0 with no keys configured" in refused.stderr


def test_open_bind_rules() -> None:
    from proxy.cli import open_bind_refusal
    from proxy.config import load_config_text

    def config(extra: str = "", host: str = "0.0.0.0"):
        return load_config_text(f"server: {{host: '{host}'{extra}}}\n"
                                "models: [{name: local, provider: local}]\n")

    assert open_bind_refusal(config(host="127.0.0.1")) is None
    assert open_bind_refusal(config(host="::1")) is None
    assert open_bind_refusal(config(host="localhost")) is None
    assert open_bind_refusal(config()) is not None
    assert open_bind_refusal(config(", allow_open: true")) is None
    keyed = load_config_text("server: {host: 0.0.0.0}\nmodels: [{name: l, provider: local}]\n"
                             "keys: [{name: a, key_sha256: " + "a" * 64 + "}]\n")
    assert open_bind_refusal(keyed) is None


def test_cli_new_key_prints_a_key_and_its_hash() -> None:
    run = subprocess.run([sys.executable, "-m", "proxy", "new-key", "--name", "ci"],
                         capture_output=True, text=True, timeout=60)
    lines = dict(line.split(":", 1) for line in run.stdout.strip().splitlines())
    key, digest = lines["key"].strip(), lines["key_sha256"].strip()
    assert key.startswith("ipk_") and len(key) > 40
    assert hashlib.sha256(key.encode()).hexdigest() == digest
    assert "name: ci" in run.stderr


def test_cli_reports_config_errors_and_exits_2(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  - name: a\n    provider: nope\n")
    run = subprocess.run([sys.executable, "-m", "proxy", "serve", "--config", str(bad)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "bad.yaml:3: models[0].provider: unknown provider 'nope'" in run.stderr
    assert "Traceback" not in run.stderr
