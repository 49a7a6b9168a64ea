"""The models this gateway serves, by name or alias: each a config entry joined with its
catalog rules, its price and its adapter."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from proxy.billing.prices import Price
from proxy.config import ModelConfig
from proxy.core.errors import invalid_param, model_not_found
from proxy.models.rules import ModelRules
from proxy.providers.base import Provider


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
        return self.provider.upstream_key

    @property
    def implied_names(self) -> tuple[str, str]:
        """The names a client may use without any being configured: the upstream's own id
        (``grok-2-image-1212``, dated snapshots included) and ``<provider>/<upstream id>``."""
        return self.upstream_model, f"{self.provider_name}/{self.upstream_model}"


class ModelTable:
    """Lookup by name or alias, with close-match suggestions for a 404.

    A model answers to its name, its aliases, and its implied names (its upstream id, bare and
    behind its provider's name). A configured name or alias always wins over an implied one;
    an implied name two models share goes to the first served (config order, then catalog
    order), so the same id resolves the same way on every start."""

    def __init__(self, models: list[ServedModel], default: str | None) -> None:
        self.models = models
        self._by_name: dict[str, ServedModel] = {}
        for served in models:
            for name in (served.name, *served.config.aliases):
                self._by_name.setdefault(name, served)
        for served in models:
            for name in served.implied_names:
                self._by_name.setdefault(name, served)
        if default is None and len(models) == 1:
            default = models[0].name
        self.default = default

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
