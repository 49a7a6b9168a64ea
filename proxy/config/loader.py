"""Read the YAML file, interpolate ``${ENV}`` secrets, validate, and point errors at the line.

Errors read like ``gateway.yaml:7: models[0].provider: unknown provider 'opnai'`` so that a typo is
found without reading a traceback.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from proxy.config.schema import GatewayConfig

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

Loc = tuple[str | int, ...]
# Checks a caller adds to loading (the model table's: providers, rules, prices, fallbacks): they
# get the raw data and the config's folder, so their problems are reported together with the
# schema's, even when the rest of the file is not valid.
Checks = Callable[[dict[str, Any], Path], list[tuple[Loc, str]]]


class ConfigError(Exception):
    """The configuration is unusable; ``str()`` lists every problem, one per line."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


def format_loc(loc: Iterable[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


class _Lines:
    """Maps a location such as ``("models", 0, "provider")`` to its line in the YAML source."""

    def __init__(self, text: str) -> None:
        try:
            self.root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError:
            self.root = None

    def line(self, loc: Loc) -> int | None:
        """The line of the key that names ``loc`` (a block value starts on the line after its
        key), or of the list item; as deep as the file goes."""
        node = self.root
        line = node.start_mark.line + 1 if node is not None else None
        for part in loc:
            child = None
            if isinstance(node, yaml.MappingNode):
                for key, value in node.value:
                    if key.value == part:
                        child, at = value, key.start_mark.line + 1
                        break
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                if 0 <= part < len(node.value):
                    child = node.value[part]
                    at = child.start_mark.line + 1
            if child is None:
                break
            node, line = child, at
        return line


def _interpolate(value: Any, loc: Loc, problems: list[tuple[Loc, str]]) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string; a variable that is not set, or
    is empty, with no default is an error naming it (the location names the field)."""
    if isinstance(value, dict):
        return {k: _interpolate(v, (*loc, k), problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, (*loc, i), problems) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        found = os.environ.get(name)
        if found:
            return found
        if default is not None:  # shell semantics: `:-` also replaces an empty value
            return default
        # An empty secret must not pass for one (an API key sent as ""): `${VAR:-}` says that
        # empty is meant.
        problems.append((loc, f"environment variable {name} is not set" if found is None else
                         f"environment variable {name} is empty (set it, or write "
                         f"${{{name}:-}} where an empty value is meant)"))
        return ""

    return _ENV_REF.sub(substitute, value)


def pydantic_problems(exc: ValidationError, prefix: Loc = ()) -> list[tuple[Loc, str]]:
    """A pydantic error as ``(location, message)`` problems, under ``prefix``."""
    out = []
    for err in exc.errors(include_url=False):
        loc = (*prefix, *err["loc"])
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        out.append((loc, message))
    return out


def load_config_text(
    text: str, source: str = "<config>", base_dir: Path | None = None,
    checks: Checks | None = None,
) -> GatewayConfig:
    """Parse and validate configuration text (and run ``checks``); raises
    :class:`ConfigError` listing every problem at its line."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise ConfigError([f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}"]) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([f"{source}: the top level must be a mapping of keys"])

    problems: list[tuple[Loc, str]] = []
    data = _interpolate(raw, (), problems)
    config: GatewayConfig | None = None
    if not problems:
        try:
            config = GatewayConfig.model_validate(data)
        except ValidationError as exc:
            problems.extend(pydantic_problems(exc))
        if checks is not None:
            problems.extend(checks(data, base_dir or Path.cwd()))

    if problems:
        raise located(source, text, problems)
    assert config is not None
    config._source_dir = base_dir or Path.cwd()
    config._source_name, config._source_text = source, text
    return config


def located(source: str, text: str, problems: Sequence[tuple[Loc, str]]) -> ConfigError:
    """Problems as a :class:`ConfigError` whose lines read ``file:line: where: what``."""
    lines = _Lines(text)
    found = sorted(((lines.line(loc) or 0, loc, message) for loc, message in problems),
                   key=lambda item: item[0])
    return ConfigError([
        f"{source}:{line}: {format_loc(loc)}: {message}" if line
        else f"{source}: {format_loc(loc)}: {message}"
        for line, loc, message in found
    ])


def problems_in(config: GatewayConfig, problems: Sequence[tuple[Loc, str]]) -> ConfigError:
    """Problems found after loading (when the model table is built, say), pointed at their
    lines in the file ``config`` came from."""
    return located(config._source_name, config._source_text, problems)


def load_config(path: str | Path, checks: Checks | None = None) -> GatewayConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the configuration file: {exc.strerror}"]) from None
    return load_config_text(text, source=str(path), base_dir=path.resolve().parent,
                            checks=checks)


def load_default_config(checks: Checks | None = None) -> GatewayConfig:
    """The embedded default (``default.yaml`` in this package)."""
    text = files("proxy.config").joinpath("default.yaml").read_text(encoding="utf-8")
    return load_config_text(text, source="<embedded default>", checks=checks)
