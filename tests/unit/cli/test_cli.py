"""The ``image-proxy`` command: refusals before anything is served (``check-config`` judging as
``serve`` does), ``new-key``, config errors, ``--help``, what ``serve`` says at start-up.

(``image-proxy serve`` answering requests is in ``tests/e2e/cli/``.)"""

from __future__ import annotations

import argparse
import hashlib
import re
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


def check_config(tmp_path, text: str, *args: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    return subprocess.run([sys.executable, "-m", "proxy", "check-config", "--config", str(path),
                           *args], capture_output=True, text=True, timeout=60)


def test_check_config_reports_the_models_a_providers_only_config_serves(tmp_path) -> None:
    done = check_config(tmp_path, "providers:\n  openai: {api_key: sk-test-not-real}\n")
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert first.startswith("configuration OK: 6 model(s) served: ")
    assert "openai/gpt-image-1," in first and "openai/dall-e-2" in first
    assert "sk-test-not-real" not in done.stdout + done.stderr


def test_check_config_refuses_what_serve_refuses(tmp_path) -> None:
    text = "server: {host: 0.0.0.0}\nmodels: [{name: local, provider: local}]\n"
    checked = check_config(tmp_path, text)
    served = subprocess.run([sys.executable, "-m", "proxy", "serve", "--config",
                             str(tmp_path / "gateway.yaml")],
                            capture_output=True, text=True, timeout=60)
    assert checked.returncode == served.returncode == 2
    assert "refusing to serve 0.0.0.0 with no keys configured" in checked.stderr
    assert "refusing to serve 0.0.0.0 with no keys configured" in served.stderr
    assert "configuration OK" not in checked.stdout
    # The same flags change both verdicts the same way.
    assert check_config(tmp_path, text, "--allow-open").returncode == 0
    assert check_config(tmp_path, text, "--host", "127.0.0.1").returncode == 0
    local = "models: [{name: local, provider: local}]\n"
    refused = check_config(tmp_path, local, "--host", "0.0.0.0")
    assert refused.returncode == 2 and "refusing to serve 0.0.0.0" in refused.stderr


def test_help_is_plain_text() -> None:
    from proxy.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    texts = [parser.format_help(), *(p.format_help() for p in commands.choices.values())]
    for text in texts:
        # No reStructuredText or Markdown markup (``literal``, :role:`x`, **bold**).
        assert not re.search(r"``|:[a-z]+:`|\*\*|`", text), text
    assert "image-proxy: an OpenAI-compatible image-generation gateway." in texts[0]
    assert "check-config" in texts[0] and "examples:" in texts[0]
    run = subprocess.run([sys.executable, "-m", "proxy", "--help"], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0 and run.stdout == texts[0]


def test_startup_lines_name_the_playground_and_the_api_reference() -> None:
    from proxy.cli import base_url, startup_lines
    from proxy.config import load_config_text

    config = load_config_text("server: {host: 0.0.0.0, port: 9123, base_paths: ['/v1']}\n"
                              "models: [{name: local, provider: local}]\n")
    lines = startup_lines(config, ["local"])
    assert lines[0].startswith("image-proxy ") and "1 model(s)" in lines[0]
    assert "http://127.0.0.1:9123/v1" in lines[0]
    assert "playground: http://127.0.0.1:9123/" in lines
    assert any(line.startswith("API reference: http://127.0.0.1:9123/docs") for line in lines)
    assert base_url("::", 80) == "http://[::1]:80"
    assert base_url("10.1.2.3", 8080) == "http://10.1.2.3:8080"
