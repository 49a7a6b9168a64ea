"""Shared fixtures: real gateways under uvicorn, fake upstreams, and what backs them.

The code behind them lives in ``tests/support/``: gateways (``gateways.py``), a fake upstream
plus a gateway in front of it (``stack.py``), the official SDK clients (``clients.py``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from proxy.app import create_app
from proxy.config import load_default_config
from tests.support import gateways
from tests.support.fakes.comfyui import FakeComfyUI, comfy_yaml
from tests.support.fakes.openai_upstream import FakeOpenAI, openai_models_yaml
from tests.support.gateways import GatewayFactory
from tests.support.servers import RunningServer, serve
from tests.support.stack import ModuleStacks, stack_fixture

# The files that hold a worker longest (seconds of it, on 2 cores under the suite's load; most
# start real processes or a fresh virtualenv), longest first. scripts/test hands files to its
# workers in the order collected (--no-loadscope-reorder), so these start first, side by side,
# and none of them is left running alone at the end. Every other file follows, the files with
# the most tests first (pytest-xdist's own order).
LONGEST_FIRST = (
    "tests/e2e/deploy/test_container.py",  # the Dockerfile's install steps: 50-90 s
    "tests/e2e/fleet/test_durable_async.py",
    "tests/e2e/openapi/test_every_check.py",
    "tests/e2e/cli/test_allocator.py",
    "tests/e2e/openapi/test_fuzz.py",
    "tests/e2e/shutdown/test_drain.py",
    "tests/e2e/docs/test_readme.py",
    "tests/e2e/reliability/test_reliability.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On the workers of pytest-xdist: the files in ``LONGEST_FIRST`` order, then the others by
    how many tests they hold. Each file's tests keep their order, and stay together."""
    if not hasattr(config, "workerinput"):
        return
    counts = Counter(_file(item) for item in items)

    def rank(item: pytest.Item) -> tuple[int, int]:
        path = _file(item)
        if path in LONGEST_FIRST:
            return LONGEST_FIRST.index(path), 0
        return len(LONGEST_FIRST), -counts[path]

    items.sort(key=rank)  # stable: a file's tests, and files of equal rank, keep their order


def _file(item: pytest.Item) -> str:
    return item.nodeid.split("::")[0]


@pytest.fixture(scope="session", autouse=True)
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Gateways started by tests keep their ledger and files here, never in the home folder."""
    patch = pytest.MonkeyPatch()
    patch.setenv("IMAGE_PROXY_DATA_DIR", str(tmp_path_factory.mktemp("data")))
    yield
    patch.undo()


@pytest.fixture
def start_gateway() -> GatewayFactory:
    """Start a gateway from YAML text: ``with start_gateway(yaml) as server: ...``."""
    return gateways.start_gateway


@pytest.fixture(scope="module")
def module_stacks() -> Iterator[ModuleStacks]:
    """The module's shared stacks (``stack_fixture(...)``), stopped after its last test."""
    with ModuleStacks.opened() as stacks:
        yield stacks


@pytest.fixture(scope="session")
def local_gateway() -> Iterator[RunningServer]:
    """The embedded default configuration (the local renderer), shared by the session."""
    with serve(create_app(load_default_config())) as server:
        yield server


@pytest.fixture
def fake_openai() -> Iterator[tuple[FakeOpenAI, str]]:
    """The fake OpenAI upstream alone, and its base URL (``.../v1``), for tests that start
    their own gateways against it (several, or restarted ones)."""
    fake = FakeOpenAI()
    with serve(fake.app) as server:
        yield fake, f"{server.url}/v1"


@pytest.fixture
def fake_comfyui() -> Iterator[tuple[FakeComfyUI, str]]:
    """The fake ComfyUI alone, and its base URL."""
    comfy = FakeComfyUI(step_delay=0.005)
    with serve(comfy.app) as server:
        yield comfy, server.url


# A fresh fake OpenAI behind a gateway serving its models, for each test (Stack: fake, gateway).
openai_gateway = stack_fixture(
    FakeOpenAI, lambda url: openai_models_yaml(f"{url}/v1", first_byte=2, total=5),
    scope="function")

# A fresh fake ComfyUI behind a gateway serving COMFY_MODEL, for each test.
comfy = stack_fixture(lambda: FakeComfyUI(step_delay=0.005), comfy_yaml, scope="function")
