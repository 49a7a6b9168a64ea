"""Errors in OpenAI's envelope: ``{"error": {"message", "type", "param", "code"}}``.

Every failure a client can see is a :class:`GatewayError`; the app turns it into a JSON response
(before a stream started) or an SSE ``error`` event (after). All four envelope keys are always
present because OpenAI's schema requires them, ``null`` included.

What an error carries is redacted when it is made (and whenever its message is changed): an
upstream that repeats the credential it received, or any text shaped like a secret, never
reaches a client (:mod:`proxy.core.redact`).
"""

from __future__ import annotations

from typing import Any

from proxy.core.redact import redact


class GatewayError(Exception):
    """A failure with the HTTP status and the OpenAI-shaped body the client should see."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        retryable: bool | None = None,
        transient: bool = False,
    ) -> None:
        self.message = message
        super().__init__(self.message)
        self.status = status
        self.type = redact(type)
        self.param = None if param is None else redact(param)
        self.code = None if code is None else redact(code)
        self.headers = dict(headers or {})
        # ``x-should-retry`` for the official SDKs: None leaves their own policy in charge.
        self.retryable = retryable
        # An upstream failure the gateway may retry itself (or hand to a fallback model): the
        # upstream refused before doing (and billing) any work.
        self.transient = transient
        # For the operator's log only, never a client: which upstream address failed, the HTTP
        # status it answered (None: no answer), and what the connection library said.
        self.upstream: str | None = None
        self.upstream_status: int | None = None
        self.reason: str | None = None

    def at_upstream(self, address: str, status: int | None = None,
                    reason: str | None = None) -> GatewayError:
        """Note where the failure happened (kept when already noted, by a deeper caller)."""
        self.upstream = self.upstream or address
        if self.upstream_status is None:
            self.upstream_status = status
        self.reason = self.reason or reason
        return self

    @property
    def message(self) -> str:
        return self._message

    @message.setter
    def message(self, text: str) -> None:
        self._message = redact(text)

    @property
    def retry_after(self) -> float | None:
        """Seconds the upstream asked us to wait (``retry-after-ms`` or ``retry-after``)."""
        lowered = {k.lower(): v for k, v in self.headers.items()}
        for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
            try:
                return max(0.0, float(lowered[name]) * scale)
            except (KeyError, ValueError):
                continue
        return None

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def response_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.retryable is not None:
            headers["x-should-retry"] = "true" if self.retryable else "false"
        return headers

    def __repr__(self) -> str:
        return f"GatewayError({self.status}, {self.code or self.type}: {self.message!r})"


def invalid_param(param: str, message: str, code: str = "invalid_value") -> GatewayError:
    """400 for a request parameter the client got wrong; always names the parameter."""
    return GatewayError(400, message, param=param, code=code)


def unsupported_param(param: str, model: str) -> GatewayError:
    return GatewayError(
        400,
        f"Parameter '{param}' is not supported by model '{model}'.",
        param=param,
        code="unsupported_parameter",
    )


def model_not_found(model: str, suggestions: list[str] | None = None) -> GatewayError:
    hint = f" Did you mean: {', '.join(suggestions)}?" if suggestions else ""
    return GatewayError(
        404,
        f"The model '{model}' does not exist or is not served by this gateway.{hint}",
        param="model",
        code="model_not_found",
    )


def upstream_error(
    message: str, *, code: str = "upstream_error", status: int = 502, transient: bool = False,
    retryable: bool | None = None,
) -> GatewayError:
    """The provider failed. 502 by default; ``x-should-retry`` stays the SDK's call."""
    return GatewayError(status, message, type="upstream_error", code=code, transient=transient,
                        retryable=retryable)


def upstream_timeout(message: str) -> GatewayError:
    # The upstream may already be drawing (and billing) the image: a blind client retry
    # would pay twice, so tell the official SDKs not to retry.
    return GatewayError(
        504, message, type="upstream_error", code="upstream_timeout", retryable=False
    )


def bad_value(name: str, value: Any, allowed: list[str] | tuple[str, ...],
              model: str | None = None) -> GatewayError:
    """A value outside the field's (or, naming it, the ``model``'s) closed set, in OpenAI's
    words."""
    listed = ", ".join(f"'{v}'" for v in allowed)
    whose = f" for model '{model}'" if model else ""
    return invalid_param(name, f"Invalid value: '{value}'. Supported values{whose} are: "
                               f"{listed}.")


# Seconds a client is asked to wait while the usage ledger's database cannot be read.
LEDGER_RETRY_AFTER = 5


def ledger_unavailable(message: str) -> GatewayError:
    """503 while the usage ledger's database cannot be read (a shared ledger whose server is
    down): nothing was done, the same request may succeed shortly."""
    return GatewayError(503, message, type="server_error", code="usage_ledger_unavailable",
                        headers={"retry-after": str(LEDGER_RETRY_AFTER)}, retryable=True)


# Seconds a client is asked to wait while the shared store (Redis) cannot be reached.
STORE_RETRY_AFTER = 2


class StoreUnavailable(GatewayError):
    """503: the shared store (Redis) did not answer, so something that needs it (claiming a job
    id, reading a job or its result) cannot be done now; nothing was done, and the same request
    may succeed in a moment. ``outage`` numbers the outage it happened in (for logging once)."""

    def __init__(self, what: str, outage: int = 0) -> None:
        super().__init__(
            503, f"The gateway's shared store cannot be reached right now ({what}). Try again "
                 "shortly.", type="server_error", code="store_unavailable",
            headers={"retry-after": str(STORE_RETRY_AFTER)}, retryable=True)
        self.what = what
        self.outage = outage


def limits_unavailable(key: str) -> GatewayError:
    """503 while a key's rate or concurrency limit cannot be checked (the shared store is down)
    and ``limits.on_store_failure`` is ``fail_closed``."""
    return GatewayError(
        503, f"The limits of key '{key}' cannot be checked right now (the gateway's shared store "
             "cannot be reached). Try again shortly.", type="server_error",
        code="limits_unavailable", headers={"retry-after": str(STORE_RETRY_AFTER)},
        retryable=True)


def upstream_maybe_called(instance: str | None = None) -> GatewayError:
    """The runner of a queued (durable async) job stopped after the job's upstream call began:
    the job is not run again, and its client is told the upstream may have charged for it."""
    where = f" ({instance})" if instance else ""
    return GatewayError(
        503, f"The gateway instance running this job{where} stopped after the job's upstream "
             "call began, so the upstream may have been called (and may charge for it); the "
             "job was not run again. Send the request again to run it anew.",
        type="server_error", code="instance_lost")


def instance_lost(instance: str | None = None) -> GatewayError:
    """The gateway instance running a job stopped (or lost the shared store) before the job
    ended: its lease lapsed and the fleet ended the job."""
    where = f" ({instance})" if instance else ""
    return GatewayError(
        503, f"The gateway instance running this job{where} stopped, or lost touch with the "
             "rest of the gateway, before the job finished; send the request again.",
        type="server_error", code="instance_lost")
