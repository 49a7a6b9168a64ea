"""Every schemathesis check against a running gateway, as its CLI runs them (``--checks all``):
examples, coverage (boundary values, missing headers, undeclared methods and their ``Allow``
header), fuzzing and stateful phases, on two gateways: an open one with a default model and two
mounts, and one with keys and no default model (``model`` is then required, and every request
carries an admin key, so ``ignored_auth`` is checked too).

``positive_data_acceptance`` runs as :mod:`tests.e2e.openapi.schemathesis_hooks` states it: the
refusals of schema-valid requests that the document states in words (rules between parameters,
per-model rules, image contents) are checked for their documented answer; anything else valid
must be accepted. ``test_fuzz.py`` holds the long, per-operation fuzzing.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from proxy.app import create_app
from proxy.config import load_config_text
from proxy.http.openapi import DOCUMENT_PATH
from tests.e2e.openapi.test_fuzz import GATEWAY_YAML
from tests.support.keys import ADMIN, ADMIN_HASH
from tests.support.paths import REPO_ROOT
from tests.support.servers import serve

SMALL = ("{n_max: 2, default_size: 64x64, size_range: {multiple_of: 8, min_edge: 64, "
         "max_edge: 128, max_pixels: 16384, max_ratio: 2}}")
KEYED_WITHOUT_DEFAULT = f"""
server: {{base_paths: ["/v1"], max_body_bytes: 262144, max_upload_bytes: 1048576}}
fetch: {{timeout: 2, connect_timeout: 1}}
keys:
  - {{name: admin, key_sha256: {ADMIN_HASH}, capabilities: [admin]}}
models:
  - {{name: local, provider: local, rules: {SMALL}}}
  - {{name: local-b, provider: local, rules: {SMALL}}}
"""
SETUPS = {
    "open-with-a-default-model": (GATEWAY_YAML, []),
    "keyed-without-a-default-model": (KEYED_WITHOUT_DEFAULT,
                                      ["-H", f"Authorization: Bearer {ADMIN}"]),
}
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


def _failures(output: str) -> str:
    """The CLI's failure sections (without its colours), for the assertion message."""
    plain = re.sub(r"\x1b\[[0-9;]*m", "", output)
    start = plain.find("FAILURES")
    return plain[start if start >= 0 else max(0, len(plain) - 6000):][:12000]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("setup", list(SETUPS))
def test_every_schemathesis_check_holds(setup: str, tmp_path: Path) -> None:
    yaml, extra = SETUPS[setup]
    with serve(create_app(load_config_text(yaml))) as server:
        result = subprocess.run(
            [str(SCHEMATHESIS), "run", f"{server.url}{DOCUMENT_PATH}",
             "--checks", "all", "--exclude-checks", "positive_data_acceptance",
             "--phases", "examples,coverage,fuzzing,stateful", "--max-examples", "15",
             "--seed", "20260901", "--workers", "1", "--request-timeout", "30",
             "--suppress-health-check", "all", "--generation-database", "none",
             "--no-color", "--report-dir", str(tmp_path), *extra],
            cwd=tmp_path, capture_output=True, text=True, timeout=540,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT),
                 "SCHEMATHESIS_HOOKS": "tests.e2e.openapi.schemathesis_hooks"})
    # A hooks module that fails to load, like any failure, is a non-zero exit.
    assert result.returncode == 0, _failures(result.stdout + result.stderr)
    generated = re.search(r"(\d+) generated", result.stdout)
    assert generated and int(generated[1]) > 500, result.stdout[-3000:]
