"""Configuration: interpolation, validation errors that name the field and the line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from proxy.config import ConfigError, load_config_text, load_default_config
from proxy.service.gateway import load_checked_text


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_checked_text(text, source="gw.yaml")
    return caught.value.problems


def test_env_interpolation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_UPSTREAM_KEY", "sk-secret")
    config = load_config_text("""
models:
  - name: openai/gpt-image-1
    provider: openai
    api_key: ${TEST_UPSTREAM_KEY}
    base_url: ${TEST_UNSET_BASE:-http://127.0.0.1:9/v1}
""")
    model = config.models[0]
    assert model.provider_settings["api_key"] == "sk-secret"
    assert model.provider_settings["base_url"] == "http://127.0.0.1:9/v1"
    assert model.resolved_upstream_model() == "gpt-image-1"


def test_missing_env_var_names_field_and_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_MISSING_KEY", raising=False)
    found = problems("""models:
  - name: a
    provider: openai
    api_key: ${TEST_MISSING_KEY}
""")
    assert found == [
        "gw.yaml:4: models[0].api_key: environment variable TEST_MISSING_KEY is not set"
    ]


def test_unknown_provider_and_misspelt_key_name_their_lines() -> None:
    found = problems("""models:
  - name: a
    provider: opnai
  - name: b
    provider: openai
    base_ur: http://x
  - name: c
    provider: local
    timeout: {connect: -1}
""")
    assert found[0].startswith("gw.yaml:3: models[0].provider: unknown provider 'opnai'")
    assert found[1] == "gw.yaml:6: models[1].base_ur: unknown key"
    assert found[2].startswith("gw.yaml:9: models[2].timeout.connect:")


def test_yaml_syntax_error_has_a_line() -> None:
    assert problems("models:\n  - name: [unclosed\n")[0].startswith("gw.yaml:")


def test_duplicate_names_and_missing_models() -> None:
    assert "used twice" in problems("""models:
  - {name: a, provider: local}
  - {name: b, provider: local, aliases: [a]}
""")[0]
    assert "models" in problems("server: {port: 1}\n")[0]


def test_embedded_default_serves_the_local_renderer() -> None:
    config = load_default_config()
    assert config.server.host == "127.0.0.1" and config.server.port == 8080
    assert {m.provider for m in config.models} == {"local"}
    assert config.default_model == "local"


def test_provider_checks_report_the_setting_line(tmp_path) -> None:
    (tmp_path / "flow.json").write_text('{"1": {"class_type": "X", "inputs": {"text": ""}}}')
    found = problems(f"""models:
  - name: comfy
    provider: comfyui
    base_url: http://127.0.0.1:8188
    workflow: {tmp_path}/flow.json
    inputs:
      prompt: ["9", text]
""")
    assert found == [f"gw.yaml:7: models[0].inputs.prompt: node '9' is not in {tmp_path}/flow.json"]


def test_unknown_provider_section_is_named() -> None:
    assert problems("providers:\n  opneai: {api_key: x}\n")[0].startswith(
        "gw.yaml:2: providers.opneai: unknown provider 'opneai'")


def test_provider_wide_timeouts_and_retries() -> None:
    from proxy.routing import build_models
    from proxy.upstream.client import UpstreamClient

    config = load_config_text("""
providers:
  openai: {api_key: sk-x, timeout: {first_byte: 300, total: 400}, retries: 4}
models:
  - {name: openai/gpt-image-1, provider: openai, timeout: {total: 60}}
""")
    table = build_models(config, UpstreamClient())
    assert table.resolve("openai/dall-e-3").config.timeout.first_byte == 300
    assert table.resolve("openai/dall-e-3").config.retries == 4
    own = table.resolve("openai/gpt-image-1").config
    assert own.timeout.total == 60 and own.timeout.first_byte == 600, "its own timeout wins"
    assert own.retries == 4
    assert problems("providers:\n  openai: {timeout: {total: -1}}\n")[0].startswith(
        "gw.yaml:2: providers.openai.timeout.total:")


def test_on_disconnect_per_gateway_provider_model_and_key() -> None:
    from proxy.routing import build_models
    from proxy.upstream.client import UpstreamClient

    config = load_config_text(f"""
jobs: {{on_disconnect: finish, replay_seconds: 30}}
providers:
  openai: {{api_key: sk-x, on_disconnect: finish}}
models:
  - {{name: openai/gpt-image-1, provider: openai, on_disconnect: cancel}}
  - {{name: local, provider: local}}
keys:
  - {{name: app, key_sha256: "{'a' * 64}", on_disconnect: cancel}}
""")
    assert (config.jobs.on_disconnect, config.jobs.replay_seconds) == ("finish", 30)
    assert config.keys[0].on_disconnect == "cancel"
    table = build_models(config, UpstreamClient())
    assert table.resolve("openai/dall-e-3").config.on_disconnect == "finish"
    assert table.resolve("openai/gpt-image-1").config.on_disconnect == "cancel", "its own wins"
    assert table.resolve("local").config.on_disconnect is None
    found = problems("models:\n  - {name: local, provider: local, on_disconnect: keep}\n")
    assert found[0].startswith("gw.yaml:2: models[0].on_disconnect:")
    assert problems("jobs: {replay_seconds: 0}\nmodels: [{name: l, provider: local}]\n")


def test_usage_database_url_from_the_environment_is_a_secret(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_LEDGER_URL", "postgresql://gw:pa55word@db.internal:5432/ledger")
    config = load_checked_text("models: [{name: local, provider: local}]\n"
                               "usage:\n  database_url: ${TEST_LEDGER_URL}\n")
    url = config.usage.database_url
    assert url is not None
    assert url.get_secret_value() == "postgresql://gw:pa55word@db.internal:5432/ledger"
    assert "pa55word" not in repr(config) and "pa55word" not in str(config.usage)
    assert load_checked_text("models: [{name: local, provider: local}]").usage.database_url \
        is None  # SQLite in data_dir


@pytest.mark.parametrize("url", ["mysql://gw:pa55word@db/ledger", "redis://127.0.0.1:6379/0",
                                 "postgresql://gw:pa55word@db:99999/ledger", "db.internal"])
def test_usage_database_url_must_be_postgres_and_is_never_echoed(url: str) -> None:
    found = problems("models: [{name: local, provider: local}]\n"
                     f"usage: {{database_url: {url}}}\n")
    assert len(found) == 1 and found[0].startswith("gw.yaml:2: usage.database_url: ")
    assert "pa55word" not in found[0] and url not in found[0]


def test_check_config_accepts_a_postgres_ledger(tmp_path) -> None:
    config = tmp_path / "gw.yaml"
    config.write_text("models: [{name: local, provider: local}]\n"
                      "usage: {database_url: 'postgres://gw:pa55word@127.0.0.1:1/ledger'}\n")
    done = subprocess.run([sys.executable, "-m", "proxy", "check-config", "--config",
                           str(config)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr  # checked, not connected to
    assert "configuration OK" in done.stdout and "pa55word" not in done.stdout + done.stderr


def test_fleet_and_limits_settings() -> None:
    config = load_config_text("models: [{name: local, provider: local}]\n")
    assert (config.fleet.lease_seconds, config.fleet.store_timeout) == (10.0, 1.0)
    assert config.limits.on_store_failure == "fail_open"
    found = problems("""fleet: {lease_seconds: 1.5, store_timeout: 0.6}
limits: {on_store_failure: fail_shut}
models: [{name: local, provider: local}]
""")
    assert any(p.startswith("gw.yaml:1: fleet:") and "at most a third of lease_seconds" in p
               for p in found), found
    assert any(p.startswith("gw.yaml:2: limits.on_store_failure:") for p in found), found


def test_unknown_block_key_names_its_own_line() -> None:
    found = problems("""server:
  host: 127.0.0.1
  bogus:
    nested: 1
tracing:
  enabled: true
models:
  - name: local
    provider: local
    timeout:
      conect: 3
""")
    assert "gw.yaml:3: server.bogus: unknown key" in found
    assert "gw.yaml:5: tracing: unknown key" in found
    assert "gw.yaml:11: models[0].timeout.conect: unknown key" in found


def test_empty_environment_variable_is_refused_naming_it_and_the_field(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_EMPTY_KEY", "")
    found = problems("""providers:
  openai:
    api_key: ${TEST_EMPTY_KEY}
""")
    assert found == ["gw.yaml:3: providers.openai.api_key: environment variable TEST_EMPTY_KEY "
                     "is empty (set it, or write ${TEST_EMPTY_KEY:-} where an empty value is "
                     "meant)"]
    # An empty value that is meant says so; a default replaces an empty variable.
    config = load_config_text("models: [{name: local, provider: local}]\n"
                              "redis_prefix: 'gw${TEST_EMPTY_KEY:-}'\n"
                              "data_dir: ${TEST_EMPTY_KEY:-/tmp/gw}\n")
    assert (config.redis_prefix, str(config.data_dir)) == ("gw", "/tmp/gw")
