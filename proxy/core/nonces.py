"""Nonces for the markers that stand in for lifted values inside a JSON skeleton while it is
parsed or serialised (``proxy.upstream.lifted``, ``proxy.upstream.pieces``,
``proxy.http.responses``).

A marker must not be guessable by whoever wrote the JSON (an upstream could otherwise plant one)
and must be unique within the answer. A per-process secret (never sent anywhere) followed by a
counter is both, without ``secrets.token_hex``'s system call per answer (1.7 % of the gateway's
event loop in a long-JSON burst: each call also gives up the GIL).
"""

from __future__ import annotations

import itertools
import secrets

_SECRET = secrets.token_hex(8)
_COUNTER = itertools.count()


def nonce() -> str:
    """A fresh nonce: the process's secret and a number not given out before."""
    return f"{_SECRET}{next(_COUNTER):x}"
