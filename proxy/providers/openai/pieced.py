"""A large ``ImagesResponse`` handed on while the upstream still sends it (``Call.pieces``):
each image's base64 as ``ImagePiece`` events, each item as its ``Image`` once it ended, then
``Completed``. See :mod:`proxy.upstream.pieces` for when an answer is declined (it is then
parsed whole, as any other)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, Callable
from typing import Any

from proxy.core.errors import GatewayError, upstream_error
from proxy.core.events import Completed, Event, Image, ImagePiece
from proxy.upstream.pieces import ImageScanner, NotPassable, Output, Piece

# An answer at least this long (or of unknown length) is scanned to be passed on as it comes.
PASS_MIN = 1024 * 1024


def passes(content_length: int | None) -> bool:
    return content_length is None or content_length >= PASS_MIN


async def pieced_events(scanner: ImageScanner, batches: AsyncIterable[list[bytes]],
                        item_image: Callable[[int, dict[str, Any]], Image],
                        completed: Callable[[dict[str, Any]], Completed],
                        ) -> AsyncGenerator[Event, None]:
    """The answer's events as its chunks arrive (in ``batches``: what was read at once, one
    event per image they continue); nothing when the scanner declines (its ``raw`` then holds
    what was read, the rest is still to be read)."""
    try:
        async for batch in batches:
            outputs: list[Output] = []
            for chunk in batch:
                outputs += scanner.feed(chunk)
            if scanner.declined:
                return
            for event in _events(outputs, item_image):
                yield event
            del outputs, batch
        outputs, body = scanner.finish()
    except NotPassable as exc:
        raise broken(str(exc)) from None
    if scanner.declined:
        return
    for event in _events(outputs, item_image):
        yield event
    yield completed(body)


def _events(outputs: list[Output],
            item_image: Callable[[int, dict[str, Any]], Image]) -> list[Event]:
    """The events of ``outputs``: an image's pieces in a row are one ``ImagePiece``."""
    events: list[Event] = []
    parts: list[bytes] = []
    for number, output in enumerate(outputs):
        if isinstance(output, Piece):
            parts.append(output.data)
            following = outputs[number + 1] if number + 1 < len(outputs) else None
            if not isinstance(following, Piece) or following.index != output.index:
                events.append(ImagePiece(output.index, tuple(parts)))
                parts = []
        elif output.pieced:
            fields = output.fields
            events.append(Image(output.index, url=fields.get("url"),
                                revised_prompt=fields.get("revised_prompt"), pieced=True))
        else:
            events.append(item_image(output.index, output.fields))
    return events


def broken(why: str) -> GatewayError:
    return upstream_error(f"The upstream sent {why}.", code="upstream_invalid_response")
