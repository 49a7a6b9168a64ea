"""What the fake upstream answers, built once: PNG-shaped base64 images, ``ImagesResponse``
bodies and OpenAI image-stream SSE frames, plus the timing stamp carried in a partial image (and
in a long job's final image).

The images are random bytes framed as a PNG (signature first, IEND chunk last), so the gateway's
truncation check (``proxy.images.codec.b64_complete``) accepts them; nothing on any path
decodes them.
A partial image has a 12-character slot right after the PNG signature: the upstream writes its
``time.monotonic_ns()`` there just before it sends the event, and the client reads it back out of
the relayed ``b64_json``, the one field every path passes through untouched. CLOCK_MONOTONIC is
system-wide on Linux, so the stamp and the client's clock compare across processes.
"""

from __future__ import annotations

import base64
import random
from functools import cache

import orjson

MODEL = "bench-openai"  # the gateway's model name in the generated configuration
SMALL_RAW = 3 * 1024  # raw image bytes -> ~4 KB of base64
LARGE_RAW = 3 * 1024 * 1024  # -> ~4 MB of base64; four of them make the 16 MB body
LARGE_N = 4
PARTIAL_KIND = b"image_generation.partial_image"

_PNG_HEAD = b"\x89PNG\r\n\x1a\n\x00"  # 9 bytes: 12 base64 characters
_STAMP_BYTES = 9  # 8-byte big-endian nanoseconds + 1 pad byte: 12 base64 characters
_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # 12 bytes: the last 16 characters
STAMP_AT, STAMP_LEN = 12, 12  # where the stamp sits in b64_json, in characters
_B64_KEY = b'"b64_json":"'

SETTINGS = {"size": "1024x1024", "quality": "medium", "background": "opaque",
            "output_format": "png"}
REQUESTED = {"size": "1024x1024", "quality": "auto", "background": "auto",
             "output_format": "png"}
USAGE = {"input_tokens": 9, "output_tokens": 272, "total_tokens": 281,
         "input_tokens_details": {"text_tokens": 9, "image_tokens": 0}}


