"""``GET /v1/usage``: a key's own usage; an admin's view of every key.

Query parameters: ``start_time`` (inclusive) and ``end_time`` (exclusive), unix seconds;
``model``; ``limit`` (1..1000, default 100); ``offset``; and, for admins only, ``key`` to narrow
the report to one key. A bad value is a 400 naming the parameter; a non-admin asking for another
key's usage is a 403. A ledger whose database cannot be read right now is a 503 with
``retry-after``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from proxy.billing.ledger import LedgerUnavailable, UsageLedger
from proxy.core.errors import GatewayError, invalid_param, ledger_unavailable

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_UNSIGNED = re.compile(r"[0-9]{1,18}")
_SECONDS = re.compile(r"[0-9]{1,12}(\.[0-9]{1,9})?")


@dataclass(frozen=True, slots=True)
class UsageQuery:
    key: str | None  # None: every key
    since: float | None
    until: float | None
    model: str | None
    limit: int
    offset: int


def _seconds(params: Mapping[str, str], name: str) -> float | None:
    value = params.get(name)
    if value is None:
        return None
    if not _SECONDS.fullmatch(value) or not math.isfinite(seconds := float(value)):
        raise invalid_param(name, f"Invalid '{name}': expected unix seconds (a non-negative "
                            f"number), got '{value}'.")
    return seconds


def _integer(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    value = params.get(name)
    if value is None:
        return default
    number = int(value) if _UNSIGNED.fullmatch(value) else None
    if number is None or not low <= number <= high:
        raise invalid_param(name, f"Invalid '{name}': expected an integer from {low} to "
                            f"{high}, got '{value}'.")
    return number


def parse_usage_query(params: Mapping[str, str], *, key_name: str, is_admin: bool) -> UsageQuery:
    """The ledger query for these parameters, as ``key_name`` (an admin or not) may ask it."""
    since = _seconds(params, "start_time")
    until = _seconds(params, "end_time")
    if since is not None and until is not None and until <= since:
        raise invalid_param("end_time", "Invalid 'end_time': it must be after 'start_time'.")
    model = params.get("model")
    if model is not None and not model:
        raise invalid_param("model", "Invalid 'model': it must not be empty.")
    limit = _integer(params, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    offset = _integer(params, "offset", 0, 0, 10**15)
    asked = params.get("key")
    if is_admin:
        key = asked  # None: every key; "" is the keyless gateway's anonymous owner
    elif asked is None or asked == key_name:
        key = key_name
    else:
        raise GatewayError(403, "Only an admin key may read another key's usage.",
                           param="key", code="insufficient_permissions")
    return UsageQuery(key=key, since=since, until=until, model=model, limit=limit,
                      offset=offset)


async def usage_endpoint(request: Request, ledger: UsageLedger, *, key_name: str,
                         is_admin: bool) -> dict[str, Any]:
    """The JSON body of ``GET /v1/usage`` for the authenticated ``key_name``."""
    q = parse_usage_query(request.query_params, key_name=key_name, is_admin=is_admin)
    try:
        report = await ledger.query(key=q.key, since=q.since, until=q.until, model=q.model,
                                    limit=q.limit, offset=q.offset)
    except LedgerUnavailable:
        raise ledger_unavailable("The usage ledger cannot be read right now. Try again "
                                 "shortly.") from None
    return report.to_dict()
