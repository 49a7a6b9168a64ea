"""What a run was measured on (the machine, the gateway's commit, uncommitted product files), and
the lines printed under the table and stored with ``--json``."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import time
from typing import Any

import aiohttp


def machine(root: str) -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo
                      if line.startswith("model name")), "")
    return {"cpus": os.cpu_count(), "cpu_model": model, "loadavg": os.getloadavg(),
            "python": sys.version.split()[0], "aiohttp": aiohttp.__version__,
            **tree_state(root)}


def _git(root: str, *argv: str) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run(["git", *argv], cwd=root, capture_output=True, text=True,
                              timeout=10).stdout.rstrip("\n")
    return ""


def tree_state(root: str) -> dict[str, Any]:
    """Which gateway code was measured: the commit, and uncommitted files under proxy/."""
    changed = [line[3:] for line in _git(root, "status", "--porcelain", "--",
                                         "proxy").splitlines()]
    return {"commit": _git(root, "rev-parse", "--short", "HEAD").strip(),
            "proxy_uncommitted": changed}


def code_version(root: str) -> str:
    """The product code a gateway starting now runs: the commit, and a digest of what is
    uncommitted under proxy/ (others edit the same working tree while a run goes on)."""
    digest = hashlib.sha1(_git(root, "diff", "HEAD", "--", "proxy").encode())
    for name in sorted(_git(root, "ls-files", "--others", "--exclude-standard", "--",
                            "proxy").splitlines()):
        with contextlib.suppress(OSError):
            digest.update(name.encode() + open(os.path.join(root, name), "rb").read())
    commit = _git(root, "rev-parse", "--short", "HEAD").strip()
    dirty = _git(root, "status", "--porcelain", "--", "proxy")
    return f"{commit}+{digest.hexdigest()[:8]}" if dirty else commit


def versions_line(code: dict[str, str]) -> str:
    """Which code each gateway process ran, if that changed during the run."""
    distinct = list(dict.fromkeys(code.values()))
    if len(distinct) <= 1:
        version = distinct[0] if distinct else "n/a"
        return f"Every gateway process ran the same product code ({version})."
    groups = "; ".join(f"{version}: {', '.join(n for n, v in code.items() if v == version)}"
                       for version in distinct)
    return ("THE PRODUCT CODE CHANGED DURING THE RUN (commit+digest of uncommitted proxy/ "
            f"when each gateway started): {groups}.")


def footer(root: str, results: dict[str, Any], load_before: tuple[float, ...], quick: bool,
           total: float, json_path: str | None, aborted: str = "") -> None:
    """Print the machine line under the table; write the raw numbers if asked."""
    info = machine(root)
    load = info["loadavg"]
    laps = results.get("machine_load", {})
    others = ", ".join(f"{name} {lap['others_cores']:.2f}" for name, lap in laps.items()
                       if lap["seconds"] >= 1)
    changed = info["proxy_uncommitted"]
    print(f"\n{info['cpus']} CPUs ({info['cpu_model']}), loadavg {load_before[0]:.2f} before / "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} after, Python {info['python']}, "
          f"{'quick' if quick else 'full'} run, total {total:.0f}s"
          f"{f' (ABORTED: {aborted}; the table holds what was measured)' if aborted else ''}.\n"
          f"Working tree at the end: commit {info['commit']}"
          f"{', uncommitted in proxy/: ' + ', '.join(changed) if changed else ''}.\n"
          f"Cores used by other work on this machine while each phase ran: {others or 'n/a'}.\n"
          f"{versions_line(results.get('code', {}))}")
    if json_path:
        meta = {**info, "loadavg_before": load_before, "quick": quick, "aborted": aborted,
                "seconds": round(total, 1), "date": time.strftime("%Y-%m-%d %H:%M:%S %z")}
        with open(json_path, "w") as out:
            json.dump({"meta": meta, **results}, out, indent=2)
