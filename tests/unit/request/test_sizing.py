"""Size and aspect ratio, both ways, and the Gemini-only request fields."""

from __future__ import annotations

import pytest

from proxy.core.errors import GatewayError
from proxy.models.catalog import load_catalog
from proxy.models.rules import ModelRules
from proxy.request.bind import apply_rules
from proxy.request.parse import parse_params

GEMINI_LIKE = ModelRules(
    sizes=["auto"], aspect_ratios=["1:1", "2:3", "3:2", "3:4", "4:3", "9:16", "16:9", "21:9"],
    resolutions=["1K", "2K", "4K"], thinking_levels=["minimal", "high"],
    response_modalities=True, media_resolution=True)


def build(body: dict, rules: ModelRules, drop: bool = True):
    known, unknown = parse_params(body)
    return apply_rules(known, unknown, "m", rules, drop_unsupported=drop)


@pytest.mark.parametrize(("size", "ratio", "tier"), [
    ("1024x1024", "1:1", "1K"),
    ("1536x1024", "3:2", "2K"),
    ("1536x864", "16:9", "2K"),
    ("1000x1500", "2:3", "2K"),
    ("3840x2160", "16:9", "4K"),
    ("512x2048", "9:16", "2K"),      # 1:4 is not offered: nearest on a log scale is 9:16
    ("2560x1080", "21:9", "4K"),
    ("16:9", "16:9", None),          # a ratio sent as the size
])
def test_size_maps_to_the_nearest_ratio_and_covering_tier(size, ratio, tier) -> None:
    request = build({"prompt": "p", "size": size}, GEMINI_LIKE)
    assert (request.aspect_ratio, request.resolution) == (ratio, tier)


def test_aspect_ratio_spellings_and_resolution() -> None:
    request = build({"prompt": "p", "aspectRatio": "16:9", "resolution": "4k"}, GEMINI_LIKE)
    assert (request.aspect_ratio, request.resolution) == ("16:9", "4K")
    assert build({"prompt": "p"}, GEMINI_LIKE).aspect_ratio is None, "provider default"


@pytest.mark.parametrize(("param", "value"), [
    ("aspect_ratio", "5:2"), ("aspect_ratio", "1:4"), ("aspect_ratio", "1.85:1"),
    ("size", "5:2"),  # a ratio sent as the size is held to the same list
])
def test_a_ratio_the_model_does_not_offer_is_refused_with_the_offered_ones(param, value) -> None:
    with pytest.raises(GatewayError) as caught:
        build({"prompt": "p", param: value}, GEMINI_LIKE)
    error = caught.value
    assert (error.status, error.param, error.code) == (400, param, "invalid_value")
    assert "'21:9'" in error.message and "'9:16'" in error.message


def test_a_ratio_spelt_otherwise_is_the_offered_one_and_announced() -> None:
    request = build({"prompt": "p", "aspect_ratio": "32:18"}, GEMINI_LIKE)
    assert request.aspect_ratio == "16:9"
    assert request.adjusted == ["aspect_ratio=32:18->aspect_ratio=16:9"]
    request = build({"prompt": "p", "aspect_ratio": "7:3"}, GEMINI_LIKE)   # exactly 21:9
    assert request.adjusted == ["aspect_ratio=7:3->aspect_ratio=21:9"]
    assert build({"prompt": "p", "aspect_ratio": "16:9"}, GEMINI_LIKE).adjusted == []


@pytest.mark.parametrize(("body", "adjusted"), [
    ({"size": "1536x1024"}, ["size=1536x1024->aspect_ratio=3:2,resolution=2K"]),
    ({"size": "1536x1024", "resolution": "1K"}, ["size=1536x1024->aspect_ratio=3:2"]),
    ({"size": "1536x1024", "aspect_ratio": "1:1"}, ["size=1536x1024->resolution=2K"]),
    ({"size": "16:9"}, ["size=16:9->aspect_ratio=16:9"]),
    ({"size": "auto"}, []),
])
def test_every_size_mapped_onto_a_ratio_model_is_announced(body, adjusted) -> None:
    request = build({"prompt": "p", **body}, GEMINI_LIKE)
    assert request.adjusted == adjusted and request.dropped == []