def fake_png_b64(raw_bytes: int, seed: int = 0) -> str:
    """Base64 of about ``raw_bytes`` bytes that look like a whole PNG (no padding)."""
    middle = max(3, (raw_bytes - len(_PNG_HEAD) - _STAMP_BYTES - len(_IEND)) // 3 * 3)
    raw = _PNG_HEAD + bytes(_STAMP_BYTES) + random.Random(seed).randbytes(middle) + _IEND
    return base64.b64encode(raw).decode()


def images_response(n: int, raw_bytes: int) -> bytes:
    """A gpt-image-1 ``ImagesResponse`` with ``n`` images, serialized."""
    return orjson.dumps({
        "created": 1_700_000_000,
        "data": [{"b64_json": fake_png_b64(raw_bytes, seed=i)} for i in range(n)],
        **SETTINGS,
        "usage": {**USAGE, "output_tokens_details": {"image_tokens": 272, "text_tokens": 0}},
    })


def _frame(kind: str, payload: dict) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


@cache
def partial_template(raw_bytes: int) -> tuple[bytes, int]:
    """The first partial-image frame, and the byte offset of its stamp slot."""
    frame = _frame("image_generation.partial_image", {
        "type": "image_generation.partial_image", "b64_json": fake_png_b64(raw_bytes, seed=7),
        "created_at": 1_700_000_000, **REQUESTED, "partial_image_index": 0,
    })
    return frame, frame.index(_B64_KEY) + len(_B64_KEY) + STAMP_AT


@cache
def completed_frame(raw_bytes: int) -> bytes:
    return _frame("image_generation.completed", {
        "type": "image_generation.completed", "b64_json": fake_png_b64(raw_bytes, seed=8),
        "created_at": 1_700_000_000, **SETTINGS, "usage": USAGE,
    })


def frame_end(buffer: bytes | bytearray, start: int = 0) -> tuple[int, int]:
    """Where the next SSE event ends at or after ``start`` and where the one after it begins;
    (-1, -1) if none has ended. Lines may end in LF, CRLF or CR (WHATWG): the gateway's
    keep-alive comment is ``: keep-alive\\r\\n\\r\\n`` while its events use LF."""
    best = (-1, -1)
    for sep in (b"\n\n", b"\r\n\r\n", b"\r\r"):
        at = buffer.find(sep, start, best[0] + len(sep) if best[0] >= 0 else len(buffer))
        if at >= 0 and (best[0] < 0 or at < best[0]):
            best = (at, at + len(sep))
    return best


def encode_stamp(ns: int) -> bytes:
    return base64.b64encode(ns.to_bytes(8, "big") + b"\0")


def read_stamp(frame: bytes | bytearray) -> int | None:
    """The upstream's send time (monotonic ns) in a relayed partial-image frame, if any."""
    at = frame.find(_B64_KEY)
    if at < 0:
        return None
    start = at + len(_B64_KEY) + STAMP_AT
    raw = base64.b64decode(bytes(frame[start:start + STAMP_LEN]))
    return int.from_bytes(raw[:8], "big") or None


def request_body(*, n: int = 1, stream: bool = False, prompt: str = "a red fox in snow",
                 partial_images: int | None = None) -> bytes:
    """The client's request, the same on every path (direct and relay ignore ``model``)."""
    body: dict = {"model": MODEL, "prompt": prompt, "n": n, "size": "1024x1024"}
    if stream:
        body["stream"] = True
    if partial_images is not None:
        body["partial_images"] = partial_images
    return orjson.dumps(body)


def sse_prompt(partial_raw: int, lead_s: float, gap_s: float) -> str:
    """How a streaming request tells the fake upstream what to send, and when (the prompt is
    the one field every path forwards verbatim)."""
    return f"bench-sse partial={partial_raw} lead={lead_s} gap={gap_s}"


def parse_sse_prompt(prompt: object) -> tuple[int, float, float]:
    """(partial image raw bytes, seconds before it, seconds before the completed event)."""
    spec = {"partial": "4096", "lead": "0.02", "gap": "0.005"}
    if isinstance(prompt, str):
        for token in prompt.split()[1:]:
            name, _, value = token.partition("=")
            if name in spec:
                spec[name] = value
    partial = min(max(int(spec["partial"]), 64), 8 * 1024 * 1024)
    lead = min(max(float(spec["lead"]), 0.0), 10.0)
    gap = min(max(float(spec["gap"]), 0.0), 10.0)
    return partial, lead, gap


# ------------------------------------------------------------------------------ long jobs
# A long job is what a real image backend does: 10-20 s of work, two ~100 KB partial images
# along the way (streamed), then a ~1.5 MB image. The request's prompt says how long
# (``long_prompt``): each client draws its job's duration from a seeded generator, so every
# path in a run (and every run with the same seed) gets the same durations.
LONG_PARTIAL_RAW = 75 * 1024  # -> ~100 KB of base64
LONG_FINAL_RAW = 1_179_648  # -> ~1.5 MB of base64
LONG_PARTIALS = 2
COMPLETED_KIND = b"image_generation.completed"


@cache
def long_partial_frames() -> tuple[bytes, ...]:
    return tuple(_frame("image_generation.partial_image", {
        "type": "image_generation.partial_image",
        "b64_json": fake_png_b64(LONG_PARTIAL_RAW, seed=20 + i), "created_at": 1_700_000_000,
        **REQUESTED, "partial_image_index": i,
    }) for i in range(LONG_PARTIALS))


@cache
def long_completed_template() -> tuple[bytes, int]:
    """The final ``image_generation.completed`` frame, and the offset of its stamp slot."""
    frame = _frame("image_generation.completed", {
        "type": "image_generation.completed", "b64_json": fake_png_b64(LONG_FINAL_RAW, seed=30),
        "created_at": 1_700_000_000, **SETTINGS, "usage": USAGE,
    })
    return frame, frame.index(_B64_KEY) + len(_B64_KEY) + STAMP_AT


@cache
def long_json_template() -> tuple[bytes, int]:
    """The long JSON answer (one ~1.5 MB image), and the offset of its stamp slot."""
    body = images_response(1, LONG_FINAL_RAW)
    return body, body.index(_B64_KEY) + len(_B64_KEY) + STAMP_AT


def stamped(template: bytes, slot: int, ns: int) -> tuple[bytes, memoryview]:
    """``template`` with the send time in its slot, as (head up to the stamp, the rest): the
    1.5 MB rest is sent from the shared template, never copied per answer."""
    head = template[:slot] + encode_stamp(ns)
    return head, memoryview(template)[slot + STAMP_LEN:]


def long_durations(seed: int, kind: str, n: int, low: float, high: float) -> list[float]:
    rng = random.Random(f"{seed}:{kind}:{n}")
    return [round(rng.uniform(low, high), 3) for _ in range(n)]


def long_prompt(seconds: float, tag: str) -> str:
    """A long job's prompt: how long it takes, and whose it is (the upstream counts per tag)."""
    return f"bench-long dur={seconds} tag={tag}"


def parse_long_prompt(prompt: object) -> tuple[float, str] | None:
    if not isinstance(prompt, str) or not prompt.startswith("bench-long "):
        return None
    spec = dict(token.partition("=")[::2] for token in prompt.split()[1:])
    try:
        seconds = min(max(float(spec.get("dur", "1")), 0.0), 120.0)
    except ValueError:
        seconds = 1.0
    return seconds, spec.get("tag", "")[:64]


def without_comments(frame: bytes) -> bytes:
    """``frame`` without its leading comment lines (keep-alives): a comment is a line, not an
    event, and the lines after it in the same frame are still one (b"" if nothing is left)."""
    while frame.startswith(b":"):
        cut = frame.find(b"\n")
        frame = frame[cut + 1:] if cut >= 0 else b""
    return frame
