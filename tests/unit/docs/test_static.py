"""The API reference's routes and vendored Swagger UI, without a server (Starlette's TestClient).

The page itself, in headless Chromium against a real gateway, is in ``tests/e2e/docs/``."""

from __future__ import annotations

import hashlib
import json
import re

from starlette.applications import Starlette
from starlette.testclient import TestClient

from proxy.http.docs import ASSETS, STATIC, docs_routes

MANIFEST = json.loads((STATIC / "vendored.json").read_text(encoding="utf-8"))


def test_vendored_files_are_the_recorded_release_byte_for_byte() -> None:
    assert MANIFEST["package"] == "swagger-ui-dist"
    assert re.fullmatch(r"\d+\.\d+\.\d+", MANIFEST["version"])
    assert MANIFEST["source"] == (f"https://registry.npmjs.org/{MANIFEST['package']}/-/"
                                  f"{MANIFEST['package']}-{MANIFEST['version']}.tgz")
    assert MANIFEST["integrity"].startswith("sha512-")
    assert {"swagger-ui-bundle.js", "swagger-ui.css"} <= MANIFEST["files"].keys()
    for name, recorded in MANIFEST["files"].items():
        digest = hashlib.sha256((STATIC / name).read_bytes()).hexdigest()
        assert digest == recorded["sha256"], f"{name} is not the file vendored from " \
                                             f"{MANIFEST['package']} {MANIFEST['version']}"
        assert recorded["from"].startswith("package/")


def test_every_file_in_static_is_ours_or_in_the_manifest() -> None:
    ours = {"index.html", "docs.js", "docs.css", "vendored.json", "README.md"}
    present = {path.name for path in STATIC.iterdir()}
    assert present == ours | MANIFEST["files"].keys()
    # Every served vendored script or style is checksummed.
    assert set(ASSETS) - ours <= MANIFEST["files"].keys()


def test_the_page_loads_nothing_but_its_own_files() -> None:
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    assert not re.search(r"(src|href)=\"(https?:)?//", page)  # no CDN, no other host
    for bundle in ("swagger-ui-bundle.js", "swagger-ui.css"):
        text = (STATIC / bundle).read_text(encoding="utf-8")
        # Neither bundle imports from anywhere (no @import or url() of another host).
        assert not re.search(r"@import\s+url\(\s*['\"]?https?:", text)
    client = TestClient(Starlette(routes=docs_routes()))
    answer = client.get("/docs")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    policy = answer.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert "default-src 'self'" in policy
    for name, kind in [("swagger-ui-bundle.js", "text/javascript"), ("docs.js", "text/javascript"),
                       ("swagger-ui.css", "text/css"), ("docs.css", "text/css")]:
        asset = client.get(f"/docs/{name}")
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(kind)
    for name in ["vendored.json", "index.html", "README.md", "swagger-ui.LICENSE",
                 "..%2F__init__.py", "nope.js"]:
        assert client.get(f"/docs/{name}").status_code == 404
