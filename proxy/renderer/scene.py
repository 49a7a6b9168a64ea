"""Reading a prompt for the local painter, and planning the picture it asks for.

``plan_scene`` reads the prompt's colour, subject and time-of-day words into a Scene: the
backdrop's colours, a palette, and the primitive shapes the motif planners (``motifs.py``) emit,
back to front. Every choice is seeded from (prompt, seed), so the same request always plans the
same Scene; ``painter.py`` then renders it without making any choice of its own.
"""

from __future__ import annotations

import colorsys
import hashlib
import random
import re
from dataclasses import dataclass

from proxy.renderer.motifs import (
    PLANNERS,
    RGB,
    Ctx,
    Element,
    abstract,
    darker,
    lighter,
    mix,
)

MAX_SIDE = 8192

COLOURS: dict[str, RGB] = {
    "red": (214, 40, 46), "crimson": (190, 20, 50), "scarlet": (230, 36, 30),
    "maroon": (120, 24, 36), "orange": (242, 134, 36), "amber": (245, 170, 30),
    "yellow": (246, 212, 52), "gold": (214, 172, 50), "golden": (222, 176, 60),
    "green": (64, 170, 72), "emerald": (20, 150, 100), "lime": (160, 220, 60),
    "olive": (120, 130, 50), "blue": (40, 100, 220), "azure": (60, 150, 240),
    "navy": (20, 36, 110), "teal": (20, 128, 128), "turquoise": (50, 200, 190),
    "cyan": (40, 200, 225), "aqua": (70, 220, 220), "purple": (128, 60, 190),
    "violet": (140, 80, 220), "lavender": (180, 160, 230), "indigo": (70, 50, 150),
    "pink": (240, 128, 178), "magenta": (214, 36, 162), "fuchsia": (230, 50, 170),
    "white": (244, 244, 240), "cream": (245, 236, 210), "black": (26, 26, 30),
    "gray": (128, 130, 136), "grey": (128, 130, 136), "silver": (192, 196, 206),
    "brown": (128, 82, 48), "beige": (220, 200, 165),
}
SHADES = {"dark": -0.35, "deep": -0.25, "light": 0.4, "pale": 0.55, "pastel": 0.5}
# word -> (motif, variant); the variant lets one planner draw hills as well as mountains.
SUBJECTS: dict[str, tuple[str, str]] = {
    **dict.fromkeys(("star", "starry", "galaxy", "space"), ("stars", "stars")),
    **dict.fromkeys(("sun", "sunny", "sunshine"), ("sun", "sun")),
    "moon": ("moon", "moon"), "planet": ("planet", "planet"), "earth": ("planet", "planet"),
    "saturn": ("planet", "saturn"), "cloud": ("cloud", "cloud"), "cloudy": ("cloud", "cloud"),
    **dict.fromkeys(("mountain", "peak", "alps", "volcano"), ("mountain", "mountain")),
    **dict.fromkeys(("hill", "valley", "countryside"), ("mountain", "hill")),
    **dict.fromkeys(("sea", "ocean", "lake", "water", "river", "wave", "beach"), ("sea", "sea")),
    **dict.fromkeys(("table", "desk"), ("ground", "table")),
    **dict.fromkeys(("grass", "field", "meadow", "lawn", "park"), ("ground", "grass")),
    **dict.fromkeys(("sand", "desert", "dune"), ("ground", "sand")),
    **dict.fromkeys(("snow", "snowy", "winter"), ("ground", "snow")),
    **dict.fromkeys(("city", "town", "building", "skyline", "street"), ("city", "city")),
    **dict.fromkeys(("tower", "skyscraper"), ("city", "tower")),
    **dict.fromkeys(("forest", "woods", "jungle"), ("forest", "forest")),
    "tree": ("tree", "tree"), "oak": ("tree", "tree"), "pine": ("tree", "pine"),
    **dict.fromkeys(("flower", "tulip", "daisy"), ("flower", "flower")),
    "rose": ("flower", "rose"), "garden": ("flower", "garden"),
    **dict.fromkeys(("cat", "kitten", "kitty"), ("cat", "cat")),
    **dict.fromkeys(("dog", "puppy", "retriever"), ("dog", "dog")),
    "apple": ("apple", "apple"), "ball": ("ball", "ball"),
    **dict.fromkeys(("orb", "sphere", "bubble"), ("ball", "orb")),
    "sky": ("sky", "sky"),  # not drawn: a colour given to the sky tints the backdrop
}
EXTRA = {"beach": ("ground", "sand")}  # words that bring a second motif along
TIMES = {
    **dict.fromkeys(("night", "midnight", "nighttime", "starry"), "night"),
    **dict.fromkeys(("sunset", "dusk", "evening", "twilight"), "sunset"),
    **dict.fromkeys(("dawn", "sunrise", "morning"), "dawn"),
    **dict.fromkeys(("day", "noon", "daylight", "sunny"), "day"),
}
NUMBERS = {w: i + 1 for i, w in enumerate(("one", "two", "three", "four", "five", "six", "seven"))}
SKIES: dict[str, tuple[RGB, RGB, RGB]] = {  # top, middle, bottom of the backdrop
    "day": ((88, 145, 220), (150, 196, 240), (222, 234, 244)),
    "night": ((6, 8, 30), (18, 24, 66), (44, 52, 108)),
    "sunset": ((58, 38, 104), (226, 106, 84), (255, 196, 112)),
    "dawn": ((118, 148, 208), (238, 170, 172), (255, 222, 186)),
}
STILL = {"apple", "ball", "cat", "dog"}  # subjects that make a still life unless told otherwise
SINGLE = {"stars", "sun", "moon", "mountain", "sea", "ground", "city", "forest", "sky"}
Mention = tuple[str, "RGB | None", int]  # (variant, colour, count); count 0 means "several"


