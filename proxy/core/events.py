"""The events every provider adapter yields.

A provider knows only its upstream's wire format and turns it into this small vocabulary. The
writers (JSON collector, SSE writer) and the progress hub consume these and never learn which
provider ran. Image payloads stay base64 strings exactly as the upstream sent them (or as the
renderer encoded them once): nothing here decodes or re-encodes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from proxy.core.errors import GatewayError


@dataclass(frozen=True, slots=True)
class Progress:
    """How far the job has come. ``percent`` is 0..100; step counts when the backend has them.

    ``stage="queued"``: the job waits in the upstream's own queue. It stays ``queued`` and is
    not estimated while it waits; ``queue_position`` (1 = next to run) and ``eta_s`` (seconds
    until done) say what the provider knows. The first event of another stage means it runs.
    ``measured``: the provider follows the run itself, so even 0 % is a real reading and the
    gateway never replaces it with an estimate.
    """

    percent: float
    step: int | None = None
    total_steps: int | None = None
    stage: str | None = None
    message: str | None = None
    estimated: bool = False
    queue_position: int | None = None
    eta_s: float | None = None
    measured: bool = False


@dataclass(frozen=True, slots=True)
class PartialImage:
    """A preview of image ``index`` (0-based image within the job), the ``partial_index``-th one."""

    index: int
    partial_index: int
    b64_json: str | bytes  # bytes: lifted from the upstream's JSON unparsed (see Image)


@dataclass(frozen=True, slots=True)
class Image:
    """One finished image. Exactly one of ``b64_json`` and ``url`` is set. A large image taken
    straight from an upstream's JSON answer is ``bytes`` (ASCII base64, spliced into the
    response as it is); otherwise a string."""

    index: int
    b64_json: str | bytes | None = None
    url: str | None = None
    revised_prompt: str | None = None
    # Its base64 went ahead in ``ImagePiece`` events (``b64_json`` is None): the rest of the
    # item, once the upstream's item has ended.
    pieced: bool = False


@dataclass(frozen=True, slots=True)
class ImagePiece:
    """The next bytes of image ``index``'s base64, as the upstream sends them (ASCII, nothing
    to escape): ``parts`` in order, as they were read (not joined into one: a 16 MB answer is
    not copied once more on its way). Only a call that asks for pieces (``Call.pieces``: a JSON
    answer written while the upstream still sends) gets them: the pieces of one image come in
    order, then its ``Image`` (``pieced``), then the next image's pieces."""

    index: int
    parts: tuple[bytes, ...]


def b64_text(b64: str | bytes | None) -> str | None:
    """A base64 image as a string, for JSON built as a whole (SSE events, kept results)."""
    return b64.decode("ascii") if isinstance(b64, bytes) else b64


@dataclass(frozen=True, slots=True)
class Usage:
    """Token accounting in OpenAI's ``usage`` shape."""

    input_tokens: int = 0
    output_tokens: int = 0
    input_text_tokens: int = 0
    input_image_tokens: int = 0
    output_image_tokens: int | None = None
    output_text_tokens: int | None = None

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "input_tokens_details": {
                "text_tokens": self.input_text_tokens,
                "image_tokens": self.input_image_tokens,
            },
        }
        if self.output_image_tokens is not None or self.output_text_tokens is not None:
            body["output_tokens_details"] = {
                "image_tokens": self.output_image_tokens or 0,
                "text_tokens": self.output_text_tokens or 0,
            }
        return body


@dataclass(frozen=True, slots=True)
class Completed:
    """The job finished; ``resolved`` holds what the upstream says it actually used
    (size, quality, output_format, background) where it says so."""

    usage: Usage | None = None
    resolved: dict[str, str] = field(default_factory=dict)
    # Fields some published APIs add to the response body (Gemini's ``text`` and ``parts``).
    extras: dict[str, Any] = field(default_factory=dict)
    # What the upstream itself says it charged (USD), when it says: wins over price tables.
    cost_usd: float | None = None


@dataclass(frozen=True, slots=True)
class Failed:
    """The job failed; the error already carries the status and envelope to show the client."""

    error: GatewayError


Event = Progress | PartialImage | Image | ImagePiece | Completed | Failed
