"""Build the model table from the configuration, the catalog and the provider registry.

This is where everything the configuration says about a model is checked, once: provider names,
each provider's own settings (with its extra checks), rule overrides, prices, fallbacks and the
default model. Every problem is reported together, at its line in the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from proxy.billing.prices import Price, price_for
from proxy.config import GatewayConfig, Loc, ModelConfig, problems_in, pydantic_problems
from proxy.config.schema import PROVIDER_WIDE
from proxy.models.catalog import load_catalog
from proxy.models.rules import ModelRules, ModelRulesOverride
from proxy.providers.base import ModelSpec, Provider, ProviderContext, ProviderSettings
from proxy.providers.registry import provider_class, provider_names
from proxy.routing.table import ModelTable, ServedModel
from proxy.upstream.client import UpstreamClient

Problems = list[tuple[Loc, str]]


@dataclass(frozen=True, slots=True)
class Plan:
    """One model, checked, before its adapter exists."""

    entry: ModelConfig
    cls: type[Provider]
    settings: ProviderSettings
    rules: ModelRules
    drop_unsupported: bool
    price: Price | None


@dataclass(frozen=True, slots=True)
class _Scope:
    """What checking the models needs of the configuration (valid, or raw and partly valid)."""

    providers: dict[str, dict[str, Any]]
    models: list[tuple[Loc, ModelConfig]]  # the config's own entries, where each is
    base_dir: Path
    drop_unsupported: bool
    default_model: str | None


def plan_models(config: GatewayConfig) -> list[Plan]:
    """Every served model, checked; raises :class:`~proxy.config.ConfigError` listing every
    problem at its line."""
    scope = _Scope(config.providers, [(("models", i), m) for i, m in enumerate(config.models)],
                   config.source_dir, config.drop_unsupported, config.default_model)
    plans, problems = _plan_all(scope)
    if problems:
        raise problems_in(config, problems)
    return plans


def check_raw(data: dict[str, Any], base_dir: Path) -> Problems:
    """The same checks on a configuration's raw data, so that they are reported together with
    the file's other problems (the loader calls this even when the rest is not valid). Entries
    that are themselves invalid are left to the schema's own report."""
    providers = data.get("providers")
    providers = {k: v for k, v in providers.items() if isinstance(v, dict)} if isinstance(
        providers, dict) else {}
    models = []
    for i, raw in enumerate(data.get("models") if isinstance(data.get("models"), list) else []):
        try:
            models.append((("models", i), ModelConfig.model_validate(raw)))
        except ValidationError:
            if isinstance(raw, dict) and isinstance(raw.get("provider"), str):
                # A bad common key must not hide a bad provider name or provider key.
                kept = {k: v for k, v in raw.items() if k not in ModelConfig.model_fields
                        or k in ("name", "provider")}
                try:
                    models.append((("models", i), ModelConfig.model_validate(
                        {"name": f"#{i}", **kept})))
                except ValidationError:
                    pass
    drop = data.get("drop_unsupported")
    default = data.get("default_model")
    scope = _Scope(providers, models, base_dir, drop if isinstance(drop, bool) else True,
                   default if isinstance(default, str) else None)
    return _plan_all(scope)[1]


def _plan_all(scope: _Scope) -> tuple[list[Plan], Problems]:
    problems: Problems = []
    _check_provider_sections(scope, problems)
    plans = []
    for loc, entry in _entries(scope):
        plan = _plan(scope, loc, entry, problems)
        if plan is not None:
            plans.append(plan)
    _check_names(scope, plans, problems)
    # A providers: section's problem shows in each of its catalog models: say it once.
    return plans, list(dict.fromkeys(problems))


def build_models(config: GatewayConfig, http: UpstreamClient) -> ModelTable:
    """The model table, with an adapter per model sharing ``http``."""
    context = ProviderContext(http, config.source_dir)
    served = []
    for plan in plan_models(config):
        entry = plan.entry
        spec = ModelSpec(entry.name, entry.resolved_upstream_model(), entry.timeout, plan.rules)
        served.append(ServedModel(entry.name, entry, plan.rules,
                                  plan.cls(spec, plan.settings, context),
                                  plan.drop_unsupported, plan.price))
    return ModelTable(served, config.default_model)


