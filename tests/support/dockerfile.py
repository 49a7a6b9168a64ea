"""The repository's Dockerfile, read with dockerfile-parse and played on this machine.

No container engine runs here, so a test plays the Dockerfile's own steps instead: its stages'
``WORKDIR``, ``ENV`` and ``COPY`` lines become directories, variables and file copies under a
temporary *root* (``/opt/image-proxy`` in the image is ``<root>/opt/image-proxy`` here), and its
build stage's ``RUN`` lines run as written through ``/bin/sh``, with the image's paths in them
mapped to the root. Nothing is duplicated by hand: change the Dockerfile and the test runs what
it now says.

What cannot be played is left out and said so: the final stage's ``RUN`` (it makes the system
user) and ``USER`` (tests run as the current user); the base image is this machine's Python.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from dockerfile_parse import DockerfileParser
from dockerfile_parse.util import get_key_val_dictionary


@dataclass
class Instruction:
    name: str
    flags: dict[str, str]  # the leading --name=value options (--from, --mount, --interval...)
    value: str  # the rest


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, name: str) -> list[Instruction]:
        return [i for i in self.instructions if i.name == name]

    def last(self, name: str) -> Instruction:
        found = self.all(name)
        assert found, f"the stage {self.name or self.base} has no {name}"
        return found[-1]


def _split_flags(value: str) -> tuple[dict[str, str], str]:
    flags: dict[str, str] = {}
    rest = value.strip()
    while rest.startswith("--"):
        word, _, rest = rest.partition(" ")
        name, _, flag_value = word[2:].partition("=")
        flags[name] = flag_value
        rest = rest.lstrip()
    return flags, rest


def stages(path: Path) -> list[Stage]:
    """The Dockerfile's stages, in order, each with its instructions (comments left out)."""
    parser = DockerfileParser(path=str(path), env_replace=False)
    out: list[Stage] = []
    for item in parser.structure:
        name, value = item["instruction"], item["value"]
        if name == "COMMENT":
            continue
        if name == "FROM":
            words = value.split()
            alias = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            out.append(Stage(base=words[0], name=alias))
            continue
        flags, rest = _split_flags(value)
        out[-1].instructions.append(Instruction(name, flags, rest))
    return out


def exec_form(value: str) -> list[str]:
    """An instruction's JSON (exec) form, e.g. ``CMD ["serve", ...]``."""
    words = json.loads(value)
    assert isinstance(words, list), f"not an exec form: {value}"
    return [str(word) for word in words]


class DockerIgnore:
    """A ``.dockerignore``, as Docker reads it: patterns in order, the last one that matches a
    path (or one of its parent directories) decides, ``!`` takes a path back in; ``*`` and ``?``
    stay within one path element, ``**`` spans any number of them."""

    def __init__(self, text: str) -> None:
        self.patterns: list[tuple[bool, re.Pattern[str]]] = []
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pattern = line.removeprefix("!").strip().strip("/")
            self.patterns.append((negate, re.compile(self._translate(pattern))))

    @staticmethod
    def _translate(pattern: str) -> str:
        out, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out, i = out + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                out, i = out + ".*", i + 2
            elif pattern[i] == "*":
                out, i = out + "[^/]*", i + 1
            elif pattern[i] == "?":
                out, i = out + "[^/]", i + 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                out, i = out + pattern[i:end + 1], end + 1
            else:
                out, i = out + re.escape(pattern[i]), i + 1
        return out

    def excludes(self, path: str) -> bool:
        parts = path.strip("/").split("/")
        prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        excluded = False
        for negate, pattern in self.patterns:
            if any(pattern.fullmatch(prefix) for prefix in prefixes):
                excluded = not negate
        return excluded


