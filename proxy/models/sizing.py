"""Size and aspect ratio, both ways.

Some models take pixels (``1536x1024``), others an aspect ratio plus a resolution tier
(``16:9`` at ``2K``). Clients send either: OpenAI's ``size``, or ``aspectRatio`` as several
published APIs do. This maps what was sent onto what the model takes.

The rule, for every parameter: a value in the parameter's own spelling that the model does not
offer is refused (400 naming it, with the values it offers); a *conversion from one spelling to
the other* is an adjustment, and every adjustment is announced (``x-adjusted-params``, see
:mod:`proxy.request.adjusted`). The conversions: a size onto the nearest ratio the model offers
(on a log scale, so 2:1 and 1:2 are equally far from 1:1) and the tier that covers its long
edge; a ratio onto the nearest listed size (ties go to the model's default size, then the
largest), or a size of about a megapixel for models that take any size.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from urllib.parse import quote

from proxy.core.errors import bad_value, invalid_param
from proxy.models.rules import SIZE_PATTERN, ModelRules

RATIO_PATTERN = re.compile(r"^(\d{1,6}(?:\.\d{1,6})?):(\d{1,6}(?:\.\d{1,6})?)\Z")
# Long edge of each tier: a request is given the smallest tier that covers its long edge.
TIER_EDGES = {"512": 512, "0.5K": 512, "1K": 1024, "2K": 2048, "4K": 4096}
# Two ratios this close (relatively) are the same ratio spelt two ways ("16:9", "32:18").
_SAME = 1e-6


@dataclass(frozen=True, slots=True)
class Adjustment:
    """One parameter as sent, and what the gateway sent upstream instead (one or more
    parameters): ``size=1536x1024 -> aspect_ratio=3:2, resolution=2K``."""

    sent: tuple[str, str]
    became: tuple[tuple[str, str], ...]

    def __str__(self) -> str:
        """``name=value->name=value[,name=value]``, values percent-encoded (everything but
        letters, digits and ``-_.:``), so ``,``, ``;``, ``=`` and ``->`` only ever separate."""
        def pair(name: str, value: str) -> str:
            return f"{name}={quote(value, safe='-_.:')}"
        return f"{pair(*self.sent)}->{','.join(pair(*p) for p in self.became)}"


@dataclass(frozen=True, slots=True)
class Geometry:
    size: str | None = None          # WxH or "auto", for models that take pixels
    aspect_ratio: str | None = None  # as the model spells it, for models that take ratios
    resolution: str | None = None    # the tier, as the model spells it
    adjusted: tuple[Adjustment, ...] = field(default=())
    # A parameter that was sent but had nothing left to decide (reported as dropped).
    unused: str | None = None


def ratio_value(text: str) -> float | None:
    match = RATIO_PATTERN.match(text.strip())
    if not match or float(match.group(2)) == 0 or float(match.group(1)) == 0:
        return None
    return float(match.group(1)) / float(match.group(2))


def _distance(a: float, b: float) -> float:
    return abs(math.log(a) - math.log(b))


def nearest(target: float, candidates: dict[str, float]) -> str:
    return min(candidates, key=lambda name: _distance(candidates[name], target))


def tier_for(long_edge: int, tiers: list[str]) -> str:
    known = sorted((TIER_EDGES[t.upper()], t) for t in tiers if t.upper() in TIER_EDGES)
    for edge, tier in known:
        if long_edge <= edge:
            return tier
    return known[-1][1]


def _pixels(size: str) -> tuple[int, int] | None:
    match = SIZE_PATTERN.match(size)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _ratio_param(aspect_ratio: str, param: str = "aspect_ratio") -> float:
    value = ratio_value(aspect_ratio)
    if value is None:
        raise invalid_param(param, f"Invalid aspect ratio '{aspect_ratio}': expected "
                            "WIDTH:HEIGHT, e.g. '16:9'.")
    return value


def _tier_param(resolution: str, rules: ModelRules) -> str:
    for tier in rules.resolutions or ():
        if tier.upper() == resolution.upper():
            return tier
    raise bad_value("resolution", resolution, rules.resolutions or [])


def offered_ratio(text: str, rules: ModelRules, param: str = "aspect_ratio") -> str:
    """The model's own spelling of the ratio ``text`` names; a 400 naming ``param`` (with the
    ratios offered) when the model does not offer it. Never the nearest: that would be a
    different picture than the one asked for."""
    value = _ratio_param(text, param)
    for listed in rules.aspect_ratios or ():
        offered = ratio_value(listed)
        if offered is not None and abs(offered - value) <= _SAME * value:
            return listed
    raise bad_value(param, text, rules.aspect_ratios or [])


def for_ratio_model(size: str | None, aspect_ratio: str | None, resolution: str | None,
                    rules: ModelRules) -> Geometry:
    """A model that takes ``aspect_ratios`` (and maybe ``resolutions``)."""
    assert rules.aspect_ratios
    ratios = {r: v for r in rules.aspect_ratios if (v := ratio_value(r)) is not None}
    pixels = _pixels(size) if size else None
    adjusted: list[Adjustment] = []
    ratio = tier = unused = None
    if resolution is not None:
        tier = _tier_param(resolution, rules)
    if aspect_ratio and aspect_ratio != "auto":
        ratio = offered_ratio(aspect_ratio, rules)
        if ratio != aspect_ratio:
            adjusted.append(Adjustment(("aspect_ratio", aspect_ratio),
                                       (("aspect_ratio", ratio),)))
    if size and pixels is None and size != "auto":
        if ratio_value(size) is None:
            raise invalid_param("size", f"Invalid size '{size}': expected 'auto', "
                                "WIDTHxHEIGHT or WIDTH:HEIGHT.")
        if ratio is not None:  # a ratio twice: the aspect_ratio parameter decides
            unused = "size"
        else:  # "size": "16:9", as some clients send it
            ratio = offered_ratio(size, rules, "size")
            adjusted.append(Adjustment(("size", size), (("aspect_ratio", ratio),)))
    elif pixels:
        became: list[tuple[str, str]] = []
        if ratio is None:
            ratio = nearest(pixels[0] / pixels[1], ratios)
            became.append(("aspect_ratio", ratio))
        if tier is None and rules.resolutions:
            tier = tier_for(max(pixels), rules.resolutions)
            became.append(("resolution", tier))
        if became:
            adjusted.append(Adjustment(("size", size or ""), tuple(became)))
        else:
            unused = "size"
    return Geometry(aspect_ratio=ratio, resolution=tier, adjusted=tuple(adjusted),
                    unused=unused)


def takes_ratio(rules: ModelRules) -> bool:
    """Whether a pixel-sized model can turn an aspect ratio into a size."""
    listed = any(_pixels(s) for s in rules.sizes or ())
    return listed or rules.size_range is not None


def _nearest_listed(target: float, listed: list[str], rules: ModelRules) -> str:
    """The listed size nearest ``target``; of equally near ones (dall-e-2's three squares),
    the model's default size, else the largest."""
    def rank(size: str) -> tuple[float, bool, int]:
        width, height = _pixels(size) or (1, 1)
        return (round(_distance(width / height, target), 9), size != rules.default_size,
                -width * height)
    return min(listed, key=rank)


def size_for_ratio(aspect_ratio: str, rules: ModelRules) -> str:
    """The size a pixel-sized model uses for ``aspect_ratio``: the nearest listed size, or
    about a megapixel within its size range. A 400 naming ``aspect_ratio`` when neither fits
    (a ratio outside the range's limits)."""
    target = _ratio_param(aspect_ratio)
    listed = [s for s in rules.sizes or () if _pixels(s)]
    if listed and rules.size_range is None:
        return _nearest_listed(target, listed, rules)
    if rules.size_range is not None:
        step = rules.size_range.multiple_of
        width = max(step, round(math.sqrt(1024 * 1024 * target) / step) * step)
        height = max(step, round(width / target / step) * step)
        problem = rules.size_range.problem(width, height)
        if problem is None:
            return f"{width}x{height}"
        if listed:
            return _nearest_listed(target, listed, rules)
        raise invalid_param("aspect_ratio", f"Invalid aspect ratio '{aspect_ratio}': no size "
                            f"of this model has it ({problem}).")
    raise invalid_param("aspect_ratio", "This model takes no size, so no aspect ratio.")