def test_a_size_with_nothing_left_to_decide_is_reported_dropped() -> None:
    request = build({"prompt": "p", "size": "1536x1024", "aspect_ratio": "1:1",
                     "resolution": "1K"}, GEMINI_LIKE)
    assert (request.aspect_ratio, request.resolution) == ("1:1", "1K")
    assert request.dropped == ["size"] and request.adjusted == []


@pytest.mark.parametrize(("body", "param"), [
    ({"aspect_ratio": "wide"}, "aspect_ratio"),
    ({"aspect_ratio": "16:0"}, "aspect_ratio"),
    ({"resolution": "8K"}, "resolution"),
    ({"size": "big"}, "size"),
    ({"aspectRatio": "1:1", "aspect_ratio": "16:9"}, "aspectRatio"),
    ({"thinking_level": "extreme"}, "thinking_level"),
    ({"thinking_level": "medium"}, "thinking_level"),  # Gemini knows it; this model does not
    ({"response_modalities": ["text"]}, "response_modalities"),
    ({"response_modalities": ["audio", "image"]}, "response_modalities"),
])
def test_bad_geometry_and_gemini_values_name_the_parameter(body, param) -> None:
    with pytest.raises(GatewayError) as caught:
        build({"prompt": "p", **body}, GEMINI_LIKE)
    assert (caught.value.status, caught.value.param) == (400, param)


def test_gemini_fields_are_folded_and_kept() -> None:
    request = build({"prompt": "p", "thinking": "HIGH", "responseModalities": ["TEXT", "IMAGE"],
                     "mediaResolution": "Low"}, GEMINI_LIKE)
    assert request.thinking_level == "high"
    assert request.response_modalities == ["text", "image"]
    assert request.media_resolution == "low"


def test_gemini_fields_on_other_models_follow_the_policy() -> None:
    rules = load_catalog().rules_for("openai", "gpt-image-1")
    request = build({"prompt": "p", "thinking_level": "high"}, rules)
    assert request.thinking_level is None and request.dropped == ["thinking_level"]
    with pytest.raises(GatewayError) as caught:
        build({"prompt": "p", "thinking_level": "high"}, rules, drop=False)
    assert caught.value.code == "unsupported_parameter"


@pytest.mark.parametrize(("provider", "model", "ratio", "size"), [
    ("openai", "gpt-image-1", "16:9", "1536x1024"),
    ("openai", "gpt-image-1", "9:16", "1024x1536"),
    ("openai", "gpt-image-1", "1:1", "1024x1024"),
    ("openai", "dall-e-3", "16:9", "1792x1024"),
    ("openai", "gpt-image-2", "16:9", "1360x768"),   # ~1 MP in steps of 16
    ("local", "local", "9:16", "768x1368"),
    # Equally near sizes (dall-e-2 lists three squares): the model's default size.
    ("openai", "dall-e-2", "1:1", "1024x1024"),
    ("openai", "dall-e-2", "16:9", "1024x1024"),
])
def test_aspect_ratio_on_pixel_sized_models_picks_a_size(provider, model, ratio, size) -> None:
    rules = load_catalog().rules_for(provider, model)
    request = build({"prompt": "p", "aspectRatio": ratio}, rules)
    assert request.size == size
    assert request.adjusted == [f"aspect_ratio={ratio}->size={size}"]


def test_equally_near_sizes_go_to_the_default_then_the_largest() -> None:
    squares = ModelRules(sizes=["256x256", "512x512", "1024x1024"])
    assert build({"prompt": "p", "aspect_ratio": "1:1"}, squares).size == "1024x1024"
    with_default = squares.model_copy(update={"default_size": "512x512"})
    assert build({"prompt": "p", "aspect_ratio": "1:1"}, with_default).size == "512x512"


def test_a_ratio_no_size_of_the_range_has_is_refused_naming_it() -> None:
    rules = load_catalog().rules_for("openai", "gpt-image-2")   # ratios within 1:3..3:1
    with pytest.raises(GatewayError) as caught:
        build({"prompt": "p", "aspect_ratio": "8:1"}, rules)
    assert (caught.value.status, caught.value.param) == (400, "aspect_ratio")


def test_size_wins_over_aspect_ratio_and_the_ratio_is_reported() -> None:
    rules = load_catalog().rules_for("openai", "gpt-image-1")
    request = build({"prompt": "p", "size": "1024x1024", "aspect_ratio": "16:9"}, rules)
    assert request.size == "1024x1024" and request.dropped == ["aspect_ratio"]