class Rootfs:
    """The image's file system as a directory of this machine, and its environment."""

    def __init__(self, root: Path, context: Path) -> None:
        self.root = root
        self.context = context
        ignore = context / ".dockerignore"
        self.ignore = DockerIgnore(ignore.read_text() if ignore.exists() else "")
        self.workdir = root
        # The image's absolute paths seen so far (WORKDIR, ENV values, COPY destinations).
        self.paths: set[str] = set()
        self.env: dict[str, str] = {}

    def begin_stage(self) -> None:
        """A new stage: the same root (COPY --from reads it), a fresh environment."""
        self.env = {}
        self.workdir = self.root

    def host(self, image_path: str) -> Path:
        return self.root / image_path.lstrip("/")

    def map(self, text: str) -> str:
        """``text`` with every image path it names turned into its place under the root."""
        for path in sorted(self.paths, key=len, reverse=True):
            # the whole path, or a path under it: never the tail of another (/usr/src vs /src)
            text = re.sub(rf"(?<![\w./-]){re.escape(path)}(?=/|[^\w.-]|$)",
                          lambda _, path=path: str(self.host(path)), text)
        return text

    def _learn(self, image_path: str) -> None:
        self.paths.add(image_path.rstrip("/") or "/")

    def apply(self, instruction: Instruction, base_env: dict[str, str]) -> None:
        """WORKDIR, ENV, COPY (from the context or from the same root); others are ignored."""
        if instruction.name == "WORKDIR":
            self._learn(instruction.value)
            self.workdir = self.host(instruction.value)
            self.workdir.mkdir(parents=True, exist_ok=True)
        elif instruction.name == "ENV":
            scope = {**base_env, **self.env}
            for key, value in get_key_val_dictionary(instruction.value, env_replace=True,
                                                     envs=scope).items():
                if value.startswith("/") and ":" not in value:
                    self._learn(value)
                    value = str(self.host(value))
                self.env[key] = value
        elif instruction.name == "COPY":
            self._copy(instruction)

    def _copy(self, instruction: Instruction) -> None:
        *sources, dest = shlex.split(instruction.value)
        from_stage = "from" in instruction.flags
        target = (self.workdir / dest) if not dest.startswith("/") else self.host(dest)
        if dest.startswith("/"):
            self._learn(dest)
        for source in sources:
            if from_stage:
                self._learn(source)
                origin = self.host(source)
                if origin.resolve() != target.resolve():
                    shutil.copytree(origin, target, dirs_exist_ok=True)
                continue
            origin = self.context / source
            if origin.is_dir():
                files = [p for p in origin.rglob("*") if p.is_file()]
                copies = [(p, target / p.relative_to(origin)) for p in files]
            else:
                copies = [(origin, target / origin.name if dest.endswith("/") else target)]
            for file, into in copies:
                # what .dockerignore keeps out of the build context is not there to copy
                if self.ignore.excludes(str(file.relative_to(self.context))):
                    continue
                into.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, into)

    def run(self, instruction: Instruction, base_env: dict[str, str], timeout: float) -> None:
        """A RUN line through /bin/sh, in the working directory, with the stage's environment."""
        command = self.map(instruction.value)
        result = subprocess.run(["/bin/sh", "-c", command], cwd=self.workdir,
                                env={**base_env, **self.env}, capture_output=True, text=True,
                                timeout=timeout, check=False)
        assert result.returncode == 0, (
            f"RUN {instruction.value!r} failed ({result.returncode}):\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


def host_environment(shims: Path) -> dict[str, str]:
    """This machine's environment as the base image's: without the test run's own virtualenv or
    PYTHONPATH, and with ``python`` being the interpreter running the tests (without its venv)."""
    shims.mkdir(parents=True, exist_ok=True)
    interpreter = Path(getattr(sys, "_base_executable", sys.executable))
    for name in ("python", "python3"):
        link = shims / name
        if not link.exists():
            link.symlink_to(interpreter)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = f"{shims}{os.pathsep}{env.get('PATH', '')}"
    # The one liberty taken with the image's build: pip does not byte-compile what it installs
    # (a third of the install's CPU here; the .pyc files change nothing the test checks).
    env["PIP_NO_COMPILE"] = "1"
    return env