@dataclass(frozen=True)
class Scene:
    """Everything render_steps needs, decided up front: rendering is a pure function of it."""

    width: int
    height: int
    sky: tuple[RGB, RGB, RGB]  # top, middle and bottom colours of the backdrop gradient
    palette: tuple[RGB, ...]  # the prompt's colour words, then colours hashed from the prompt
    elements: tuple[Element, ...]  # back to front, the order they are painted in
    motifs: tuple[str, ...]  # what the prompt was understood to show, for logs and tests
    time: str  # day, night, sunset, dawn, studio or abstract
    noise_seed: int


def _digest(*parts: str) -> int:
    # sha256, not hash(): Python salts str hashes per process, and pixels must be reproducible.
    return int.from_bytes(hashlib.sha256("\x1f".join(parts).encode()).digest()[:8], "big")


def _note(motifs: dict[str, list[Mention]], motif: str, mention: Mention) -> None:
    """Record a mention. A plain word refines the previous mention instead of adding a thing
    ("pine tree", "flower garden"); "two blue balls and a yellow orb" keeps both."""
    seen = motifs.setdefault(motif, [])
    variant, colour, n = mention
    if seen and (motif in SINGLE or (colour is None and variant == motif)
                 or (seen[-1][1] is None and seen[-1][0] == motif)):
        old_variant, old_colour, old_n = seen[-1]
        seen[-1] = (old_variant if variant == motif else variant, old_colour or colour,
                    old_n if old_n != 1 else n)
    else:
        seen.append(mention)


def _read(prompt: str) -> tuple[dict[str, list[Mention]], list[RGB], list[RGB], str | None]:
    """Mentioned motifs, all colours, colours not attached to a subject, and the time of day."""
    words = re.findall(r"[a-z]+|\d+", prompt.lower())
    motifs: dict[str, list[Mention]] = {}
    colours: list[RGB] = []
    free: list[RGB] = []
    pending: tuple[int, RGB] | None = None  # a colour word waiting for its noun
    count_at, count, time = -9, 1, None
    for i, word in enumerate(words):
        if word in COLOURS:
            c = COLOURS[word]
            shade = SHADES.get(words[i - 1], 0.0) if i else 0.0
            c = lighter(c, shade) if shade > 0 else darker(c, -shade)
            colours.append(c)
            if pending:
                free.append(pending[1])
            pending = (i, c)
            continue
        if word in NUMBERS or word.isdigit():
            count_at, count = i, NUMBERS.get(word) or max(1, min(int(word[:3]), 7))
        time = time or TIMES.get(word)
        plural = word not in SUBJECTS and word.endswith("s") and word[:-1] in SUBJECTS
        found = [SUBJECTS.get(word[:-1] if plural else word), EXTRA.get(word)]
        for motif, variant in [f for f in found if f]:
            colour = pending[1] if pending and i - pending[0] <= 3 else None
            _note(motifs, motif, (variant, colour, count if i - count_at <= 3 else int(not plural)))
            if colour and pending:
                pending = None
    if pending:
        free.append(pending[1])
    return motifs, colours, free, time


def _hashed_palette(prompt: str, seed: int) -> tuple[RGB, ...]:
    # The hue comes from the prompt alone, so every seed of a prompt shares its colours; the seed
    # only nudges them. That is what makes two seeds "different but related".
    hue = _digest(prompt.lower().strip()) % 3600 / 3600
    hue += (_digest(prompt, str(seed), "hue") % 200 - 100) / 3600
    out = []
    for dh, light, sat in ((0, 0.55, 0.65), (0.08, 0.7, 0.55), (0.5, 0.5, 0.6),
                           (0.58, 0.35, 0.5), (0.25, 0.8, 0.4)):
        r, g, b = colorsys.hls_to_rgb((hue + dh) % 1.0, light, sat)
        out.append((round(r * 255), round(g * 255), round(b * 255)))
    return tuple(out)


