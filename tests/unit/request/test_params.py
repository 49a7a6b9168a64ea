"""Parameter parsing and the per-model rules, without a server."""

from __future__ import annotations

import pytest

from proxy.core.errors import GatewayError
from proxy.models.catalog import load_catalog
from proxy.request.bind import apply_rules
from proxy.request.parse import parse_params


def rules(provider: str, model: str):
    return load_catalog().rules_for(provider, model)


def build(body: dict, provider: str = "openai", upstream: str = "gpt-image-1", drop: bool = False):
    known, unknown = parse_params(body)
    return apply_rules(known, unknown, "m", rules(provider, upstream), drop_unsupported=drop)


def error_of(body: dict, **kwargs) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        build(body, **kwargs)
    return caught.value


def test_nulls_mean_absent() -> None:
    request = build({"prompt": "p", "n": None, "size": None, "stream": None, "user": None})
    assert request.n == 1 and request.size is None and request.stream is False


@pytest.mark.parametrize(("body", "param", "code"), [
    ({"prompt": "p", "n": "2"}, "n", "invalid_type"),
    ({"prompt": "p", "n": True}, "n", "invalid_type"),
    ({"prompt": "p", "n": 0}, "n", "integer_below_min_value"),
    ({"prompt": "p", "n": 11}, "n", "integer_above_max_value"),
    ({"prompt": "p", "stream": "yes"}, "stream", "invalid_type"),
    ({"prompt": 5}, "prompt", "invalid_type"),
    ({}, "prompt", "missing_required_parameter"),
    ({"prompt": "   "}, "prompt", "empty_string"),
    ({"prompt": "p", "size": "999x999"}, "size", "invalid_value"),
    ({"prompt": "p", "quality": "ultra"}, "quality", "invalid_value"),
    ({"prompt": "p", "background": "green"}, "background", "invalid_value"),
    ({"prompt": "p", "output_compression": 101}, "output_compression", "integer_above_max_value"),
    ({"prompt": "p", "partial_images": 4}, "partial_images", "integer_above_max_value"),
    ({"prompt": "x" * 32001}, "prompt", "string_above_max_length"),
    ({"prompt": "p", "frobnicate": 1}, "frobnicate", "unknown_parameter"),
    ({"prompt": "p", "style": "vivid"}, "style", "unsupported_parameter"),
    ({"prompt": "p", "stream": True, "n": 2}, "n", "invalid_value"),
    ({"prompt": "p", "background": "transparent", "output_format": "jpeg"}, "background",
     "invalid_value"),
])
def test_bad_input_names_the_parameter(body: dict, param: str, code: str) -> None:
    error = error_of(body)
    assert (error.status, error.param, error.code) == (400, param, code)


def test_an_integral_json_number_is_an_integer_as_json_schema_says() -> None:
    # 2.0 is an integer to JSON Schema (the OpenAPI document's types): taken as 2.
    request = build({"prompt": "p", "n": 2.0, "output_compression": 60.0})
    assert request.n == 2 and isinstance(request.n, int)
    assert request.output_compression == 60 and isinstance(request.output_compression, int)
    for body in ({"prompt": "p", "n": 2.5}, {"prompt": "p", "n": float("inf")}):
        error = error_of(body)
        assert (error.status, error.param, error.code) == (400, "n", "invalid_type")


def test_a_value_outside_a_models_set_names_the_model() -> None:
    error = error_of({"prompt": "p", "quality": "standard"})
    assert error.param == "quality" and "for model '" in error.message


def test_per_model_limits() -> None:
    assert error_of({"prompt": "x" * 4001}, upstream="dall-e-3").param == "prompt"
    assert error_of({"prompt": "p", "n": 2}, upstream="dall-e-3").param == "n"
    assert build({"prompt": "p", "style": "natural"}, upstream="dall-e-3").style == "natural"


@pytest.mark.parametrize(("size", "ok"), [
    ("1536x864", True), ("3840x2160", True), ("1000x1000", False),  # not multiples of 16
    ("3840x1024", False),  # ratio above 3:1
    ("512x512", False),  # below the pixel minimum
    ("auto", True), ("big", False),
])
def test_gpt_image_2_arbitrary_sizes(size: str, ok: bool) -> None:
    if ok:
        assert build({"prompt": "p", "size": size}, upstream="gpt-image-2").size == size
    else:
        assert error_of({"prompt": "p", "size": size}, upstream="gpt-image-2").param == "size"


def test_drop_policy_drops_and_reports() -> None:
    request = build({"prompt": "p", "style": "vivid", "mystery": 1}, drop=True)
    assert request.style is None
    assert sorted(request.dropped) == ["mystery", "style"]


def test_cosmetic_parameters_are_dropped_even_when_strict() -> None:
    request = build({"prompt": "p", "moderation": "low"}, upstream="dall-e-3")
    assert request.moderation is None and request.dropped == ["moderation"]


def test_response_format_b64_is_accepted_but_not_forwarded_to_gpt_image() -> None:
    request = build({"prompt": "p", "response_format": "b64_json"})
    assert "response_format" not in request.upstream_params()


def test_url_response_format_is_hosted_by_the_gateway() -> None:
    request = build({"prompt": "p", "response_format": "url"})
    assert request.host_images and "response_format" not in request.upstream_params()
    dalle = build({"prompt": "p"}, upstream="dall-e-3")
    assert dalle.host_images, "DALL-E's own default is URLs"
    assert dalle.response_format == "b64_json", "but the upstream is asked for base64"
    assert not build({"prompt": "p", "response_format": "b64_json"},
                     upstream="dall-e-3").host_images
    assert error_of({"prompt": "p", "response_format": "url", "stream": True}).param == \
        "response_format"


def test_streaming_forces_base64_where_the_upstream_defaults_to_urls() -> None:
    request = build({"prompt": "p", "stream": True}, upstream="dall-e-3")
    assert request.response_format == "b64_json"


def test_unknown_upstream_model_is_passed_through_unjudged() -> None:
    request = build({"prompt": "p", "size": "7x9", "guidance": 3.5}, upstream="flux-dev")
    assert request.size == "7x9"
    assert request.upstream_params()["guidance"] == 3.5


def test_multipart_strings_are_converted() -> None:
    known, _ = parse_params({"prompt": "p", "n": "2", "stream": "true"}, from_form=True)
    assert known["n"] == 2 and known["stream"] is True
