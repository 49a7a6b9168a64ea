"""uvicorn's error line about an incomplete response is dropped only for a response that ended
so on purpose (a passed-through answer whose upstream broke off: see
tests/e2e/generations/test_passed_through.py for the whole gateway's log)."""

from __future__ import annotations

import contextvars
import logging

from proxy.observability.logs import ABORTED_ON_PURPOSE, DropPurposefulAborts

INCOMPLETE = "ASGI callable returned without completing response."


def test_the_incomplete_response_line_is_dropped_only_when_the_response_meant_it() -> None:
    record = logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, INCOMPLETE,
                               None, None)
    drop = DropPurposefulAborts()
    assert drop.filter(record), "a bug's incomplete response is still logged"

    def aborted() -> bool:
        ABORTED_ON_PURPOSE.set(True)
        return drop.filter(record)

    assert not contextvars.copy_context().run(aborted)
    assert drop.filter(record), "only that request's context was marked"