def _check_provider_sections(scope: _Scope, problems: Problems) -> None:
    for name, settings in scope.providers.items():
        where: Loc = ("providers", name)
        cls = provider_class(name)
        if cls is None:
            problems.append((where, f"unknown provider {name!r} "
                                    f"(known: {', '.join(provider_names())})"))
            continue
        wide = {k: v for k, v in settings.items() if k in PROVIDER_WIDE}
        try:
            ModelConfig.model_validate({"name": "-", "provider": name, **wide})
        except ValidationError as exc:
            problems.extend(pydantic_problems(exc, where))
        own = {k: v for k, v in settings.items() if k not in PROVIDER_WIDE}
        _settings(cls, own, where, scope.base_dir, problems)


def _entries(scope: _Scope) -> Iterator[tuple[Loc, ModelConfig]]:
    """The config's own models, then every catalog model of each configured provider that the
    config does not name itself. A config entry named like a catalog model takes its aliases.
    Each with where it was configured."""
    catalog = load_catalog()
    named = {n for _, m in scope.models for n in (m.name, *m.aliases)}
    known = {m.name: m for m in catalog.models}
    for loc, entry in scope.models:
        listed = known.get(entry.name)
        if listed is not None and not entry.aliases:
            extra = [a for a in listed.aliases if a not in named]
            entry = entry.model_copy(update={"aliases": extra})
            named.update(extra)
        yield loc, entry
    for provider in scope.providers:
        if provider_class(provider) is None:
            continue
        for listed in catalog.models_of(provider):
            if listed.name in named:
                continue
            aliases = [a for a in listed.aliases if a not in named]
            named.update((listed.name, *aliases))
            yield ("providers", provider), ModelConfig(
                name=listed.name, provider=provider, upstream_model=listed.upstream_model,
                aliases=aliases)


def _plan(scope: _Scope, loc: Loc, entry: ModelConfig, problems: Problems) -> Plan | None:
    cls = provider_class(entry.provider)
    if cls is None:
        problems.append(((*loc, "provider"), f"unknown provider {entry.provider!r} "
                                             f"(known: {', '.join(provider_names())})"))
        return None
    shared = scope.providers.get(entry.provider, {})
    try:
        entry = entry.inheriting(shared)
    except ValidationError:
        return None  # the providers: section's own problem, reported there
    own: dict[str, Any] = {**{k: v for k, v in shared.items() if k not in PROVIDER_WIDE},
                           **entry.provider_settings}
    settings = _settings(cls, own, loc, scope.base_dir, problems)
    rules = load_catalog().rules_for(entry.provider, entry.resolved_upstream_model())
    if entry.rules is not None:
        try:
            rules = ModelRulesOverride.model_validate(entry.rules).apply(rules)
        except ValidationError as exc:
            problems.extend(pydantic_problems(exc, (*loc, "rules")))
    try:
        price = price_for(entry.provider, entry.resolved_upstream_model(), entry.pricing)
    except ValidationError as exc:
        problems.extend(pydantic_problems(exc, (*loc, "pricing")))
        price = None
    if settings is None:
        return None
    rules = cls.narrow_rules(rules, settings, scope.base_dir)
    drop = scope.drop_unsupported if entry.drop_unsupported is None else entry.drop_unsupported
    return Plan(entry, cls, settings, rules, drop, price)


def _settings(cls: type[Provider], settings: dict[str, Any], loc: Loc, config_dir: Path,
              problems: Problems) -> ProviderSettings | None:
    """The provider's own settings, validated by its settings model and its extra checks."""
    try:
        parsed = cls.settings_class.model_validate(settings)
    except ValidationError as exc:
        problems.extend(pydantic_problems(exc, loc))
        return None
    try:
        cls.check(parsed, config_dir)
    except ValueError as exc:
        field, _, message = str(exc).partition(": ")
        path = tuple(field.split(".")) if message and " " not in field else ()
        problems.append(((*loc, *path), message if path else str(exc)))
        return None
    return parsed


def _check_names(scope: _Scope, plans: list[Plan], problems: Problems) -> None:
    names = {name for plan in plans for name in (plan.entry.name, *plan.entry.aliases)}
    if scope.default_model is not None and scope.default_model not in names:
        problems.append((("default_model",), f"{scope.default_model!r} is not a configured "
                                             "model"))
    for loc, model in scope.models:
        for j, name in enumerate(model.fallbacks):
            if name not in names or name == model.name:
                problems.append(((*loc, "fallbacks", j),
                                 f"{name!r} is not another served model"))
