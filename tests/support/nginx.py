"""nginx for tests of deploy/nginx.conf: Debian's package, unpacked into a temporary directory.

``apt-get download`` fetches the ``nginx`` and ``nginx-common`` packages of this machine's
Debian release (no root needed, nothing installed), and ``dpkg -x`` unpacks them. Where apt or
the archive is not there the test is skipped, saying why.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.processes import wait_answering


def nginx_binary(workdir: Path) -> Path:
    """``<workdir>/root/usr/sbin/nginx``, downloaded and unpacked on first use."""
    binary = workdir / "root" / "usr" / "sbin" / "nginx"
    if binary.exists():
        return binary
    if not (shutil.which("apt-get") and shutil.which("dpkg")):
        pytest.skip("nginx cannot be fetched: this machine has no apt-get/dpkg (not Debian)")
    workdir.mkdir(parents=True, exist_ok=True)
    download = subprocess.run(["apt-get", "download", "nginx", "nginx-common"], cwd=workdir,
                              capture_output=True, text=True, timeout=120, check=False)
    debs = sorted(workdir.glob("*.deb"))
    if download.returncode != 0 or len(debs) < 2:
        pytest.skip(f"nginx cannot be fetched from the Debian archive: {download.stderr[-500:]}")
    for deb in debs:
        subprocess.run(["dpkg", "-x", str(deb), str(workdir / "root")], check=True, timeout=60)
    assert binary.exists(), f"the nginx package has no {binary}"
    return binary


def with_writable_paths(conf: str, into: Path) -> str:
    """``conf`` with the files nginx writes (its pid and temporary directories, all under /tmp
    in deploy/nginx.conf) moved into ``into``: nothing else of it is changed."""
    into.mkdir(parents=True, exist_ok=True)
    moved, count = re.subn(r"(?m)^(\s*(?:pid|\w+_temp_path)\s+)/tmp/", rf"\g<1>{into}/", conf)
    assert count >= 2, "deploy/nginx.conf no longer keeps its pid and temp files under /tmp"
    directives = re.sub(r"(?m)#.*$", "", conf)
    assert directives.count("/tmp/") == count, "a path under /tmp the test does not know about"
    return moved


def in_front_of(conf: str, gateway: str, listen: int) -> str:
    """deploy/nginx.conf pointed at ``gateway`` (``127.0.0.1:port``, for compose's
    ``gateway:8080``) and listening on 127.0.0.1:``listen``: its two addresses, nothing else."""
    conf, targets = re.subn(r"http://gateway:8080;", f"http://{gateway};", conf)
    conf, listens = re.subn(r"(?m)^(\s*)listen 8080;", rf"\g<1>listen 127.0.0.1:{listen};", conf)
    assert (targets, listens) == (1, 1), "deploy/nginx.conf's addresses are not where expected"
    return conf


@contextmanager
def running_nginx(binary: Path, conf: str, workdir: Path, port: int) -> Iterator[str]:
    """nginx in the foreground with ``conf`` (its writable paths moved into ``workdir``); yields
    its URL once it answers ``/nginx-health``, and stops it at exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "nginx.conf"
    path.write_text(with_writable_paths(conf, workdir / "run"))
    log = workdir / "nginx.log"
    with log.open("wb") as out:
        process = subprocess.Popen([str(binary), "-p", str(workdir), "-c", str(path),
                                    "-e", "stderr", "-g", "daemon off;"],
                                   stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_answering(process, url, 15, lambda: log.read_text(errors="replace"),
                       path="/nginx-health")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
