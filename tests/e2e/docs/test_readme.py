"""Every code block of README.md runs as written, or is marked as an illustration.

A block is an illustration when the line right before its fence is ``<!-- illustration -->``
(commands that run forever or need what a test machine lacks: a container engine, a real
provider key). Every other block is run, by its language:

- ``bash``: in a scratch folder, against a gateway started as ``scripts/serve`` starts it (the
  embedded default), on a free port written where the README says 8080;
- ``python``: with this interpreter (it has the ``openai`` SDK), the same way;
- ``js``: with Node.js, after ``npm install openai socket.io-client`` in a scratch folder, as
  the README says (skipped only when ``node`` or ``npm`` is not installed);
- ``yaml``: a gateway configuration: ``image-proxy check-config`` must accept it, with its
  ``${VAR}`` references set to placeholder values.

A block in any other language that is not marked fails: a new snippet is either tested here or
says that it is an illustration.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from PIL import Image

from tests.support.paths import REPO_ROOT
from tests.support.processes import serving

README = REPO_ROOT / "README.md"
ILLUSTRATION = "<!-- illustration -->"
README_PORT = "8080"


@dataclass(frozen=True)
class Block:
    language: str
    text: str
    line: int  # of the opening fence, 1-based
    illustration: bool

    @property
    def name(self) -> str:
        return f"README.md:{self.line}:{self.language or 'text'}"


def readme_blocks(text: str) -> list[Block]:
    lines = text.splitlines()
    blocks = []
    for token in MarkdownIt("commonmark").parse(text):
        if token.type not in ("fence", "code_block") or token.map is None:
            continue
        first = token.map[0]
        before = lines[first - 1].strip() if first > 0 else ""
        blocks.append(Block(token.info.strip().split(" ")[0].lower(), token.content, first + 1,
                            before == ILLUSTRATION))
    return blocks


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))
RUN = [block for block in BLOCKS if not block.illustration]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``image-proxy serve`` with no configuration, as ``scripts/serve`` runs it."""
    with serving(log=tmp_path_factory.mktemp("readme") / "serve.log") as url:
        yield url


def on_port(block: Block, url: str) -> str:
    """The block as written, pointed at the test's gateway instead of port 8080."""
    port = url.rsplit(":", 1)[1]
    return block.text.replace(f":{README_PORT}", f":{port}")


def run(command: list[str], cwd: Path, timeout: float = 120,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def test_readme_has_runnable_blocks_of_every_kind() -> None:
    # The parser sees the blocks (a broken extraction must not pass for an empty README).
    assert {"bash", "python", "js", "yaml"} <= {block.language for block in RUN}
    assert any(block.illustration for block in BLOCKS)


def test_every_unmarked_block_is_one_this_test_runs() -> None:
    unrunnable = [block.name for block in RUN if block.language not in RUNNERS]
    assert not unrunnable, (f"{unrunnable}: mark each with {ILLUSTRATION} on the line before "
                            "its fence, or teach tests/e2e/docs/test_readme.py to run it")


def run_bash(block: Block, scratch: Path, request: pytest.FixtureRequest) -> None:
    gateway = request.getfixturevalue("gateway")
    run(["bash", "-euo", "pipefail", "-c", on_port(block, gateway)], scratch)
    for image in scratch.glob("*.png"):  # what a block saves must be an image
        with Image.open(image) as opened:
            opened.verify()


def run_python(block: Block, scratch: Path, request: pytest.FixtureRequest) -> None:
    gateway = request.getfixturevalue("gateway")
    script = scratch / "snippet.py"
    script.write_text(on_port(block, gateway))
    out = run([sys.executable, str(script)], scratch).stdout
    if "stream=True" in block.text:
        assert out.splitlines()[-1] == "image_generation.completed", out


@pytest.fixture(scope="module")
def node_packages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder where the README's ``npm install`` ran."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js (node and npm) is not installed: the README's JavaScript is not run")
    folder = tmp_path_factory.mktemp("node")
    found = re.search(r"`npm install ([^`]+)`", README.read_text(encoding="utf-8"))
    assert found, "the README does not say what to install for its JavaScript"
    run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", *found[1].split()],
        folder, timeout=300)
    return folder


def run_js(block: Block, scratch: Path, request: pytest.FixtureRequest) -> None:
    gateway = request.getfixturevalue("gateway")
    node_packages = request.getfixturevalue("node_packages")
    script = node_packages / f"snippet-{block.line}.mjs"
    script.write_text(on_port(block, gateway))
    out = run(["node", str(script)], node_packages, timeout=120).stdout
    lines = out.splitlines()
    assert lines[-1].startswith("job ") and "1 image(s)" in lines[-1], out
    percents = [int(m.group(1)) for m in re.finditer(r"^running (\d+)%$", out, re.M)]
    assert percents and percents == sorted(percents), out  # progress moved, never back
    assert "succeeded 100%" in lines, out


def run_yaml(block: Block, scratch: Path, request: pytest.FixtureRequest) -> None:
    config = scratch / "gateway.yaml"
    config.write_text(block.text)
    env = dict(os.environ)
    for name in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", block.text):
        env[name] = f"placeholder-{name.lower()}"
    done = run([sys.executable, "-m", "proxy", "check-config", "--config", str(config)], scratch,
               env=env)
    assert done.stdout.startswith("configuration OK: "), done.stdout


RUNNERS = {"bash": run_bash, "python": run_python, "js": run_js, "yaml": run_yaml}


@pytest.mark.parametrize("block", [b for b in RUN if b.language in RUNNERS],
                         ids=lambda block: block.name)
def test_readme_block_runs_as_written(block: Block, request: pytest.FixtureRequest,
                                      tmp_path: Path) -> None:
    RUNNERS[block.language](block, tmp_path, request)
