"""Provider ``openai``: OpenAI's Images API and anything that speaks it at a ``base_url``.

Non-streamed calls return the upstream's ``ImagesResponse``; streamed ones relay its
``image_generation.*`` SSE events as they arrive. Base64 strings are handed on untouched.
Adapters of other OpenAI-dialect upstreams (``azure``, ``xai``) subclass it and override its hooks.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from functools import cached_property
from typing import Any, ClassVar

import aiohttp
import orjson
from pydantic import Field, SecretStr

from proxy.core.errors import GatewayError, upstream_error
from proxy.core.events import Completed, Event, Image, ImagePiece, PartialImage, Progress
from proxy.images.codec import b64_complete
from proxy.providers.base import Call, Provider, ProviderSettings
from proxy.providers.openai.errors import error_from_upstream, parse_usage
from proxy.providers.openai.pieced import passes, pieced_events
from proxy.upstream.client import chunk_batches
from proxy.upstream.lifted import lift_images, lift_pieces
from proxy.upstream.pieces import ImageEnds, ImageScanner
from proxy.upstream.sse import BrokenImage, SSEDecoder, SSEMessage

_ECHOED = ("size", "quality", "background", "output_format")


class OpenAISettings(ProviderSettings):
    base_url: str = Field("https://api.openai.com/v1", pattern=r"^https?://")
    api_key: SecretStr | None = None
    organization: str | None = None
    project: str | None = None
    # Sent with every upstream request (e.g. a routing header of an OpenAI-compatible server).
    headers: dict[str, str] = Field(default_factory=dict)


class OpenAIProvider(Provider):
    name = "openai"
    # Large base64 images of a JSON answer pass through as bytes, never parsed (the writer
    # splices them into the response); an adapter that transcodes them sets this False.
    lifts_images: ClassVar[bool] = True
    settings_class = OpenAISettings
    settings: OpenAISettings

    def _headers(self) -> dict[str, str]:
        """Credentials and configured headers (the content type goes with the body)."""
        headers = dict(self.settings.headers)
        if self.settings.api_key is not None:
            headers["authorization"] = f"Bearer {self.settings.api_key.get_secret_value()}"
        if self.settings.organization:
            headers["openai-organization"] = self.settings.organization
        if self.settings.project:
            headers["openai-project"] = self.settings.project
        return headers

    def _payload(self, call: Call, stream: bool) -> dict[str, Any]:
        request = call.request
        payload: dict[str, Any] = {"model": self.model.upstream_model, "prompt": request.prompt}
        payload.update(request.upstream_params())
        if stream:
            payload["stream"] = True
            if request.partial_images:
                payload["partial_images"] = request.partial_images
        return payload

    @cached_property
    def _own_headers(self) -> dict[str, str]:
        """:meth:`_headers`, made once: they follow from the settings alone."""
        return self._headers()

    # Hooks for adapters of OpenAI-dialect upstreams (Azure, xAI): where to send the request,
    # how to read a refusal, and what a finished (non-streamed) answer turns into.

    def _url(self, call: Call) -> str:
        return f"{self.settings.base_url.rstrip('/')}/{endpoint(call)}"

    def _body(self, call: Call, stream: bool) -> bytes | aiohttp.FormData:
        if call.kind == "edit":
            return edit_form(call, self._payload(call, stream))
        return orjson.dumps(self._payload(call, stream))

    def _error(self, status: int, raw: bytes, headers: Mapping[str, str], *,
               mid_stream: bool = False) -> GatewayError:
        return error_from_upstream(status, raw, headers, mid_stream=mid_stream)

    async def _body_events(self, call: Call, body: Any,
                           lifted: dict[str, bytes]) -> AsyncGenerator[Event, None]:
        for event in events_from_body(body, lifted):
            yield event

    async def generate(self, call: Call) -> AsyncGenerator[Event, None]:
        stream = call.request.stream and self.model.rules.streaming
        body = self._body(call, stream)
        # The client's extra headers first: the adapter's own (credentials) always win.
        headers = {**call.request.extra_headers, **self._own_headers}
        if isinstance(body, bytes):
            headers["content-type"] = "application/json"
        async with self.http.request(
            "POST", self._url(call), timeout=self.model.timeout, headers=headers, body=body,
        ) as response:
            if response.status != 200:
                raw = await response.content.read(65536)
                raise self._error(response.status, raw, response.headers)
            yield Progress(0.0, stage="upstream_accepted")
            content_type = response.headers.get("content-type", "")
            if "text/event-stream" in content_type:
                async for event in self._relay_stream(call, response.content):
                    yield event
                return
            # Also the answer of compatible servers that ignore ``stream``. Read from the
            # stream, not response.read(), which also keeps a copy on the response object.
            if (call.pieces and not call.request.stream and self.lifts_images
                    and passes(response.content_length)):
                # Large: its images are handed on as they arrive, unless the scanner declines.
                scanner = ImageScanner()
                async for event in pieced_events(scanner, chunk_batches(response.content),
                                                 item_image, body_completed):
                    yield event
                if not scanner.declined:
                    return
                raw = b"".join((scanner.raw, await response.content.read()))
            else:
                raw = await response.content.read()
        # The connection is back in the pool before any post-processing of the images, and
        # the raw bytes are let go once parsed: a 16 MB answer is not held twice.
        if self.lifts_images:
            body, lifted = parse_lifting(raw)
        else:
            body, lifted = parse_json(raw), {}
        del raw
        async for event in self._body_events(call, body, lifted):
            yield event

    async def _relay_stream(self, call: Call, content: Any) -> AsyncGenerator[Event, None]:
        """The upstream's SSE events as ours. Nothing large outlives its use here: the chunk
        and the raw event are let go before their events are handed on (an image waiting for a
        slow client is held once, as its outgoing frame, not three times). With
        ``call.pieces`` (a stream written to one client as the job makes it) the final image
        is not held at all: its base64 is handed on in ``ImagePiece`` events as it arrives,
        and the ``completed`` event follows once its end has come."""
        # A long data line (an image event) is lifted from the chunks it came in: its image's
        # bytes are copied once, not joined into the line and then copied out of it.
        decoder = SSEDecoder(lift=lift_pieces,
                             passing=_final_event if call.pieces and self.lifts_images else None)
        expected = max(call.request.partial_images, 0) + 1
        passed: ImageEnds | None = None
        async for chunk in content.iter_any():
            try:
                outputs = decoder.feed_passing(chunk)
            except BrokenImage as exc:
                raise invalid_response(str(exc)) from None
            del chunk
            while outputs:
                if isinstance(outputs[0], bytes):  # the final image's next bytes
                    passed = passed or ImageEnds(0)
                    passed.add(outputs[0])
                    yield ImagePiece(0, (outputs.pop(0),))
                    continue
                # Not bound to a name: a partial image's event is not held while the next one
                # is awaited (seconds, in a long job).
                events = self._stream_events(outputs.pop(0), expected, passed)
                while events:
                    event = events.pop(0)
                    yield event
                    if isinstance(event, Completed):
                        return
                    del event
        raise upstream_error("The upstream stream ended before the image was completed.",
                             code="upstream_incomplete")

    def _stream_events(self, message: SSEMessage, expected: int,
                       passed: ImageEnds | None = None) -> list[Event]:
        """Our events for one upstream SSE event (none for an event we do not relay);
        ``passed``: the image handed on in pieces, when ``message`` is its event."""
        if message.passed:
            return _passed_completed(message, passed)
        if message.lifted:
            data, lifted = parse_json(message.data), message.lifted
        else:
            data, lifted = parse_lifting(message.data)
        if not isinstance(data, dict):
            raise invalid_response("an SSE event whose data is not a JSON object")
        if data.get("error"):
            raise self._error(500, message.data, {}, mid_stream=True)
        kind = str(data.get("type") or message.event)
        if kind.endswith(".partial_image"):
            index = _int(data.get("partial_image_index"), "partial_image_index")
            done = min(index + 1, expected - 1)
            return [PartialImage(0, index, _b64(data, lifted)),
                    Progress(100.0 * done / expected, step=done, total_steps=expected)]
        if kind.endswith(".completed"):
            return [Image(0, b64_json=_b64(data, lifted)),
                    Completed(parse_usage(data.get("usage")), _resolved(data))]
        return []


def _final_event(name: str) -> bool:
    """An upstream event whose image may be handed on before the event has ended: the
    ``completed`` one (a partial image's frame needs its index, which may follow the image)."""
    return name.endswith(".completed")


def _passed_completed(message: SSEMessage, passed: ImageEnds | None) -> list[Event]:
    """The end of a ``completed`` event whose image went ahead in pieces (its marker in the
    image's place): the pieced ``Image`` and ``Completed``, once the image is known whole."""
    data = parse_json(message.data)
    if (not isinstance(data, dict) or data.get("b64_json") != message.passed
            or not str(data.get("type") or message.event).endswith(".completed")):
        raise invalid_response("a completed event whose image is not its 'b64_json'")
    if passed is None or not passed.complete():
        raise invalid_response("a truncated or corrupt image")
    return [Image(0, pieced=True), Completed(parse_usage(data.get("usage")), _resolved(data))]


def endpoint(call: Call) -> str:
    return "images/edits" if call.kind == "edit" else "images/generations"


def edit_form(call: Call, payload: dict[str, Any]) -> aiohttp.FormData:
    """The edit as OpenAI's multipart form, the way the official SDK sends it: scalars as text
    parts, one file as ``image`` or a list as repeated ``image[]``, the mask as ``mask``."""
    form = aiohttp.FormData()
    for name, value in payload.items():
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        form.add_field(name, text)
    request = call.request
    field = "image[]" if request.images_listed or len(request.images) > 1 else "image"
    for image in request.images:
        form.add_field(field, image.data, filename=image.filename, content_type=image.mime)
    if request.mask is not None:
        mask = request.mask
        form.add_field("mask", mask.data, filename=mask.filename, content_type=mask.mime)
    return form


def events_from_body(body: Any, lifted: dict[str, bytes] | None = None) -> list[Event]:
    """The events of a parsed ``ImagesResponse``; ``lifted`` holds the base64 images taken out
    before parsing (``proxy.upstream.lifted``), by the marker left in their place."""
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise invalid_response("a body without a 'data' list")
    events: list[Event] = [item_image(index, item, lifted)
                           for index, item in enumerate(body["data"])]
    events.append(body_completed(body))
    return events


def item_image(index: int, item: Any, lifted: dict[str, bytes] | None = None) -> Image:
    """The image of ``data`` item ``index``."""
    if not isinstance(item, dict) or not (item.get("b64_json") or item.get("url")):
        raise invalid_response(f"image {index} without 'b64_json' or 'url'")
    b64 = item.get("b64_json")
    if lifted and isinstance(b64, str) and b64 in lifted:
        b64 = lifted[b64]
    if isinstance(b64, bytes) and not b64_complete(b64):
        raise invalid_response(f"image {index} truncated or corrupt")
    if isinstance(b64, str) and not b64.startswith("data:") and not b64_complete(b64):
        raise invalid_response(f"image {index} truncated or corrupt")
    return Image(index, b64_json=b64, url=item.get("url"),
                 revised_prompt=item.get("revised_prompt"))


def body_completed(body: dict[str, Any]) -> Completed:
    return Completed(parse_usage(body.get("usage")), _resolved(body))


def _resolved(data: dict[str, Any]) -> dict[str, str]:
    return {k: data[k] for k in _ECHOED if isinstance(data.get(k), str) and data[k] != "auto"}


def parse_lifting(raw: bytes) -> tuple[Any, dict[str, bytes]]:
    """:func:`parse_json` with the large base64 images lifted out as bytes."""
    try:
        return lift_images(raw)
    except orjson.JSONDecodeError:
        raise invalid_response("data that is not valid JSON") from None


def parse_json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise invalid_response("data that is not valid JSON") from None


def _b64(data: dict[str, Any], lifted: dict[str, bytes]) -> str | bytes:
    value: Any = data.get("b64_json")
    if isinstance(value, str) and value in lifted:
        value = lifted[value]
    if not isinstance(value, (str, bytes)) or not value:
        raise invalid_response("an image event without 'b64_json'")
    if not b64_complete(value):
        raise invalid_response("a truncated or corrupt image")
    return value


def _int(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid_response(f"an event whose '{name}' is not an integer")
    return value


def invalid_response(what: str) -> GatewayError:
    return upstream_error(f"The upstream sent {what}.", code="upstream_invalid_response")
