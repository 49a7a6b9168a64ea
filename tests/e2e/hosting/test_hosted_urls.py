"""``response_format="url"``: the gateway stores the images and hands out signed, expiring
links that it serves itself."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from tests.support.clients import sdk
from tests.support.images import decode_bytes


@pytest.fixture
def hosted(start_gateway, tmp_path):
    with start_gateway(f"""
data_dir: {tmp_path}
storage: {{kind: local, ttl_seconds: 2}}
models: [{{name: local, provider: local}}]
""") as server:
        yield server


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | changes
    return parts._replace(query=urlencode(query)).geturl()


def test_url_response_is_fetchable_and_signed(hosted) -> None:
    result = sdk(hosted).images.generate(model="local", prompt="a yellow sun", n=2,
                                         size="128x128", response_format="url")
    assert [d.b64_json for d in result.data] == [None, None]
    for item in result.data:
        assert item.url.startswith(f"{hosted.url}/v1/images/files/")
        fetched = httpx.get(item.url)
        assert fetched.status_code == 200
        assert fetched.headers["content-type"] == "image/png"
        assert decode_bytes(fetched.content).size == (128, 128)
    url = result.data[0].url
    signature = parse_qs(urlsplit(url).query)["signature"][0]
    tampered = with_query(url, signature=("0" if signature[0] != "0" else "1") + signature[1:])
    assert httpx.get(tampered).status_code == 403
    later = with_query(url, expires=str(int(time.time()) + 3600))
    assert httpx.get(later).status_code == 403, "the expiry is signed too"
    time.sleep(2.5)
    expired = httpx.get(url)
    assert expired.status_code == 410
    assert expired.json()["error"]["code"] == "url_expired"


def test_jpeg_is_hosted_as_jpeg(hosted) -> None:
    result = sdk(hosted).images.generate(model="local", prompt="p", size="64x64",
                                         output_format="jpeg", response_format="url")
    fetched = httpx.get(result.data[0].url)
    assert fetched.headers["content-type"] == "image/jpeg"

