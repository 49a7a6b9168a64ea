"""A fake upstream (or several) and a gateway in front of it, both on loopback.

Most end-to-end tests need the same three steps: serve a fake provider
(``tests.support.fakes``), start a gateway whose configuration points at the fake's URL, then
talk to the gateway and look at what the fake received. This module is the one place that does
it::

    with upstream_and_gateway(FakeAzure(), azure_yaml) as stack:
        sdk(stack.gateway).images.generate(model="azure/gpt-image-1", prompt="p")
        assert stack.fake.calls[-1].path == "/openai/deployments/..."

    with upstream_and_gateway(FakeOpenAI(mode="hang"), yaml) as (fake, server):
        ...                                   # a Stack unpacks as (fake, gateway)

As pytest fixtures::

    # Servers started on the module's first use, stopped after its last test; the fake is
    # reset() before every test that asks for it.
    azure = stack_fixture(FakeAzure, azure_yaml)

    # A fresh fake and gateway for every test.
    openai_gateway = stack_fixture(FakeOpenAI, openai_yaml, scope="function")

``yaml_for_url`` receives the upstream's base URL (``http://127.0.0.1:<port>``, no trailing
slash) and returns the gateway's YAML; the gateway is configured exactly as ``start_gateway``
does it (``tests.support.gateways.gateway_config``). Module-scoped stacks need the
``module_stacks`` fixture, which ``tests/conftest.py`` provides.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, Protocol, TypeVar

import pytest
from starlette.types import ASGIApp

from tests.support.gateways import start_gateway
from tests.support.servers import RunningServer, serve


class FakeUpstream(Protocol):
    """What a fake provider offers: an ASGI app to serve (built afresh on each access)."""

    @property
    def app(self) -> ASGIApp: ...


F = TypeVar("F", bound=FakeUpstream)

YamlForUrl = Callable[[str], str]
"""The gateway's YAML for an upstream at this base URL."""

YamlForUrls = Callable[[Mapping[str, str]], str]
"""The gateway's YAML for upstreams at these base URLs (by the names they were given)."""


@dataclass(frozen=True)
class Stack(Generic[F]):
    """A running fake upstream and the gateway configured against it."""

    fake: F
    upstream: RunningServer
    gateway: RunningServer

    def __iter__(self) -> Iterator[Any]:
        """``fake, server = stack``: the two things most tests use."""
        return iter((self.fake, self.gateway))

    def reset(self) -> Stack[F]:
        """Forget what the fake recorded and any behaviour a test gave it (``fake.reset()``);
        the servers keep running."""
        reset = getattr(self.fake, "reset", None)
        if reset is None:
            raise TypeError(f"{type(self.fake).__name__} has no reset(): share it per test, "
                            "not per module (stack_fixture(..., scope='function'))")
        reset()
        return self


@contextmanager
def upstreams_and_gateway(apps: Mapping[str, ASGIApp],
                          yaml_for_urls: YamlForUrls) -> Iterator[
                              tuple[dict[str, RunningServer], RunningServer]]:
    """Serve each of ``apps`` (fakes, image hosts, ...) on loopback, then a gateway configured
    by ``yaml_for_urls({name: base_url})``. Yields ``(upstreams by name, gateway)``; everything
    stops on exit, the gateway first."""
    with ExitStack() as running:
        upstreams = {name: running.enter_context(serve(app)) for name, app in apps.items()}
        urls = {name: server.url for name, server in upstreams.items()}
        gateway = running.enter_context(start_gateway(yaml_for_urls(urls)))
        yield upstreams, gateway


@contextmanager
def upstream_and_gateway(fake: F, yaml_for_url: YamlForUrl) -> Iterator[Stack[F]]:
    """Serve ``fake.app`` on loopback, then a gateway configured by
    ``yaml_for_url(upstream_url)``; yields the ``Stack``."""
    with upstreams_and_gateway({"upstream": fake.app},
                               lambda urls: yaml_for_url(urls["upstream"])) as (up, gateway):
        yield Stack(fake, up["upstream"], gateway)


@dataclass
class ModuleStacks:
    """The module-scoped stacks of one test module: each started on first use, all stopped
    when the module's tests are done (backs ``stack_fixture(..., scope="module")``)."""

    exits: ExitStack
    running: dict[str, Stack[Any]] = field(default_factory=dict)

    @classmethod
    @contextmanager
    def opened(cls) -> Iterator[ModuleStacks]:
        with ExitStack() as exits:
            yield cls(exits)

    def get(self, name: str, start: Callable[[], AbstractContextManager[Stack[F]]]) -> Stack[F]:
        if name not in self.running:
            self.running[name] = self.exits.enter_context(start())
        return self.running[name]


def stack_fixture(make_fake: Callable[[], F], yaml_for_url: YamlForUrl, *,
                  scope: Literal["module", "function"] = "module") -> Callable[..., Any]:
    """A pytest fixture giving a ``Stack`` of ``make_fake()`` behind a gateway configured by
    ``yaml_for_url``. Assign it to the fixture's name in a test module or conftest::

        xai = stack_fixture(FakeXAI, xai_yaml)

    ``scope="module"``: started once for the module, and ``fake.reset()`` is called before
    every test (the fake needs a ``reset`` method). ``scope="function"``: a fresh fake and
    gateway for each test.
    """
    def start() -> AbstractContextManager[Stack[F]]:
        return upstream_and_gateway(make_fake(), yaml_for_url)

    if scope == "function":
        @pytest.fixture
        def fresh_stack() -> Iterator[Stack[F]]:
            with start() as stack:
                yield stack

        return fresh_stack

    @pytest.fixture
    def shared_stack(request: pytest.FixtureRequest, module_stacks: ModuleStacks) -> Stack[F]:
        return module_stacks.get(request.fixturename, start).reset()

    return shared_stack
