"""The README's compatibility table against the actual responses, on every mount.

Each row of the table names response fields and when they are present. This test holds one
request per row that meets the row's condition, sends it to every mount, and checks the fields
are there; where the condition is not met (the counter-example), that they are not.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.e2e.conformance.conftest import Conformance
from tests.support.paths import REPO_ROOT

MOUNTS = ["/v1", "", "/api/v1", "/v3"]
GPT = {"model": "openai/gpt-image-1", "prompt": "p"}
DALLE = {"model": "openai/dall-e-3", "prompt": "p"}
GEMINI_TEXT = {"model": "nano-banana-2", "prompt": "p", "responseModalities": ["text", "image"]}
IMAGEN_FILTERED = {"model": "google/imagen-4.0-generate-001", "prompt": "p", "n": 3}

# field -> (a request meeting the row's condition, a counter-example or None)
ROWS: dict[str, tuple[dict, dict | None]] = {
    "created": (GPT, None),
    "data[].b64_json": ({**GPT, "response_format": "b64_json"}, DALLE),
    "data[].url": ({**GPT, "response_format": "url"}, {**GPT, "response_format": "b64_json"}),
    "data[].revised_prompt": (DALLE, GPT),
    "id": (GPT, None),
    "provider": (GPT, None),
    "model": (GPT, None),
    "cost": (GPT, None),
    "usage": (GPT, DALLE),
    "usage.total_cost": (GPT, DALLE),
    "usage.currency": (GPT, DALLE),
    "usage.prompt_tokens_details": (GPT, DALLE),
    "usage.completion_tokens_details": (GPT, DALLE),
    "background": (GPT, DALLE),
    "output_format": (GPT, DALLE),
    "quality": (GPT, None),
    "size": (GPT, None),
    "text": (GEMINI_TEXT, GPT),
    "parts": (GEMINI_TEXT, GPT),
    "filtered": (IMAGEN_FILTERED, GPT),
}


def table_fields() -> list[str]:
    readme = (REPO_ROOT / "README.md").read_text()
    table = readme.split("<!-- compatibility table", 1)[1].split("\n\n", 1)[0]
    fields: list[str] = []
    for line in table.splitlines()[3:]:
        fields += re.findall(r"`([^`]+)`", line.split("|")[1])
    return fields


def has(body: dict[str, Any], field: str) -> bool:
    if field.startswith("data[]."):
        return bool(body.get("data")) and all(field[7:] in item for item in body["data"])
    node: Any = body
    for part in field.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def test_the_table_lists_exactly_the_checked_fields() -> None:
    assert sorted(table_fields()) == sorted(ROWS)


@pytest.mark.parametrize("mount", MOUNTS)
@pytest.mark.parametrize("field", sorted(ROWS))
def test_each_row_on_each_mount(conformance: Conformance, field: str, mount: str) -> None:
    present, absent = ROWS[field]
    conformance.google.rai_filtered = 1 if present is IMAGEN_FILTERED else 0
    try:
        response = conformance.post(f"{mount}/images/generations", present)
        assert response.status_code == 200, response.text
        assert has(response.json(), field), f"{field} missing on {mount or '/'}"
        if absent is not None and not (field == "data[].b64_json" and mount == ""):
            other = conformance.post(f"{mount}/images/generations", absent)
            assert other.status_code == 200, other.text
            assert not has(other.json(), field), f"{field} present on {mount or '/'}"
    finally:
        conformance.google.rai_filtered = 0


def test_the_root_mount_answers_with_urls_by_default(conformance: Conformance) -> None:
    body = conformance.post("/images/generations", GPT).json()
    assert has(body, "data[].url") and not has(body, "data[].b64_json")
    assert has(conformance.post("/v1/images/generations", GPT).json(), "data[].b64_json")


def test_cost_is_null_when_no_price_is_known(conformance: Conformance) -> None:
    body = conformance.post("/v1/images/generations",
                            {"model": "compatible/unpriced", "prompt": "p"})
    assert body.status_code == 200, body.text
    assert body.json()["cost"] is None
