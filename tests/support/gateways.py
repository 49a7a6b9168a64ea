"""Gateways for tests: YAML text in, a configured app or a running server out."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from starlette.types import ASGIApp

from proxy.app import create_app
from proxy.config import GatewayConfig, load_config_text
from tests.support.servers import RunningServer, serve

# Tests that check how one upstream answer is mapped must see that answer: their gateways do
# not retry and keep circuits closed, unless a test configures `reliability:` itself.
TEST_RELIABILITY = "reliability: {retries: 0, circuit_failures: 1000000}\n"

GatewayFactory = Callable[[str], AbstractContextManager[RunningServer]]


def gateway_config(text: str, **kwargs: Any) -> GatewayConfig:
    """``text`` loaded as a gateway's configuration, with ``TEST_RELIABILITY`` unless the text
    has a ``reliability:`` section of its own."""
    if not re.search(r"^reliability:", text, re.M):
        text = TEST_RELIABILITY + text
    return load_config_text(text, **kwargs)


def gateway_app(text: str) -> ASGIApp:
    return create_app(gateway_config(text))


@contextmanager
def start_gateway(text: str) -> Iterator[RunningServer]:
    """A gateway configured by YAML ``text``, served on loopback: ``with start_gateway(yaml)
    as server: ...`` (also the ``start_gateway`` fixture)."""
    with serve(gateway_app(text)) as server:
        yield server
