"""Read the YAML file, interpolate ``${ENV}`` secrets, validate, and point errors at the line.

Errors read like ``gateway.yaml:7: models[0].provider: unknown provider 'opnai'`` so that a typo is
found without reading a traceback.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from proxy.config.schema import PROVIDER_WIDE, GatewayConfig, ModelConfig

if TYPE_CHECKING:
    from proxy.providers.base import Provider

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

Loc = tuple[str | int, ...]


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
        node = self.root
        line = node.start_mark.line + 1 if node is not None else None
        for part in loc:
            child = None
            if isinstance(node, yaml.MappingNode):
                for key, value in node.value:
                    if key.value == part:
                        child = value
                        break
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                if 0 <= part < len(node.value):
                    child = node.value[part]
            if child is None:
                break
            node, line = child, child.start_mark.line + 1
        return line


def _interpolate(value: Any, loc: Loc, problems: list[tuple[Loc, str]]) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string; a missing variable is an error."""
    if isinstance(value, dict):
        return {k: _interpolate(v, (*loc, k), problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, (*loc, i), problems) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        found = os.environ.get(name)
        if found is None or (found == "" and default is not None):
            if default is not None:
                return default
            problems.append((loc, f"environment variable {name} is not set"))
            return ""
        return found

    return _ENV_REF.sub(substitute, value)


def _pydantic_problems(exc: ValidationError, prefix: Loc = ()) -> list[tuple[Loc, str]]:
    out = []
    for err in exc.errors(include_url=False):
        loc = (*prefix, *err["loc"])
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        out.append((loc, message))
    return out


def load_config_text(
    text: str, source: str = "<config>", base_dir: Path | None = None
) -> GatewayConfig:
    """Parse and validate configuration text; raises :class:`ConfigError`."""
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
            problems.extend(_pydantic_problems(exc))
        problems.extend(_check_models(data, base_dir or Path.cwd()))

    if problems:
        lines = _Lines(text)
        located = sorted(((lines.line(loc) or 0, loc, message) for loc, message in problems),
                         key=lambda item: item[0])
        raise ConfigError([
            f"{source}:{line}: {format_loc(loc)}: {message}" if line
            else f"{source}: {format_loc(loc)}: {message}"
            for line, loc, message in located
        ])
    assert config is not None
    config._source_dir = base_dir or Path.cwd()
    return config


def _check_models(data: dict[str, Any], base_dir: Path) -> list[tuple[Loc, str]]:
    """Provider names and each provider's own keys. Works on the raw data so these problems are
    reported together with any others, not only once the rest is valid."""
    # Imported here: providers import config types, so the registry cannot load at import time.
    from proxy.models.catalog import load_catalog
    from proxy.providers.registry import provider_class, provider_names

    problems: list[tuple[Loc, str]] = []
    shared = data.get("providers") if isinstance(data.get("providers"), dict) else {}
    for name, settings in shared.items():
        cls = provider_class(name)
        if cls is None:
            problems.append((("providers", name),
                             f"unknown provider {name!r} (known: {', '.join(provider_names())})"))
        elif isinstance(settings, dict):
            wide = {k: v for k, v in settings.items() if k in PROVIDER_WIDE}
            try:
                ModelConfig.model_validate({"name": "-", "provider": name, **wide})
            except ValidationError as exc:
                problems.extend(_pydantic_problems(exc, ("providers", name)))
            own = {k: v for k, v in settings.items() if k not in PROVIDER_WIDE}
            problems.extend(_check_settings(cls, own, ("providers", name), base_dir))
    models = data.get("models") if isinstance(data.get("models"), list) else []
    common = set(ModelConfig.model_fields)
    for i, model in enumerate(models):
        if not isinstance(model, dict) or not isinstance(model.get("provider"), str):
            continue
        cls = provider_class(model["provider"])
        if cls is None:
            known = ", ".join(provider_names())
            problems.append((("models", i, "provider"),
                             f"unknown provider {model['provider']!r} (known: {known})"))
            continue
        own = {k: v for k, v in model.items() if k not in common}
        inherited = shared.get(model["provider"])
        merged = own
        if isinstance(inherited, dict):
            merged = {**{k: v for k, v in inherited.items() if k not in PROVIDER_WIDE}, **own}
        problems.extend(_check_settings(cls, merged, ("models", i), base_dir))
    default = data.get("default_model")
    names = {name for m in models if isinstance(m, dict)
             for name in (m.get("name"), *(m.get("aliases") or []))}
    names |= {name for m in load_catalog().models if m.provider in shared
              for name in (m.name, *m.aliases)}
    if isinstance(default, str) and default not in names:
        problems.append((("default_model",), f"{default!r} is not a configured model"))
    for i, model in enumerate(models):
        fallbacks = model.get("fallbacks") if isinstance(model, dict) else None
        for j, name in enumerate(fallbacks if isinstance(fallbacks, list) else []):
            if name not in names or name == model.get("name"):
                problems.append((("models", i, "fallbacks", j),
                                 f"{name!r} is not another served model"))
    return problems


def _check_settings(cls: type[Provider], settings: dict[str, Any], loc: Loc,
                    base_dir: Path) -> list[tuple[Loc, str]]:
    try:
        parsed = cls.settings_class.model_validate(settings)
    except ValidationError as exc:
        return _pydantic_problems(exc, loc)
    try:
        cls.check(parsed, base_dir)
    except ValueError as exc:
        field, _, message = str(exc).partition(": ")
        path = tuple(field.split(".")) if message and " " not in field else ()
        return [((*loc, *path), message if path else str(exc))]
    return []


def load_config(path: str | Path) -> GatewayConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the configuration file: {exc.strerror}"]) from None
    return load_config_text(text, source=str(path), base_dir=path.resolve().parent)


def load_default_config() -> GatewayConfig:
    """The embedded default (``default.yaml`` in this package)."""
    from importlib.resources import files

    text = files("proxy.config").joinpath("default.yaml").read_text(encoding="utf-8")
    return load_config_text(text, source="<embedded default>")
