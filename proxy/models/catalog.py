"""The shipped model catalog (``catalog.yaml``): rules for known models, looked up by provider and
upstream model name."""

from __future__ import annotations

from fnmatch import fnmatchcase
from functools import lru_cache
from importlib.resources import files

import yaml
from pydantic import BaseModel, ConfigDict

from proxy.models.rules import ModelRules, ModelRulesOverride


class CatalogEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: str
    upstream_model: str
    profile: str | None = None
    rules: ModelRulesOverride = ModelRulesOverride()


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid")

    profiles: dict[str, ModelRulesOverride] = {}
    models: list[CatalogEntry]

    def rules_for(self, provider: str, upstream_model: str) -> ModelRules:
        """Rules of the first entry matching; permissive defaults when none does."""
        for entry in self.models:
            if entry.provider == provider and fnmatchcase(upstream_model, entry.upstream_model):
                rules = ModelRules()
                if entry.profile:
                    rules = self.profiles[entry.profile].apply(rules)
                return entry.rules.apply(rules)
        return ModelRules(passthrough=True)


@lru_cache(maxsize=1)
def load_catalog() -> Catalog:
    text = files("proxy.models").joinpath("catalog.yaml").read_text(encoding="utf-8")
    catalog = Catalog.model_validate(yaml.safe_load(text))
    for entry in catalog.models:
        if entry.profile and entry.profile not in catalog.profiles:
            raise ValueError(f"catalog {entry.upstream_model}: unknown profile {entry.profile}")
    return catalog
