"""nginx for tests of deploy/nginx.conf: Debian's package, unpacked into a temporary directory.

``apt-get download`` fetches the ``nginx`` and ``nginx-common`` packages of this machine's
Debian release (no root needed, nothing installed), and ``dpkg -x`` unpacks them. Where apt or
the archive is not there the test is skipped, saying why.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest


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
