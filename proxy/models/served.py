"""The models this gateway serves: config entries joined with catalog rules and their adapter."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from proxy.config import GatewayConfig, ModelConfig
from proxy.config.schema import PROVIDER_WIDE
from proxy.errors import invalid_param, model_not_found
from proxy.models.catalog import load_catalog
from proxy.models.pricing import Price, price_for
from proxy.models.rules import ModelRules
from proxy.providers.base import Provider, ProviderContext
from proxy.providers.registry import provider_class
from proxy.upstream import UpstreamClient


@dataclass(frozen=True, slots=True)
class ServedModel:
    name: str
    config: ModelConfig
    rules: ModelRules
    provider: Provider
    drop_unsupported: bool
    price: Price | None = None

    @property
    def provider_name(self) -> str:
        return self.config.provider

    @property
    def upstream_model(self) -> str:
        return self.config.resolved_upstream_model()

    @property
    def upstream_key(self) -> str:
        """Which upstream this is, for its circuit breaker: provider and address."""
        settings = self.provider.settings
        where = getattr(settings, "base_url", None) or getattr(settings, "endpoint", None)
        return f"{self.provider_name}:{where or ''}"


class ModelTable:
    """Lookup by name or alias, with close-match suggestions for a 404."""

    def __init__(self, config: GatewayConfig, http: UpstreamClient) -> None:
        catalog = load_catalog()
        self.default = config.default_model
        self.models: list[ServedModel] = []
        self._by_name: dict[str, ServedModel] = {}
        context = ProviderContext(http, config.source_dir)
        for entry in _entries(config):
            cls = provider_class(entry.provider)
            assert cls is not None, "config validation checks provider names"
            shared = config.providers.get(entry.provider, {})
            entry = entry.inheriting(shared)
            settings = cls.settings_class.model_validate(
                {**{k: v for k, v in shared.items() if k not in PROVIDER_WIDE},
                 **entry.provider_settings})
            rules = catalog.rules_for(entry.provider, entry.resolved_upstream_model())
            if entry.rules is not None:
                rules = entry.rules.apply(rules)
            drop = entry.drop_unsupported
            if drop is None:
                drop = config.drop_unsupported
            price = price_for(entry.provider, entry.resolved_upstream_model(), entry.pricing)
            served = ServedModel(entry.name, entry, rules, cls(entry, settings, context), drop,
                                 price)
            self.models.append(served)
            for name in (entry.name, *entry.aliases):
                self._by_name.setdefault(name, served)
        if self.default is None and len(self.models) == 1:
            self.default = self.models[0].name

    def resolve(self, name: str | None) -> ServedModel:
        if name is None:
            if self.default is None:
                raise invalid_param("model", "Missing required parameter: 'model'.",
                                    code="missing_required_parameter")
            name = self.default
        served = self._by_name.get(name)
        if served is None:
            raise model_not_found(name, difflib.get_close_matches(name, list(self._by_name), n=3))
        return served

    async def aclose(self) -> None:
        for served in self.models:
            await served.provider.aclose()


def _entries(config: GatewayConfig) -> list[ModelConfig]:
    """The config's own models, then every catalog model of each configured provider that the
    config does not name itself. A config entry named like a catalog model takes its aliases."""
    catalog = load_catalog()
    named = {n for m in config.models for n in (m.name, *m.aliases)}
    known = {m.name: m for m in catalog.models}
    entries = []
    for entry in config.models:
        listed = known.get(entry.name)
        if listed is not None and not entry.aliases:
            extra = [a for a in listed.aliases if a not in named]
            entry = entry.model_copy(update={"aliases": extra})
            named.update(extra)
        entries.append(entry)
    for provider in config.providers:
        for listed in catalog.models_of(provider):
            if listed.name in named:
                continue
            aliases = [a for a in listed.aliases if a not in named]
            entries.append(ModelConfig(name=listed.name, provider=provider,
                                       upstream_model=listed.upstream_model, aliases=aliases))
            named.update((listed.name, *aliases))
    return entries
