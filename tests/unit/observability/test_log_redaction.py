"""What the gateway's log handler writes: no secret at any level, no websocket frame, and the
transport libraries that print packets kept quiet (the configuration ``serve`` installs)."""

from __future__ import annotations

import io
import json
import logging
import logging.config
from collections.abc import Iterator

import pytest
import websockets.protocol

import proxy.observability.logs as logs
from proxy.core.redact import remember

GATEWAY_KEY = "ipk_0123456789abcdefghijklmnop"
CONFIGURED = "k7-self-hosted-CREDENTIAL-4242"


@pytest.fixture
def written() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger behind a handler built exactly as ``configure`` describes it, writing into a
    buffer (applied to a private logger: the test process's own logging is left alone)."""
    config = logs.configure("debug")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(config["formatters"]["json"]["()"]())
    for name in config["handlers"]["default"]["filters"]:
        handler.addFilter(config["filters"][name]["()"]())
    logger = logging.Logger("test.redaction", logging.DEBUG)
    logger.addHandler(handler)
    yield logger, stream


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_no_secret_in_any_line_whatever_carries_it(written) -> None:
    logger, stream = written
    remember(CONFIGURED)
    logger.debug("upstream said %s", f"Incorrect API key provided: {CONFIGURED}")
    logger.info('< TEXT \'40/image-progress,{"token":"%s"}\'', GATEWAY_KEY)
    logger.warning("request failed", extra={"path": f"/x?signature=abcdef&key={CONFIGURED}"})
    try:
        raise RuntimeError(f"headers {{'authorization': 'Bearer {GATEWAY_KEY}'}}")
    except RuntimeError:
        logger.exception("with a traceback")
    logger.error("stack", stack_info=True, extra={"model": f"m-{CONFIGURED}"})
    text = stream.getvalue()
    assert len(lines(stream)) == 5
    assert CONFIGURED not in text and GATEWAY_KEY not in text and "abcdef" not in text
    assert "[redacted]" in lines(stream)[3]["error"], "tracebacks are redacted too"


def test_arguments_that_do_not_fit_never_reach_the_stream_unredacted(written) -> None:
    logger, stream = written
    logger.info("two %s %s", GATEWAY_KEY)  # a bug elsewhere must not leak the key
    assert GATEWAY_KEY not in stream.getvalue()


def test_websocket_frames_and_handshake_headers_are_dropped_at_debug(written) -> None:
    logger, stream = written
    # uvicorn lends "uvicorn.error" to the websockets library: the frames come from its files.
    frame = logging.LogRecord("uvicorn.error", logging.DEBUG, websockets.protocol.__file__, 611,
                              "< %s", ("TEXT '40/image-progress,{}' [18 bytes]",), None)
    header = logging.LogRecord("uvicorn.error", logging.DEBUG, websockets.protocol.__file__, 286,
                               "< %s: %s", ("cookie", "session=1"), None)
    accepted = logging.LogRecord("uvicorn.error", logging.INFO, websockets.protocol.__file__, 1,
                                 "connection open", (), None)
    ours = logging.LogRecord("uvicorn.error", logging.DEBUG, logs.__file__, 1, "%s", ("kept",),
                             None)
    for record in (frame, header, accepted, ours):
        logger.handle(record)
    assert [line["message"] for line in lines(stream)] == ["connection open", "kept"]


def test_transport_libraries_never_log_below_warning() -> None:
    loggers = logs.configure("debug")["loggers"]
    for name in ("websockets", "engineio", "socketio", "aiohttp", "botocore"):
        assert logging.getLevelName(loggers[name]["level"]) >= logging.WARNING, name
