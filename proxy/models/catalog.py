"""The shipped model catalog (``catalog.yaml``): named models with their rules and aliases,
and fallback rules for models it does not name."""

from __future__ import annotations

from fnmatch import fnmatchcase
from functools import lru_cache
from importlib.resources import files

import yaml
from pydantic import BaseModel, ConfigDict, Field

from proxy.models.rules import ModelRules, ModelRulesOverride


class CatalogModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    provider: str
    upstream_model: str
    # Globs of other upstream names that take these rules (dated snapshots).
    matches: list[str] = Field(default_factory=list)
    aliases: list[str] = Field(default_factory=list)
    profile: str | None = None
    rules: ModelRulesOverride = ModelRulesOverride()


class Fallback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: str
    profile: str | None = None
    rules: ModelRulesOverride = ModelRulesOverride()


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid")

    profiles: dict[str, ModelRulesOverride] = {}
    models: list[CatalogModel]
    fallbacks: list[Fallback] = []

    def rules_of(self, entry: CatalogModel) -> ModelRules:
        rules = ModelRules()
        if entry.profile:
            rules = self.profiles[entry.profile].apply(rules)
        return entry.rules.apply(rules)

    def entry_for(self, provider: str, upstream_model: str) -> CatalogModel | None:
        """The named model with this upstream name, else the first whose globs match."""
        mine = [m for m in self.models if m.provider == provider]
        for entry in mine:
            if entry.upstream_model == upstream_model:
                return entry
        for entry in mine:
            if any(fnmatchcase(upstream_model, pattern) for pattern in entry.matches):
                return entry
        return None

    def rules_for(self, provider: str, upstream_model: str) -> ModelRules:
        entry = self.entry_for(provider, upstream_model)
        if entry is not None:
            return self.rules_of(entry)
        for fallback in self.fallbacks:
            if fallback.provider == provider:
                rules = ModelRules()
                if fallback.profile:
                    rules = self.profiles[fallback.profile].apply(rules)
                return fallback.rules.apply(rules)
        return ModelRules(passthrough=True)

    def models_of(self, provider: str) -> list[CatalogModel]:
        return [m for m in self.models if m.provider == provider]


@lru_cache(maxsize=1)
def load_catalog() -> Catalog:
    text = files("proxy.models").joinpath("catalog.yaml").read_text(encoding="utf-8")
    catalog = Catalog.model_validate(yaml.safe_load(text))
    for entry in catalog.models:
        if entry.profile and entry.profile not in catalog.profiles:
            raise ValueError(f"catalog {entry.name}: unknown profile {entry.profile}")
    return catalog
