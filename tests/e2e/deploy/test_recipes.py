"""The fleet recipe and the systemd unit, checked by the tools that will read them.

deploy/compose.yaml against the Compose Specification's JSON schema (vendored, see
tests/support/data/README.md), deploy/nginx.conf with ``nginx -t`` (Debian's nginx), and
deploy/image-proxy.service with ``systemd-analyze verify`` and its offline security review; the
configurations they hand the gateway with ``image-proxy check-config``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from proxy.config.schema import ServerConfig
from tests.support.compose import DEPLOY, compose, gateway_environment
from tests.support.dockerfile import exec_form, stages
from tests.support.nginx import nginx_binary, with_writable_paths
from tests.support.paths import REPO_ROOT

SCHEMA = Path(__file__).parents[2] / "support" / "data" / "compose-spec.json"
# compose-spec/compose-spec, schema/compose-spec.json at commit 170098ba (2026-06-23)
SCHEMA_SHA256 = "1f91e091f16b2dd50ab8860e02bb391d22df553d91c145eacedb1b6eff9c3f0e"


def compose_errors(document: dict[str, Any]) -> list[str]:
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(document)]


def test_vendored_compose_schema_is_the_published_file() -> None:
    assert hashlib.sha256(SCHEMA.read_bytes()).hexdigest() == SCHEMA_SHA256


def test_compose_file_follows_the_compose_specification() -> None:
    assert compose_errors(compose()) == []


def test_compose_schema_check_catches_a_broken_file() -> None:
    broken = copy.deepcopy(compose())
    broken["services"]["gateway"]["deploy"]["replicas"] = [2]
    broken["services"]["gateway"]["helthcheck"] = broken["services"]["gateway"]["healthcheck"]
    errors = compose_errors(broken)
    assert any("replicas" in e for e in errors), errors
    assert any("helthcheck" in e for e in errors), errors


def test_compose_runs_a_fleet_behind_the_reverse_proxy() -> None:
    services = compose()["services"]
    gateway, proxy = services["gateway"], services["proxy"]
    assert gateway["deploy"]["replicas"] >= 2
    assert {"redis", "postgres"} <= set(gateway["depends_on"])
    assert all(dep["condition"] == "service_healthy" for dep in gateway["depends_on"].values())
    assert all("healthcheck" in service for service in services.values())
    # the reverse proxy is the only published port
    assert [name for name, s in services.items() if "ports" in s] == ["proxy"]
    # the image built is this repository's Dockerfile, its health check the image's
    assert (DEPLOY / gateway["build"]["context"] / gateway["build"]["dockerfile"]).resolve() == (
        REPO_ROOT / "Dockerfile")
    final = stages(REPO_ROOT / "Dockerfile")[-1]
    assert gateway["healthcheck"]["test"] == ["CMD", *exec_form(
        final.last("HEALTHCHECK").value.removeprefix("CMD").strip())]
    # the files it mounts are these
    mounts = {m.split(":")[1]: DEPLOY / m.split(":")[0] for m in
              gateway["volumes"] + proxy["volumes"] if m.startswith("./")}
    assert mounts == {"/etc/image-proxy/gateway.yaml": DEPLOY / "fleet.yaml",
                      "/etc/nginx/nginx.conf": DEPLOY / "nginx.conf"}


def test_compose_gives_the_gateways_time_to_drain() -> None:
    grace = yaml.safe_load((DEPLOY / "fleet.yaml").read_text())["server"]["shutdown_grace"]
    for name in ("gateway", "proxy"):
        period = compose()["services"][name]["stop_grace_period"]
        assert int(period.removesuffix("s")) > grace + 5, name


def _required_variables(path: Path) -> set[str]:
    """The ${VAR} references of a gateway configuration that have no default."""
    text = "\n".join(line.split("#")[0] for line in path.read_text().splitlines())
    return set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text))


def test_compose_passes_every_variable_the_fleet_config_needs() -> None:
    environment = compose()["x-gateway-environment"]
    assert compose()["services"]["gateway"]["environment"] == environment
    assert _required_variables(DEPLOY / "fleet.yaml") <= set(environment)


@pytest.mark.parametrize("config", ["fleet.yaml", "container/gateway.yaml"])
def test_gateway_configs_pass_check_config(config: str) -> None:
    values = {"IMAGE_PROXY_KEY_SHA256": "ab" * 32, "POSTGRES_PASSWORD": "pw"}
    env = {**os.environ, **gateway_environment(values)}
    result = subprocess.run([sys.executable, "-m", "proxy", "check-config", "--config",
                             str(DEPLOY / config)], env=env, capture_output=True, text=True,
                            timeout=60, check=False, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    assert "configuration OK" in result.stdout


def test_nginx_accepts_the_reverse_proxy_config(tmp_path_factory: pytest.TempPathFactory) -> None:
    nginx = nginx_binary(tmp_path_factory.getbasetemp() / "nginx")
    work = tmp_path_factory.mktemp("nginx-conf")
    conf = work / "nginx.conf"
    conf.write_text(with_writable_paths((DEPLOY / "nginx.conf").read_text(), work / "run"))
    result = subprocess.run([str(nginx), "-t", "-p", str(work), "-c", str(conf),
                             "-e", "stderr"], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_nginx_config_streams_and_upgrades() -> None:
    """What SSE and Socket.IO need from the proxy, in the location that reaches the gateways."""
    text = re.sub(r"(?m)#.*$", "", (DEPLOY / "nginx.conf").read_text())
    location = text[text.index("location / {"):]
    for directive in ("proxy_buffering off;", "proxy_request_buffering off;",
                      "proxy_http_version 1.1;", "proxy_set_header Upgrade $http_upgrade;",
                      "proxy_set_header Connection $connection_upgrade;"):
        assert directive in location, directive
    read_timeout = re.search(r"proxy_read_timeout (\d+)s;", location)
    assert read_timeout and int(read_timeout.group(1)) > 900  # a model's default timeout.total


def _unit_with_installed_entry_point(tmp_path: Path) -> Path:
    """The unit, its /opt/image-proxy/bin/image-proxy pointed at the one installed here (verify
    checks that the commands exist)."""
    installed = shutil.which("image-proxy", path=str(Path(sys.executable).parent))
    assert installed, "image-proxy is not installed next to this interpreter"
    unit = tmp_path / "image-proxy.service"
    text = (DEPLOY / "image-proxy.service").read_text()
    assert "/opt/image-proxy/bin/image-proxy" in text
    unit.write_text(text.replace("/opt/image-proxy/bin/image-proxy", installed))
    return unit


def _systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if not found:
        pytest.skip("systemd-analyze is not installed on this machine")
    return found


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    unit = _unit_with_installed_entry_point(tmp_path)
    result = subprocess.run([_systemd_analyze(), "verify", str(unit)], capture_output=True,
                            text=True, timeout=60, check=False, cwd=tmp_path)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_systemd_unit_is_hardened(tmp_path: Path) -> None:
    """systemd's own review rates its exposure 2 or less of 10, "OK" (--threshold: tenths)."""
    unit = _unit_with_installed_entry_point(tmp_path)
    result = subprocess.run([_systemd_analyze(), "security", "--offline=yes", "--threshold=20",
                             str(unit)], capture_output=True, text=True, timeout=60,
                            check=False, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr


def test_systemd_unit_outlasts_the_drain() -> None:
    """TimeoutStopSec covers server.shutdown_grace (default 25 s) and the 5 s after it; only the
    main process gets SIGTERM, so workers are not told twice (which cuts their drain short)."""
    unit = (DEPLOY / "image-proxy.service").read_text()
    settings = dict(re.findall(r"(?m)^(\w+)=(.*)$", unit))
    grace = ServerConfig().shutdown_grace  # the unit serves the operator's own configuration
    assert int(settings["TimeoutStopSec"].removesuffix("s")) > grace + 5
    assert settings["KillSignal"] == "SIGTERM"
    assert settings["KillMode"] == "mixed"
