"""What a job cost, in USD, from the published prices in ``pricing.yaml``.

Token-billed models (gpt-image, Gemini) are priced from the usage the upstream reports, image
tokens at the image rate: when the upstream does not split its output tokens, they are all image
tokens (the Images API often leaves ``output_tokens_details`` out; pricing them as text is the
bug peers ship). Models billed per image, and token-billed ones whose upstream reported no usage,
are priced per image by size (or resolution tier) and quality, times the images returned. A
setting the request left out (or left ``auto``) is priced as the provider bills it: each entry's
``defaults`` say what that is. A model with no published price has no cost (``null``), never a
made-up one; what a job of a priced model costs when its settings still match no price is
:meth:`Price.ceiling` (see :mod:`proxy.billing.cost`).
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from functools import lru_cache
from importlib.resources import files
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from proxy.core.events import Usage

PER_MILLION = 1_000_000
# pricing.yaml names models by who sells them; our providers are named by wire format.
PRICE_PREFIXES = {"gemini": ("google", "vertex"), "imagen": ("vertex", "google")}


class Defaults(BaseModel):
    """What the provider bills when a request leaves a setting out, or says ``auto``."""

    model_config = ConfigDict(extra="forbid")

    quality: str | None = None
    # Edits, when the provider serves them at another quality (xAI: medium, not low).
    edit_quality: str | None = None
    # The resolution tier ("1K", "1k", ...), spelt as the ``per_image`` keys spell it.
    resolution: str | None = None

    def quality_for(self, quality: str | None, kind: str) -> str | None:
        if quality not in (None, "", "auto"):
            return quality
        if kind == "edit" and self.edit_quality is not None:
            return self.edit_quality
        return self.quality or quality


class Price(BaseModel):
    """One priced model family (a ``prices`` entry of pricing.yaml, or a config override)."""

    model_config = ConfigDict(extra="forbid")

    models: list[str] = Field(default_factory=list)
    source: str | None = None
    source_kind: str | None = None
    taken: str | None = None
    # USD per 1M tokens: input_text, input_image, output_text, output_image (and cached rates).
    tokens: dict[str, float] = Field(default_factory=dict)
    # Output tokens per generated image by resolution tier (informational, Gemini).
    image_tokens: dict[str, int] = Field(default_factory=dict)
    # USD per image: size or tier -> quality -> price; "*" matches anything.
    per_image: dict[str, dict[str, float]] = Field(default_factory=dict)
    # The settings the provider bills when a request leaves them out.
    defaults: Defaults = Field(default_factory=Defaults)
    notes: str | None = None

    @property
    def ceiling(self) -> float | None:
        """The highest price per image this entry knows (None: it knows none)."""
        prices = [price for by_quality in self.per_image.values()
                  for price in by_quality.values()]
        return max(prices) if prices else None

    def _token_cost(self, usage: Usage) -> float | None:
        rates = self.tokens
        if not rates or (usage.input_tokens == 0 and usage.output_tokens == 0):
            return None
        text_in = usage.input_text_tokens
        image_in = usage.input_image_tokens
        if text_in + image_in < usage.input_tokens:  # no split given: count the rest as text
            text_in = usage.input_tokens - image_in
        cost = text_in * rates.get("input_text", 0.0)
        cost += image_in * rates.get("input_image", rates.get("input_text", 0.0))
        image_out = usage.output_image_tokens
        text_out = usage.output_text_tokens or 0
        if image_out is None:
            image_out, text_out = usage.output_tokens, 0
        image_rate = rates.get("output_image", rates.get("output_text", 0.0))
        cost += image_out * image_rate + text_out * rates.get("output_text", image_rate)
        return cost / PER_MILLION

    def _image_price(self, size: str | None, quality: str | None) -> float | None:
        by_quality = self.per_image.get(size or "") or self.per_image.get("*")
        if by_quality is None:
            return None
        price = by_quality.get(quality or "")
        return price if price is not None else by_quality.get("*")

    def cost(self, *, images: int, usage: Usage | None, size: str | None,
             quality: str | None, tier: str | None = None,
             kind: str = "generation") -> float | None:
        """USD for one job, or None when these prices cannot say. ``quality`` and ``tier``
        left out (or ``auto``) are the provider's ``defaults``."""
        if usage is not None:
            tokens = self._token_cost(usage)
            if tokens is not None:
                return round(tokens, 6)
        quality = self.defaults.quality_for(quality, kind)
        tier = tier or self.defaults.resolution
        price = self._image_price(size, quality)
        if price is None and tier is not None:
            price = self._image_price(tier, quality)
        return None if price is None else round(price * images, 6)


class PriceBook(BaseModel):
    model_config = ConfigDict(extra="forbid")

    currency: str = "USD"
    prices: list[Price]

    def find(self, provider: str, upstream_model: str) -> Price | None:
        for prefix in PRICE_PREFIXES.get(provider, (provider,)):
            name = f"{prefix}/{upstream_model}"
            for price in self.prices:
                if any(fnmatchcase(name, pattern) for pattern in price.models):
                    return price
        return None


@lru_cache(maxsize=1)
def load_prices() -> PriceBook:
    text = files("proxy.billing").joinpath("pricing.yaml").read_text(encoding="utf-8")
    return PriceBook.model_validate(yaml.safe_load(text))


def price_for(provider: str, upstream_model: str, override: dict[str, Any] | None) -> Price | None:
    """A config override wins (a self-hosted model's own running cost, say); the built-in
    renderer is free."""
    if override is not None:
        return Price.model_validate(override)
    if provider == "local":
        return Price(per_image={"*": {"*": 0.0}})
    return load_prices().find(provider, upstream_model)
