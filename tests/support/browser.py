"""Headless Debian Chromium driven by Playwright's Python package, for tests of the playground.

The browser is Debian's ``chromium`` package at ``/usr/bin/chromium`` (``scripts/test`` installs
it through ``ensure_chromium`` in ``scripts/_env.sh``); Playwright never downloads one. Playwright
starts it with a fresh temporary ``--user-data-dir`` of its own and removes it afterwards. A
missing browser or driver fails the tests: CI must never pass by skipping them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.paths import REPO_ROOT

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM = Path(os.environ.get("IMAGE_PROXY_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",  # root in a container: Chromium's sandbox cannot start
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]
ARTIFACTS = REPO_ROOT / "test-artifacts"


@contextmanager
def chromium() -> Iterator[Browser]:
    """A running headless Chromium (a Playwright ``Browser``)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: the browser tests need Debian's chromium package "
                    "(scripts/test installs it; or: apt-get update && apt-get install -y chromium)",
                    pytrace=False)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # a missing test dependency is a failure, not a skip
        pytest.fail(f"Playwright's Python package is missing ({exc}); scripts/test installs it",
                    pytrace=False)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=CHROMIUM_ARGS, timeout=30_000)
        try:
            yield browser
        finally:
            browser.close()


def artifact(name: str) -> Path:
    """A path under the git-ignored test-artifacts/ folder (created on demand)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name
