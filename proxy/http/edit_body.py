"""Read an edit request: multipart as the official SDKs send it, or JSON as the published APIs do.

Multipart: the image is part ``image`` (one file) or repeated ``image[]`` parts (a list, even of
one), the mask part ``mask``, every scalar a text part. JSON: ``image`` (or OpenAI's ``images``)
as base64, a data URL, an http(s) URL, ``{"image_url": ...}``, or an array of those; ``mask``
the same way. URLs are fetched by the SSRF-safe fetcher. The body is capped while it is read,
so an oversized upload is refused without being stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import anyio
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import Message

from proxy.core.errors import GatewayError, invalid_param
from proxy.http.body import MULTIPART, media_type, read_json_object, require_json, too_large
from proxy.images.inputs import InputImage, load_image
from proxy.images.limits import MAX_IMAGE_BYTES, MAX_IMAGES
from proxy.images.limits import too_large as image_too_large

IMAGE_FIELDS = ("image", "image[]", "images", "images[]")


class Fetcher(Protocol):
    async def load(self, value: str, *, param: str) -> Any:
        """An http(s) URL (fetched safely), a data URL or bare base64 -> its bytes."""


@dataclass(slots=True)
class EditInput:
    fields: dict[str, Any]  # every other parameter, as sent
    images: list[InputImage]
    mask: InputImage | None
    from_form: bool
    # The images came as a list (``image[]`` parts, or a JSON array), even a list of one.
    listed: bool = False


def is_multipart(request: Request) -> bool:
    return media_type(request)[0] == MULTIPART


def capped(request: Request, limit: int) -> Request:
    """The same request, whose body stream fails with 413 past ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    seen = 0
    receive = request.receive

    async def counting() -> Message:
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            raise too_large(limit)
        return message

    return Request(request.scope, counting)


async def read_multipart(request: Request, limit: int) -> EditInput:
    try:
        form = await capped(request, limit).form(max_files=MAX_IMAGES + 1, max_fields=256,
                                                 max_part_size=1024 * 1024)
    except HTTPException as exc:  # Starlette's multipart refusals, in OpenAI's shape
        if "Too many files" in str(exc.detail):
            raise invalid_param("image", f"Too many files: at most {MAX_IMAGES} images and a "
                                "mask.", code="too_many_images") from None
        raise GatewayError(400, f"The multipart body could not be read: {exc.detail}",
                           code="invalid_multipart") from None
    fields: dict[str, Any] = {}
    uploads: list[tuple[str, UploadFile]] = []
    mask_upload: UploadFile | None = None
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            if name in IMAGE_FIELDS:
                uploads.append((name, value))
            elif name == "mask":
                mask_upload = value
            else:
                raise invalid_param(name, f"Unexpected file in field '{name}'.",
                                    code="unknown_parameter")
        else:
            fields[name] = value
    try:
        images = [await _upload(upload, "image") for _, upload in uploads]
        mask = await _upload(mask_upload, "mask") if mask_upload else None
    finally:
        await form.close()
    listed = any(name.endswith("[]") for name, _ in uploads)
    return EditInput(fields, images, mask, from_form=True, listed=listed)


async def _upload(upload: UploadFile, param: str) -> InputImage:
    if upload.size is not None and upload.size > MAX_IMAGE_BYTES:
        raise image_too_large(param)
    data = await upload.read()
    return load_image(data, param=param, filename=upload.filename or "image")


def _refs(value: Any, param: str) -> list[str]:
    """The image references in a JSON field: strings, ``{"image_url": ...}`` objects, arrays."""
    items = value if isinstance(value, list) else [value]
    refs = []
    for item in items:
        if isinstance(item, dict):
            if "file_id" in item:
                raise invalid_param(param, "File ids are not supported: send the image itself "
                                    "(base64, a data URL or an http(s) URL).",
                                    code="unsupported_value")
            item = item.get("image_url", item.get("url"))
            if isinstance(item, dict):  # {"image_url": {"url": ...}}, as chat APIs nest it
                item = item.get("url")
        if not isinstance(item, str) or not item:
            raise invalid_param(param, f"Invalid '{param}': expected base64, a data URL or an "
                                "http(s) URL (or an array of them).", code="invalid_type")
        refs.append(item)
    return refs


async def _resolve(ref: str, param: str, fetcher: Fetcher) -> InputImage:
    fetched = await fetcher.load(ref, param=param)
    return load_image(fetched.data, param=param)


def json_has_images(body: dict[str, Any]) -> bool:
    return any(body.get(name) is not None for name in IMAGE_FIELDS)


async def read_json_images(body: dict[str, Any], fetcher: Fetcher) -> EditInput:
    """Take the image and mask fields out of a JSON body and load them (URLs in parallel)."""
    fields = dict(body)
    refs: list[tuple[str, str]] = []
    listed = False
    for name in IMAGE_FIELDS:
        value = fields.pop(name, None)
        if value is not None:
            listed = listed or isinstance(value, list) or name != "image"
            refs += [("image", ref) for ref in _refs(value, name)]
    mask_value = fields.pop("mask", None)
    mask_refs = _refs(mask_value, "mask") if mask_value is not None else []
    if len(mask_refs) > 1:
        raise invalid_param("mask", "Only one mask may be given.", code="invalid_value")
    wanted = [*refs, *(("mask", ref) for ref in mask_refs)]
    loaded: list[InputImage | None] = [None] * len(wanted)

    async def one(slot: int, param: str, ref: str) -> None:
        loaded[slot] = await _resolve(ref, param, fetcher)

    # A task group: when one image fails, the fetches still running are cancelled. The client
    # hears about the first failure, in OpenAI's shape, not about a group of them.
    try:
        async with anyio.create_task_group() as group:
            for slot, (param, ref) in enumerate(wanted):
                group.start_soon(one, slot, param, ref)
    except BaseExceptionGroup as failures:
        first = failures.subgroup(lambda exc: isinstance(exc, GatewayError))
        if first is None:
            raise
        raise _leaf(first) from None
    images = [image for image in loaded[: len(refs)] if image is not None]
    mask = loaded[len(refs)] if mask_refs else None
    return EditInput(fields, images, mask, from_form=False, listed=listed)


async def read_body(request: Request, *, edit: bool, json_limit: int,
                    upload_limit: int) -> EditInput | dict[str, Any]:
    """The request's body: a multipart edit read whole (its images loaded), or a JSON object
    whose images (if any) are still references, for :func:`load_images`. Any other content
    type is a 415 (naming it), before the body is read."""
    if edit and is_multipart(request):
        return await read_multipart(request, upload_limit)
    require_json(request, "JSON (Content-Type: application/json)" + (
        f" or {MULTIPART}" if edit else ""))
    return await read_json_object(request, json_limit)


async def load_images(body: EditInput | dict[str, Any], fetcher: Fetcher) -> EditInput:
    """The request with its images loaded: a JSON body's base64, data URLs and http(s) URLs
    (fetched, in parallel). An image in a generation body makes it an edit, as published APIs
    define it."""
    if isinstance(body, EditInput):
        return body
    if json_has_images(body):
        return await read_json_images(body, fetcher)
    return EditInput(body, [], None, from_form=False)


def _leaf(group: BaseExceptionGroup) -> BaseException:
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error