def _sky(time: str, palette: tuple[RGB, ...], tint: RGB | None, strong: bool,
         ) -> tuple[RGB, RGB, RGB]:
    """The backdrop's colours: a time of day's sky (tinted by a colour word), a studio wall, or
    for abstract pictures a gradient from the palette."""
    if time in SKIES:
        top, mid, low = SKIES[time]
        t = (0.5 if strong else 0.2) if tint else 0.0
        return mix(top, tint or top, t), mix(mid, tint or mid, t), mix(low, tint or low, t)
    c = tint or palette[0]
    if time == "studio":  # a soft wall in the subject's colour, like a product shot
        wall = mix((232, 224, 210), c, 0.35)
        return darker(wall, 0.25), wall, lighter(wall, 0.25)
    if tint:  # abstract, told its colour
        return lighter(c, 0.25), lighter(c, 0.55), lighter(c, 0.8)
    return darker(palette[0], 0.5), mix(palette[0], palette[1], 0.5), lighter(palette[2], 0.3)


def plan_scene(prompt: str, seed: int, width: int, height: int) -> Scene:
    """Decide what to draw. Deterministic for its arguments."""
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise ValueError(f"size {width}x{height} is outside 1..{MAX_SIDE}")
    rng = random.Random(_digest(prompt, str(seed)))
    motifs, colours, free, time = _read(prompt)
    palette = (*colours, *_hashed_palette(prompt, seed))[:8]
    sky_colour = motifs.pop("sky", [("", None, 0)])[0][1]
    kinds = set(motifs)
    if time is None:
        if kinds & {"stars", "moon", "planet"}:
            time = "night"
        elif not kinds:
            time = "abstract"
        elif kinds <= STILL | {"ground"} and motifs.get("ground", [("table",)])[0][0] == "table":
            time = "studio"
        else:
            time = "day"
    # Fill in what the prompt implies: night has stars and a moon, a sunset has a sun, things
    # stand on some ground, and a lone sky needs a landscape under it.
    if time == "night":
        motifs.setdefault("stars", [("stars", None, 1)])
        if not kinds & {"moon", "planet", "sun"}:
            motifs["moon"] = [("moon", None, 1)]
    if time in ("sunset", "dawn") and not kinds & {"sun", "moon"}:
        motifs["sun"] = [("sun", None, 1)]
    if time == "day" and not kinds & {"sun", "cloud", "city"} and rng.random() < 0.6:
        motifs["cloud"] = [("cloud", None, 0)]
    if not kinds & {"ground", "sea"}:
        if kinds & {"tree", "forest", "flower"} or (kinds & STILL and time != "studio"):
            motifs["ground"] = [("grass", None, 1)]
        elif kinds & STILL:
            motifs["ground"] = [("floor", None, 1)]
        elif "mountain" in kinds:  # a valley floor: a lake or a meadow
            lake = rng.random() < 0.5
            motifs["sea" if lake else "ground"] = [("sea" if lake else "grass", None, 1)]
        elif time != "abstract" and "city" not in kinds and (
                not kinds or kinds - {"stars", "planet"}):
            motifs["mountain"] = [("hill", None, 1)]
    tint = sky_colour or (free[0] if free else None)
    if time == "studio" and not tint and colours:  # the wall takes the subject's colour
        tint = colours[0]
    sky = _sky(time, palette, tint, strong=bool(sky_colour))
    horizon = height * rng.uniform(0.58, 0.7)
    grounded = bool(motifs.keys() & {"ground", "sea"})
    ctx = Ctx(width, height, rng, time, sky, horizon,
              horizon + height * 0.02 if grounded else float(height), palette, floor=horizon)
    if "sea" in motifs and "ground" in motifs:
        ctx.floor = horizon + (height - horizon) * 0.45
    ctx.skyline = horizon - height * 0.3 if motifs.keys() & {"mountain", "city"} else horizon
    for motif, planner in PLANNERS.items():
        for variant, colour, count in motifs.get(motif, ()):
            planner(ctx, variant, colour, count)
    if not motifs:
        abstract(ctx)
    drawn = tuple(m for m in PLANNERS if m in motifs)
    return Scene(width, height, sky, palette, tuple(ctx.out), drawn, time,
                 _digest(prompt, str(seed), "noise"))


def quality_steps(quality: str | None) -> int:
    """Steps for a quality: more quality, more (real) work. Unknown values count as medium."""
    return {"low": 6, "medium": 12, "standard": 12, "high": 24, "hd": 24}.get(
        (quality or "auto").lower(), 12)
