"""Structured logs: one JSON object per line, every line of a request carrying its id.

Payloads (prompts, images) and secrets (keys, upstream credentials, signed URLs) are never
logged: access lines carry the path without its query string.
"""

from __future__ import annotations

import contextvars
import logging
import time

import orjson

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id",
                                                                         default=None)


class JSONFormatter(logging.Formatter):
    # Attributes a caller may attach with ``extra=`` that belong in the line.
    FIELDS = ("method", "path", "status", "duration_ms", "job_id", "model", "provider")

    def format(self, record: logging.LogRecord) -> str:
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
        for name in self.FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


def configure(level: str) -> dict:
    """A uvicorn ``log_config`` that sends every logger through the JSON formatter."""
    handler = {"class": "logging.StreamHandler", "formatter": "json",
               "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JSONFormatter}},
        "handlers": {"default": handler},
        "root": {"handlers": ["default"], "level": level.upper()},
        # uvicorn's access log would print query strings (signed URLs): ours replaces it.
        "loggers": {"uvicorn.access": {"handlers": [], "propagate": False}},
    }
