"""The identity of a request, for idempotent job ids: two requests with the same fingerprint are
"the same request", so a repeat under a used job id attaches to its job or replays its answer,
and any other request under that id is a conflict.

The fingerprint is the SHA-256 of the parsed fields as canonical JSON (keys sorted, so the order
the client sent them in, or which spelling of a field it used, does not matter), a digest of
each input image and of the mask (their bytes, in order), the way the answer is delivered (the
mount's default ``response_format``, asynchronous or not), and the name of the key that sent it:
another key can never attach to, or read, someone else's job.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from proxy.request.bind import ParsedRequest


def _text(value: Any) -> str:
    """Anything orjson does not serialise itself (never in a parsed JSON body), as text."""
    return repr(value)


def fingerprint(owner: str, parsed: ParsedRequest, *, detached: bool = False) -> str:
    """Hex SHA-256 identifying ``parsed`` as sent by the key named ``owner``."""
    head = {
        "owner": owner,
        "known": parsed.known,
        "unknown": parsed.unknown,
        "response_format": parsed.response_format,
        "editing": parsed.editing,
        "listed": parsed.listed,
        "detached": detached,
        "images": [hashlib.sha256(image.data).hexdigest() for image in parsed.images],
        "mask": None if parsed.mask is None else hashlib.sha256(parsed.mask.data).hexdigest(),
    }
    canonical = orjson.dumps(head, default=_text,
                             option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    return hashlib.sha256(canonical).hexdigest()
