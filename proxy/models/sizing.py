"""Size and aspect ratio, both ways.

Some models take pixels (``1536x1024``), others an aspect ratio plus a resolution tier
(``16:9`` at ``2K``). Clients send either: OpenAI's ``size``, or ``aspectRatio`` as several
published APIs do. This maps what was sent onto what the model takes: a size onto the nearest
ratio (on a log scale, so 2:1 and 1:2 are equally far from 1:1) and the tier that covers its long
edge; a ratio onto the nearest listed size, or a size of about a megapixel for models that take
any size.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from proxy.core.errors import invalid_param
from proxy.models.rules import SIZE_PATTERN, ModelRules

RATIO_PATTERN = re.compile(r"^(\d{1,6}(?:\.\d{1,6})?):(\d{1,6}(?:\.\d{1,6})?)\Z")
# Long edge of each tier: a request is given the smallest tier that covers its long edge.
TIER_EDGES = {"512": 512, "0.5K": 512, "1K": 1024, "2K": 2048, "4K": 4096}


@dataclass(frozen=True, slots=True)
class Geometry:
    size: str | None = None          # WxH or "auto", for models that take pixels
    aspect_ratio: str | None = None  # as the model spells it, for models that take ratios
    resolution: str | None = None    # the tier, as the model spells it


def ratio_value(text: str) -> float | None:
    match = RATIO_PATTERN.match(text.strip())
    if not match or float(match.group(2)) == 0 or float(match.group(1)) == 0:
        return None
    return float(match.group(1)) / float(match.group(2))


def nearest(target: float, candidates: dict[str, float]) -> str:
    return min(candidates, key=lambda name: abs(math.log(candidates[name]) - math.log(target)))


def tier_for(long_edge: int, tiers: list[str]) -> str:
    known = sorted((TIER_EDGES[t.upper()], t) for t in tiers if t.upper() in TIER_EDGES)
    for edge, tier in known:
        if long_edge <= edge:
            return tier
    return known[-1][1]


def _pixels(size: str) -> tuple[int, int] | None:
    match = SIZE_PATTERN.match(size)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _ratio_param(aspect_ratio: str) -> float:
    value = ratio_value(aspect_ratio)
    if value is None:
        raise invalid_param("aspect_ratio", f"Invalid aspect ratio '{aspect_ratio}': expected "
                            "WIDTH:HEIGHT, e.g. '16:9'.")
    return value


def _tier_param(resolution: str, rules: ModelRules) -> str:
    for tier in rules.resolutions or ():
        if tier.upper() == resolution.upper():
            return tier
    listed = ", ".join(f"'{t}'" for t in rules.resolutions or ())
    raise invalid_param("resolution",
                        f"Invalid value: '{resolution}'. Supported values are: {listed}.")


def for_ratio_model(size: str | None, aspect_ratio: str | None, resolution: str | None,
                    rules: ModelRules) -> Geometry:
    """A model that takes ``aspect_ratios`` (and maybe ``resolutions``)."""
    assert rules.aspect_ratios
    ratios = {r: v for r in rules.aspect_ratios if (v := ratio_value(r)) is not None}
    pixels = _pixels(size) if size else None
    if size and pixels is None and ratio_value(size) is not None:
        aspect_ratio, size = size, None  # "size": "16:9", as some clients send it
    if size and size != "auto" and pixels is None:
        raise invalid_param("size", f"Invalid size '{size}': expected 'auto', WIDTHxHEIGHT "
                            "or WIDTH:HEIGHT.")
    ratio = None
    if aspect_ratio and aspect_ratio != "auto":
        ratio = nearest(_ratio_param(aspect_ratio), ratios)
    elif pixels:
        ratio = nearest(pixels[0] / pixels[1], ratios)
    tier = None
    if resolution is not None:
        tier = _tier_param(resolution, rules)
    elif pixels and rules.resolutions:
        tier = tier_for(max(pixels), rules.resolutions)
    return Geometry(aspect_ratio=ratio, resolution=tier)


def size_for_ratio(aspect_ratio: str, rules: ModelRules) -> str | None:
    """The size a pixel-sized model should use for ``aspect_ratio``: the nearest listed size,
    or about a megapixel within its size range."""
    target = _ratio_param(aspect_ratio)
    listed = {s: w / h for s in rules.sizes or () if (p := _pixels(s)) for w, h in [p]}
    if listed and rules.size_range is None:
        return nearest(target, listed)
    if rules.size_range is not None:
        step = rules.size_range.multiple_of
        width = round(math.sqrt(1024 * 1024 * target) / step) * step
        height = round(width / target / step) * step
        if rules.size_range.problem(width, height) is None:
            return f"{width}x{height}"
        if listed:
            return nearest(target, listed)
    return None
