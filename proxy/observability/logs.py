"""Structured logs: one JSON object per line (or logfmt, ``serve --log-format logfmt``), every
line of a request carrying its id (and, while traces are on, its trace and span ids).

Payloads (prompts, images) and secrets (keys, tokens, upstream credentials, signed URLs) are
never logged, at any level. Access lines carry the path without its query string; the handler
of :func:`configure` redacts every line (:mod:`proxy.core.redact`), drops the frames and
handshake headers the websocket library prints at debug, and keeps the transport libraries
that print packets, headers or bodies at ``WARNING``.
"""

from __future__ import annotations

import contextvars
import importlib.util
import logging
import os
import re
import time

import orjson

from proxy.core.redact import redact
from proxy.observability import tracing

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id",
                                                                         default=None)

# Libraries that log packets, frames, headers, URLs or bodies below WARNING (engineio and
# socketio every packet, a Socket.IO auth token included; botocore signed requests; urllib3
# and google.auth request lines): never below WARNING.
QUIET_LOGGERS = ("websockets", "engineio", "socketio", "aiohttp", "botocore", "aiobotocore",
                 "urllib3", "google.auth", "multipart", "python_multipart")
# Libraries whose debug lines are frames and handshake headers, printed through a logger that
# is not theirs (uvicorn lends ``uvicorn.error`` to the websockets library).
FRAME_PACKAGES = ("websockets", "wsproto", "h11", "httptools")


class JSONFormatter(logging.Formatter):
    # Attributes a caller may attach with ``extra=`` that belong in the line: the access log's,
    # a job's (``proxy.jobs``: ``job_status`` is succeeded, failed or cancelled; ``status`` is
    # always an HTTP status), a failed upstream attempt's (``proxy.upstream``).
    FIELDS = ("method", "path", "status", "duration_ms", "job_id", "key", "model", "provider",
              "kind", "job_status", "error_code", "upstream_status", "attempt", "attempts",
              "latency_ms", "images", "image_bytes", "partial_bytes", "cost", "upstream",
              "reason", "retry_in_s", "prompt")
    # Those whose string values are redacted like the message: all but the job id, a canonical
    # UUID the gateway made or checked (as the request id, which is not redacted either).
    REDACTED = tuple(name for name in FIELDS if name != "job_id")

    def format(self, record: logging.LogRecord) -> str:
        return orjson.dumps(self.fields(record)).decode()

    def fields(self, record: logging.LogRecord) -> dict[str, object]:
        """The line's names and values, in order."""
        line: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        current = request_id.get()
        if current:
            line["request_id"] = current
        traces = tracing.active()
        ids = traces.ids() if traces is not None else None
        if ids is not None:
            line["trace_id"], line["span_id"] = ids
        for name in self.FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["error"] = record.exc_text
        return line


class LogfmtFormatter(JSONFormatter):
    """The same names and values as ``key=value`` pairs (logfmt), for people reading a
    terminal: strings with spaces, quotes, ``=`` or control characters quoted, JSON-escaped."""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{name}={_logfmt(value)}" for name, value in self.fields(record).items())


_PLAIN = re.compile(r"[^\s\"=\\\x00-\x1f\x7f]+")


def _logfmt(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    text = str(value)
    return text if _PLAIN.fullmatch(text) else orjson.dumps(text).decode()


class RedactSecrets(logging.Filter):
    """A handler filter: the record's message, traceback and string fields lose every secret
    and credential-shaped value before any formatter sees them."""

    _tracebacks = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit the format: keep the template only
            message = f"{record.msg} (unformattable arguments)"
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._tracebacks.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for name in JSONFormatter.REDACTED:
            value = getattr(record, name, None)
            if isinstance(value, str):
                setattr(record, name, redact(value))
        return True


class DropTransportFrames(logging.Filter):
    """A handler filter dropping the debug lines of :data:`FRAME_PACKAGES`: every websocket
    frame (a Socket.IO auth packet is one) and every handshake header, whichever logger
    carries them."""

    def __init__(self) -> None:
        super().__init__()
        self._sources = tuple(_package_dirs(FRAME_PACKAGES))

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.INFO or not record.pathname.startswith(self._sources)


# Set by a response that ends its connection on purpose, its body incomplete (a passed-through
# answer whose upstream broke off after the first bytes: the client must not take what it got
# for a whole answer). The server then logs "ASGI callable returned without completing
# response." at ERROR, in the request's own context; the response has logged why already.
ABORTED_ON_PURPOSE: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "aborted_on_purpose", default=False)
_INCOMPLETE = "ASGI callable returned without completing response."


class DropPurposefulAborts(logging.Filter):
    """A handler filter dropping the server's error line about an incomplete response when the
    response ended so on purpose (:data:`ABORTED_ON_PURPOSE`); a response that did so by a bug
    is still logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.msg == _INCOMPLETE and ABORTED_ON_PURPOSE.get())


def _package_dirs(names: tuple[str, ...]) -> list[str]:
    dirs = []
    for name in names:
        spec = importlib.util.find_spec(name)
        for location in (spec.submodule_search_locations or []) if spec else []:
            dirs.append(os.path.join(os.path.realpath(location), ""))
            dirs.append(os.path.join(location, ""))
    return dirs


FORMATTERS: dict[str, type[JSONFormatter]] = {"json": JSONFormatter, "logfmt": LogfmtFormatter}


def configure(level: str, format: str = "json") -> dict:
    """A uvicorn ``log_config`` that sends every logger through the formatter named (one JSON
    object a line, or logfmt), with secrets redacted and transport frames dropped."""
    handler = {"class": "logging.StreamHandler", "formatter": format,
               "stream": "ext://sys.stderr", "filters": ["frames", "aborts", "secrets"]}
    quiet = {name: {"level": "WARNING"} for name in QUIET_LOGGERS}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {format: {"()": FORMATTERS[format]}},
        "filters": {"frames": {"()": DropTransportFrames}, "aborts": {"()": DropPurposefulAborts},
                    "secrets": {"()": RedactSecrets}},
        "handlers": {"default": handler},
        "root": {"handlers": ["default"], "level": level.upper()},
        # uvicorn's access log would print query strings (signed URLs): ours replaces it.
        "loggers": {**quiet, "uvicorn.access": {"handlers": [], "propagate": False}},
    }
