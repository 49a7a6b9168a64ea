"""Cost figures against hand-computed values from the published prices in pricing.yaml.

Every expected number below is worked out by hand from the rates recorded in
``proxy/models/pricing.yaml`` (source and date per entry), so a change to a rate or to the
arithmetic shows up here.
"""

from __future__ import annotations

import pytest

from proxy.billing.prices import load_prices, price_for
from proxy.core.events import Usage
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
