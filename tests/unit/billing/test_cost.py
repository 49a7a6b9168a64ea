"""Cost figures against hand-computed values from the published prices in pricing.yaml.

Every expected number below is worked out by hand from the rates recorded in
``proxy/models/pricing.yaml`` (source and date per entry), so a change to a rate or to the
arithmetic shows up here.
"""

from __future__ import annotations

import pytest

from proxy.billing.cost import job_cost
from proxy.billing.prices import load_prices, price_for
from proxy.core.events import Completed, Usage
from proxy.models.catalog import load_catalog

# (provider, upstream model, size, quality, tier, n, usage, expected USD)
CASES = [
    # gpt-image-1: $5/M text in, $40/M image out. 12 * 5 + 272 * 40 = 10,940 per M.
    ("openai", "gpt-image-1", "1024x1024", "medium", None, 1,
     Usage(input_tokens=12, output_tokens=272, input_text_tokens=12, output_image_tokens=272),
     0.01094),
    # Same usage without output_tokens_details: every output token is an image token.
    ("openai", "gpt-image-1", "1024x1024", "medium", None, 1,
     Usage(input_tokens=12, output_tokens=272, input_text_tokens=12), 0.01094),
    # No usage reported: OpenAI's per-image estimate. 2 x $0.167 (1024x1024 high).
    ("openai", "gpt-image-1", "1024x1024", "high", None, 2, None, 0.334),
    # 3 x $0.063 (1536x1024 medium).
    ("openai", "gpt-image-1", "1536x1024", "medium", None, 3, None, 0.189),
    # gpt-image-2: text in $5, image in $8, image out $30, text out $10 per M.
    # 20*5 + 100*8 + 4160*30 + 50*10 = 126,200 per M.
    ("openai", "gpt-image-2", "1536x864", "high", None, 1,
     Usage(input_tokens=120, output_tokens=4210, input_text_tokens=20, input_image_tokens=100,
           output_image_tokens=4160, output_text_tokens=50), 0.1262),
    # gpt-image-1-mini: $2/M text in, $8/M image out. 30*2 + 1056*8 = 8,508 per M.
    ("openai", "gpt-image-1-mini", "1024x1024", "low", None, 1,
     Usage(input_tokens=30, output_tokens=1056, input_text_tokens=30, output_image_tokens=1056),
     0.008508),
    # DALL-E: per image by size and quality.
    ("openai", "dall-e-3", "1792x1024", "hd", None, 1, None, 0.12),
    ("openai", "dall-e-3", "1024x1024", "standard", None, 1, None, 0.04),
    ("openai", "dall-e-2", "512x512", "standard", None, 4, None, 0.072),
    # Azure Global = OpenAI's rates.
    ("azure", "gpt-image-1", "1024x1536", "low", None, 2, None, 0.032),
    # Gemini 3 Pro Image: $2/M in, $120/M image out. 9*2 + 2000*120 = 240,018 per M (4K).
    ("gemini", "gemini-3-pro-image", "4096x4096", None, "4K", 1,
     Usage(input_tokens=9, output_tokens=2000, input_text_tokens=9, output_image_tokens=2000),
     0.240018),
    # Gemini 2.5 Flash Image without usage: $0.039 per 1K image.
    ("gemini", "gemini-2.5-flash-image", "1024x1024", None, "1K", 2, None, 0.078),
    # Gemini 3.1 Flash Image, 2K, no usage: $0.101 per image.
    ("gemini", "gemini-3.1-flash-image", "2048x2048", None, "2K", 1, None, 0.101),
    # Imagen 4 Ultra $0.06, Imagen 4 Fast $0.02 per image.
    ("imagen", "imagen-4.0-ultra-generate-001", "1024x1024", None, None, 3, None, 0.18),
    ("imagen", "imagen-4.0-fast-generate-001", "1408x768", None, None, 4, None, 0.08),
    # grok-imagine-image-2.0 by resolution tier and quality: 2 x $0.08 (2k medium).
    ("xai", "grok-imagine-image-2.0", "2048x1152", "medium", "2k", 2, None, 0.16),
    ("xai", "grok-2-image-1212", "1024x768", None, None, 3, None, 0.21),
]


@pytest.mark.parametrize(("provider", "model", "size", "quality", "tier", "n", "usage", "usd"),
                         CASES)
def test_cost_matches_hand_computed_values(provider, model, size, quality, tier, n, usage,
                                           usd) -> None:
    price = price_for(provider, model, None)
    assert price is not None
    assert price.cost(images=n, usage=usage, size=size, quality=quality, tier=tier) == \
        pytest.approx(usd, abs=1e-9)


def test_every_catalog_model_has_a_dated_sourced_price() -> None:
    book = load_prices()
    for model in load_catalog().models:
        price = book.find(model.provider, model.upstream_model)
        assert price is not None, model.name
        assert price.source and price.taken, model.name


def test_unknown_price_is_null_never_invented() -> None:
    assert price_for("comfyui", "sdxl", None) is None
    dalle = price_for("openai", "dall-e-3", None)
    assert dalle.cost(images=1, usage=None, size="999x999", quality="hd") is None


@pytest.mark.parametrize(("kind", "quality", "tier", "usd"), [
    ("generation", None, None, 0.04),   # quality auto is billed low, resolution 1k
    ("generation", "auto", None, 0.04),
    ("edit", None, None, 0.06),         # edits are served (and billed) at medium
    ("generation", None, "2k", 0.06),
    ("edit", "low", "2k", 0.06),        # what the client chose wins over the defaults
])
def test_settings_left_out_are_priced_as_the_provider_bills_them(kind, quality, tier,
                                                                  usd) -> None:
    price = price_for("xai", "grok-imagine-image-2.0", None)
    resolved = {"size": "1024x1024"} if quality is None else {"size": "1024x1024",
                                                              "quality": quality}
    cost = job_cost(price, images=1, completed=Completed(), resolved=resolved, tier=tier,
                    kind=kind)
    assert cost == pytest.approx(usd)


@pytest.mark.parametrize("kind", ["generation", "edit"])
def test_every_catalog_model_has_a_cost_for_a_bare_prompt(kind) -> None:
    """Nothing but a prompt (no size, quality or resolution; no usage, no charge reported):
    every priced model still has a cost, or a budget could be spent through it."""
    for model in load_catalog().models:
        price = price_for(model.provider, model.upstream_model, None)
        for resolved in ({}, {"size": "auto"}, {"size": "7x7", "quality": "unheard-of"}):
            cost = job_cost(price, images=2, completed=Completed(), resolved=resolved,
                            tier=None, kind=kind)
            assert cost is not None and cost > 0, (model.name, resolved)


def test_settings_no_price_matches_are_charged_the_highest_price() -> None:
    # DALL-E 3 has no 999x999: the most it costs per image (1792x1024 hd, $0.12), twice.
    dalle = price_for("openai", "dall-e-3", None)
    assert job_cost(dalle, images=2, completed=Completed(), resolved={"size": "999x999"},
                    tier=None) == pytest.approx(0.24)
    # The upstream's own statement of its charge still wins over any table.
    assert job_cost(dalle, images=2, completed=Completed(cost_usd=0.01), resolved={},
                    tier=None) == pytest.approx(0.01)
    assert job_cost(None, images=2, completed=Completed(), resolved={}, tier=None) is None
