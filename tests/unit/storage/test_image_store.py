"""Image stores for ``response_format: "url"``, against real servers.

The local store is mounted in a tiny Starlette app under uvicorn and fetched over sockets; the S3
store talks to a moto S3 server on 127.0.0.1. Moto does not check presigned URLs, so a small
SigV4 verifier (written here from the AWS spec, independent of botocore) sits in front of it and
refuses what AWS would: a wrong signature, or a URL past ``X-Amz-Date + X-Amz-Expires``.
"""

from __future__ import annotations

import asyncio
import calendar
import hashlib
import hmac
import io
import logging
import os
import stat
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

import httpx
import pytest
from PIL import Image
from pydantic import ValidationError
from starlette.applications import Starlette

from proxy.http.files import file_route
from proxy.storage import (
    ImageStore,
    InvalidImageName,
    LocalImageStore,
    LocalStoreSettings,
    S3ImageStore,
    S3StoreSettings,
    build_store,
    storage_settings_adapter,
)
from proxy.storage.local import SECRET_FILE
from tests.support.servers import RunningServer, serve

BASE = "http://gateway.test"


class Clock:
    """A settable clock shared by the test and the server thread."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _png(colour: tuple[int, int, int] = (200, 30, 60)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(out, format="PNG")
    return out.getvalue()


PNG = _png()


def _replace_query(url: str, **changes: str | None) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    for key, value in changes.items():
        if value is None:
            query.pop(key, None)
        else:
            query[key] = value
    encoded = "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items())
    return urlunsplit(parts._replace(query=encoded))


def _rebase(url: str, server: RunningServer) -> str:
    parts = urlsplit(url)
    return server.url + parts.path + "?" + parts.query


def _count(directory: Path, pattern: str) -> int:
    return len(list(directory.glob(pattern)))


def _served(store: LocalImageStore) -> Starlette:
    return Starlette(routes=[file_route(store)])


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(tmp_path: Path, clock: Clock) -> AsyncIterator[LocalImageStore]:
    store = LocalImageStore(tmp_path / "images", ttl_seconds=3600, clock=clock)
    await store.start()
    try:
        yield store
    finally:
        await store.aclose()


@pytest.fixture
def server(store: LocalImageStore) -> Iterator[RunningServer]:
    with serve(_served(store)) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


def _assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code


# -- local store -----------------------------------------------------------------------------------


async def test_local_round_trip(store, server, http, clock) -> None:
    assert isinstance(store, ImageStore)
    url = await store.put(PNG, content_type="image/png", name="job1-0.png", base_url=server.url)
    assert url.startswith(f"{server.url}/v1/images/files/")
    assert "job1-0.png?expires=" in url

    response = await http.get(url)
    assert response.status_code == 200
    assert response.content == PNG
    assert response.headers["content-type"] == "image/png"
    assert response.headers["cache-control"] == "private, max-age=3600"
    assert response.headers["x-content-type-options"] == "nosniff"

    clock.now += 600
    later = await http.get(url)
    assert later.headers["cache-control"] == "private, max-age=3000"

    head = await http.head(url)
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(PNG))
    assert head.content == b""


async def test_local_content_types_and_names(store, server, http) -> None:
    jpeg = io.BytesIO()
    Image.new("RGB", (4, 4)).save(jpeg, format="JPEG")
    url = await store.put(jpeg.getvalue(), content_type="image/jpeg", name="job2-0",
                          base_url=server.url)
    assert ".jpg?" in url  # the extension follows the content type
    response = await http.get(url)
    assert response.headers["content-type"] == "image/jpeg"
    assert response.content == jpeg.getvalue()

    # The same hint twice gives two URLs: a client choosing a job id cannot overwrite an image.
    first = await store.put(PNG, content_type="image/png", name="same.png", base_url=server.url)
    second = await store.put(_png((1, 2, 3)), content_type="image/png", name="same.png",
                             base_url=server.url)
    assert urlsplit(first).path != urlsplit(second).path
    assert (await http.get(first)).content == PNG

    with pytest.raises(InvalidImageName):
        await store.put(PNG, content_type="text/html", name="x.html", base_url=server.url)
    with pytest.raises(InvalidImageName):
        await store.put(PNG, content_type="image/png", name="x.jpg", base_url=server.url)


async def test_local_public_url_overrides_base(tmp_path: Path, clock: Clock) -> None:
    store = LocalImageStore(tmp_path, public_url="https://img.example.com/gw/", clock=clock)
    await store.start()
    try:
        url = await store.put(PNG, content_type="image/png", name="a.png", base_url=BASE)
    finally:
        await store.aclose()
    assert url.startswith("https://img.example.com/gw/v1/images/files/")


async def test_local_tampered_or_missing_signature(store, server, http) -> None:
    url = await store.put(PNG, content_type="image/png", name="job3-0.png", base_url=server.url)
    signature = dict(parse_qsl(urlsplit(url).query))["signature"]
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    expires = int(dict(parse_qsl(urlsplit(url).query))["expires"])

    cases = {
        "flipped signature": _replace_query(url, signature=flipped),
        "upper-case signature": _replace_query(url, signature=signature.upper()),
        "short signature": _replace_query(url, signature=signature[:-2]),
        "no signature": _replace_query(url, signature=None),
        "no expires": _replace_query(url, expires=None),
        "later expires": _replace_query(url, expires=str(expires + 3600)),
        "earlier expires": _replace_query(url, expires=str(expires - 1)),
        "junk expires": _replace_query(url, expires="1e99"),
        "other name": url.replace("job3-0.png", "job3-1.png"),
    }
    for label, bad in cases.items():
        response = await http.get(bad)
        assert response.status_code == 403, label
        _assert_error(response, 403, "invalid_signature")


async def test_local_expired_url(store, server, http, clock) -> None:
    url = await store.put(PNG, content_type="image/png", name="job4-0.png", base_url=server.url)
    clock.now += 3599
    assert (await http.get(url)).headers["cache-control"] == "private, max-age=1"
    clock.now += 1
    _assert_error(await http.get(url), 410, "url_expired")


async def test_local_unknown_file(store, server, http, clock) -> None:
    expires = int(clock.now) + 60
    name = "0123456789abcdef-never-stored.png"
    url = f"{server.url}/v1/images/files/{name}?expires={expires}&signature=" + store.sign(
        name, expires)
    _assert_error(await http.get(url), 404, "file_not_found")


async def test_local_path_traversal(store, server, http, clock, tmp_path: Path) -> None:
    for name in ("../x", "a/b", "..", ".url-secret", "/etc/passwd", "a\\b", "x\n.png", ""):
        with pytest.raises(InvalidImageName):
            await store.put(PNG, content_type="image/png", name=name, base_url=server.url)
    assert not (tmp_path / "x").exists()
    assert not (tmp_path / "x.png").exists()

    # Even with signatures made with the store's own key, nothing outside the directory (nor its
    # secret file) is served. Raw paths: the client must not normalise them away.
    key = (tmp_path / "images" / SECRET_FILE).read_text().strip().encode()
    expires = int(clock.now) + 60
    (tmp_path / "outside.png").write_bytes(PNG)
    (tmp_path / "images" / f"{expires}..url-secret").write_bytes(b"should never be served")
    # (A bare ".." is left out: clients, httpx included, resolve it before sending.)
    for raw_name, reaches_handler in (("%2E%2E", True), (".url-secret", True),
                                      ("..%5Coutside.png", True), ("..%2Foutside.png", False),
                                      ("%2E%2E%2Foutside.png", False), ("a%2Fb.png", False)):
        decoded = raw_name.replace("%2F", "/").replace("%2E", ".").replace("%5C", "\\")
        signature = hmac.new(key, f"{decoded}\n{expires}".encode(), hashlib.sha256).hexdigest()
        target = f"/v1/images/files/{raw_name}?expires={expires}&signature={signature}"
        request = http.build_request("GET", server.url)
        request.url = request.url.copy_with(raw_path=target.encode())
        response = await http.send(request)
        assert response.status_code == 404, raw_name
        if reaches_handler:  # else the router already found no route: "/" never matches a name
            _assert_error(response, 404, "file_not_found")
        assert response.content not in (PNG, b"should never be served")


async def test_local_sweep(store, server, http, clock) -> None:
    old = await store.put(PNG, content_type="image/png", name="old.png", base_url=server.url)
    clock.now += 1800
    new = await store.put(PNG, content_type="image/png", name="new.png", base_url=server.url)
    bystander = store.directory / "notes.txt"
    bystander.write_text("not ours")
    clock.now += 1800  # old has just expired, new has half an hour left

    assert await store.sweep() == 1
    names = sorted(p.name for p in store.directory.iterdir())
    assert any(n.endswith("-new.png") for n in names)
    assert not any(n.endswith("-old.png") for n in names)
    assert SECRET_FILE in names and "notes.txt" in names
    _assert_error(await http.get(old), 410, "url_expired")
    assert (await http.get(new)).content == PNG

    # A temporary file left by a crash mid-write goes once it is an hour old.
    leftover = store.directory / ".tmp-0123456789abcdef"
    leftover.write_bytes(b"partial")
    assert await store.sweep() == 0
    os.utime(leftover, (time.time() - 7200, time.time() - 7200))
    assert await store.sweep() == 1
    assert not leftover.exists()


async def test_local_background_sweep(tmp_path: Path, clock: Clock) -> None:
    store = LocalImageStore(tmp_path, ttl_seconds=10, sweep_seconds=0.02, clock=clock)
    await store.start()
    try:
        await store.put(PNG, content_type="image/png", name="a.png", base_url=BASE)
        assert _count(tmp_path, "*-a.png") == 1
        clock.now += 10
        deadline = time.monotonic() + 5
        while _count(tmp_path, "*-a.png"):
            assert time.monotonic() < deadline, "the background sweep never ran"
            await asyncio.sleep(0.02)
    finally:
        await store.aclose()
    assert store._sweeper is None


async def test_local_secret_persists_across_instances(tmp_path: Path, clock: Clock, http) -> None:
    directory = tmp_path / "images"
    first = LocalImageStore(directory, clock=clock)
    await first.start()
    await first.aclose()
    secret_file = directory / SECRET_FILE
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    secret = secret_file.read_text()

    with serve(_served(first)) as server:
        await first.start()
        url = await first.put(PNG, content_type="image/png", name="keep.png",
                              base_url=server.url)
        await first.aclose()

    second = LocalImageStore(directory, clock=clock)  # a restarted gateway
    await second.start()
    try:
        assert secret_file.read_text() == secret
        with serve(_served(second)) as server:
            response = await http.get(_rebase(url, server))
            assert response.status_code == 200
            assert response.content == PNG
    finally:
        await second.aclose()

    # A store with another secret refuses the URL; so does one given an explicit secret.
    for other in (LocalImageStore(tmp_path / "elsewhere", clock=clock),
                  LocalImageStore(directory, secret="x" * 32, clock=clock)):
        await other.start()
        try:
            with serve(_served(other)) as server:
                _assert_error(await http.get(_rebase(url, server)), 403, "invalid_signature")
        finally:
            await other.aclose()


async def test_local_secret_file_permissions_are_tightened(tmp_path: Path) -> None:
    tmp_path.joinpath(SECRET_FILE).write_text("s" * 64)
    tmp_path.joinpath(SECRET_FILE).chmod(0o644)
    store = LocalImageStore(tmp_path)
    await store.start()
    await store.aclose()
    assert stat.S_IMODE(tmp_path.joinpath(SECRET_FILE).stat().st_mode) == 0o600

    tmp_path.joinpath(SECRET_FILE).write_text("short")
    with pytest.raises(RuntimeError, match="usable secret"):
        await LocalImageStore(tmp_path).start()


async def test_local_put_needs_start(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="start"):
        await LocalImageStore(tmp_path).put(PNG, content_type="image/png", name="a.png",
                                            base_url=BASE)


async def test_no_signed_url_or_secret_in_logs(store, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="proxy")
    url = await store.put(PNG, content_type="image/png", name="logged.png", base_url=BASE)
    await store.sweep()
    signature = dict(parse_qsl(urlsplit(url).query))["signature"]
    secret = (store.directory / SECRET_FILE).read_text().strip()
    logged = caplog.text
    assert "logged.png" in logged
    assert signature not in logged and secret not in logged and "signature=" not in logged
    assert secret not in repr(store)


# -- settings and factory --------------------------------------------------------------------------


def test_settings_and_build_store(tmp_path: Path) -> None:
    local = storage_settings_adapter.validate_python({"kind": "local"})
    assert isinstance(local, LocalStoreSettings)
    store = build_store(local, tmp_path)
    assert isinstance(store, LocalImageStore)
    assert store.directory == tmp_path / "images" and store.ttl_seconds == 3600

    store = build_store(LocalStoreSettings(directory=Path("pics"), ttl_seconds=60,
                                           public_url="https://x.test/"), tmp_path)
    assert isinstance(store, LocalImageStore)
    assert store.directory == tmp_path / "pics" and store.public_url == "https://x.test"

    s3 = storage_settings_adapter.validate_python({
        "kind": "s3", "bucket": "images", "prefix": "/gw/out", "region": "eu-west-1",
        "access_key_id": "AKIDEXAMPLE", "secret_access_key": "very-secret",
    })
    assert isinstance(s3, S3StoreSettings) and s3.prefix == "gw/out/"
    assert "very-secret" not in repr(s3)
    s3_store = build_store(s3, tmp_path)
    assert isinstance(s3_store, S3ImageStore) and isinstance(s3_store, ImageStore)
    assert "very-secret" not in repr(s3_store)

    for bad in (
        {"kind": "local", "colour": "blue"},  # extra keys are refused
        {"kind": "local", "secret": "too-short"},
        {"kind": "local", "public_url": "img.example.com"},
        {"kind": "s3"},
        {"kind": "s3", "bucket": "b" * 3, "access_key_id": "only-one"},
        {"kind": "s3", "bucket": "bbb", "prefix": "a/../b"},
        {"kind": "s3", "bucket": "bbb", "ttl_seconds": 8 * 24 * 3600},
        {"kind": "ftp"},
    ):
        with pytest.raises(ValidationError) as caught:
            storage_settings_adapter.validate_python(bad)
        assert "too-short" not in str(caught.value) and "only-one" not in str(caught.value)


# -- S3 store --------------------------------------------------------------------------------------

ACCESS_KEY = "AKIDIMAGEPROXYTEST"
SECRET_KEY = "image-proxy-test-secret-key"
REGION = "us-east-1"


class SigV4Presign:
    """WSGI middleware: refuse presigned requests as S3 would (bad signature, expired).

    Only requests carrying ``X-Amz-Signature`` in the query are checked; the rest (the store's
    own header-signed uploads) pass to moto as they are.
    """

    def __init__(self, app, access_key: str, secret_key: str) -> None:
        self.app = app
        self.access_key = access_key
        self.secret_key = secret_key
        self.offset = 0.0  # seconds added to the server's clock
        self.checked = 0

    def __call__(self, environ, start_response):
        query = environ.get("QUERY_STRING", "")
        if "X-Amz-Signature=" in query:
            self.checked += 1
            problem = self._problem(environ, query)
            if problem is not None:
                code, message = problem
                body = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code>"
                        f"<Message>{message}</Message></Error>").encode()
                start_response("403 Forbidden", [("Content-Type", "application/xml"),
                                                  ("Content-Length", str(len(body)))])
                return [body]
        return self.app(environ, start_response)

    def _problem(self, environ, query: str) -> tuple[str, str] | None:
        params = parse_qsl(query, keep_blank_values=True)
        values = dict(params)
        try:
            credential = values["X-Amz-Credential"]
            amz_date = values["X-Amz-Date"]
            expires = int(values["X-Amz-Expires"])
            signed_headers = values["X-Amz-SignedHeaders"]
            signature = values["X-Amz-Signature"]
        except (KeyError, ValueError):
            return "AuthorizationQueryParametersError", "Missing presign parameters"
        if values.get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256":
            return "AuthorizationQueryParametersError", "Unsupported algorithm"
        access_key, date, region, service, terminator = credential.split("/")
        if access_key != self.access_key:
            return "InvalidAccessKeyId", "Unknown access key"
        signed_at = calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ"))
        if time.time() + self.offset > signed_at + expires:
            return "AccessDenied", "Request has expired"

        def enc(text: str) -> str:
            return quote(text, safe="-_.~")

        raw_path = environ.get("RAW_URI") or environ.get("REQUEST_URI") or ""
        canonical_query = "&".join(f"{enc(k)}={enc(v)}" for k, v in sorted(
            (k, v) for k, v in params if k != "X-Amz-Signature"))
        headers = ""
        for header in signed_headers.split(";"):
            value = environ.get("HTTP_" + header.upper().replace("-", "_"), "")
            headers += f"{header}:{value.strip()}\n"
        canonical = "\n".join([environ["REQUEST_METHOD"], raw_path.split("?", 1)[0],
                               canonical_query, headers, signed_headers, "UNSIGNED-PAYLOAD"])
        scope = f"{date}/{region}/{service}/{terminator}"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                             hashlib.sha256(canonical.encode()).hexdigest()])
        key = ("AWS4" + self.secret_key).encode()
        for part in (date, region, service, terminator):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            return "SignatureDoesNotMatch", "The request signature does not match"
        return None


class LocalS3:
    def __init__(self, verifier: SigV4Presign, url: str) -> None:
        self.verifier = verifier
        self.url = url


@pytest.fixture(scope="module")
def local_s3() -> Iterator[LocalS3]:
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    verifier = SigV4Presign(DomainDispatcherApplication(create_backend_app), ACCESS_KEY,
                            SECRET_KEY)
    server = make_server("127.0.0.1", 0, verifier, threaded=True,
                         request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LocalS3(verifier, f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


@pytest.fixture
async def s3_store(local_s3: LocalS3) -> AsyncIterator[S3ImageStore]:
    from aiobotocore.session import get_session

    bucket = f"images-{os.urandom(4).hex()}"
    async with get_session().create_client(
        "s3", region_name=REGION, endpoint_url=local_s3.url,
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
    ) as admin:
        await admin.create_bucket(Bucket=bucket)
    settings = S3StoreSettings(kind="s3", bucket=bucket, prefix="gateway", region=REGION,
                               endpoint_url=local_s3.url, access_key_id=ACCESS_KEY,
                               secret_access_key=SECRET_KEY, addressing_style="path",
                               ttl_seconds=120)
    store = build_store(settings, Path("/nonexistent"))
    assert isinstance(store, S3ImageStore)
    await store.start()
    try:
        yield store
    finally:
        await store.aclose()
        local_s3.verifier.offset = 0.0


async def test_s3_put_and_fetch_presigned(s3_store, local_s3, http) -> None:
    url = await s3_store.put(PNG, content_type="image/png", name="job5-0.png", base_url=BASE)
    parts = urlsplit(url)
    assert url.startswith(f"{local_s3.url}/{s3_store.bucket}/gateway/")
    assert parts.path.endswith("-job5-0.png")
    query = dict(parse_qsl(parts.query))
    assert query["X-Amz-Expires"] == "120"
    assert query["X-Amz-Credential"].startswith(f"{ACCESS_KEY}/")

    checked = local_s3.verifier.checked
    response = await http.get(url)
    assert local_s3.verifier.checked == checked + 1  # the presigned signature really was checked
    assert response.status_code == 200, response.text
    assert response.content == PNG
    assert response.headers["content-type"] == "image/png"


async def test_s3_tampered_and_expired_urls_are_refused(s3_store, local_s3, http) -> None:
    url = await s3_store.put(PNG, content_type="image/png", name="job6-0.png", base_url=BASE)
    signature = dict(parse_qsl(urlsplit(url).query))["X-Amz-Signature"]
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]

    refused = await http.get(_replace_query(url, **{"X-Amz-Signature": flipped}))
    assert refused.status_code == 403 and b"SignatureDoesNotMatch" in refused.content
    longer = await http.get(_replace_query(url, **{"X-Amz-Expires": "604800"}))
    assert longer.status_code == 403 and b"SignatureDoesNotMatch" in longer.content
    other_key = await http.get(url.replace("-job6-0.png", "-job6-1.png"))
    assert other_key.status_code == 403

    assert (await http.get(url)).status_code == 200
    local_s3.verifier.offset = 121  # two minutes on: past X-Amz-Expires
    expired = await http.get(url)
    assert expired.status_code == 403 and b"Request has expired" in expired.content


async def test_s3_refuses_unsafe_names(s3_store) -> None:
    for name in ("../x.png", "a/b.png", ".hidden.png"):
        with pytest.raises(InvalidImageName):
            await s3_store.put(PNG, content_type="image/png", name=name, base_url=BASE)
