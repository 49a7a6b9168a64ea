"""The local provider's painter: a prompt becomes a small procedural picture, painted in steps.

No model and no network. ``plan_scene`` reads the prompt's colour, subject and time-of-day words
into a Scene of primitive shapes (the motifs live in ``motifs.py``); ``render_steps`` paints it
the way a diffusion model previews its work: coloured noise over a blurry low-resolution guess
at first, the crisp picture at the last step. Every choice is seeded from (prompt, seed), so the
same request gives the same pixels. Pure synchronous Pillow: the provider runs it in a thread.
"""

from __future__ import annotations

import colorsys
import hashlib
import math
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageOps

from proxy.providers.local.motifs import (
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


# --- rendering -------------------------------------------------------------------------------


def _gradient(size: tuple[int, int], stops: tuple[RGB, ...]) -> Image.Image:
    """A vertical gradient through evenly spaced colour stops."""
    strip = Image.new("RGB", (1, 256))
    n = len(stops) - 1
    for y in range(256):
        pos = y / 255 * n
        i = min(int(pos), n - 1)
        strip.putpixel((0, y), mix(stops[i], stops[i + 1], pos - i))
    return strip.resize(size, Image.Resampling.BILINEAR)


def _ibox(el: Element, scale: float) -> tuple[int, int, int, int]:
    (x0, y0), (x1, y1) = el.pts[0], el.pts[1]
    return (math.floor(x0 * scale), math.floor(y0 * scale),
            math.ceil(x1 * scale), math.ceil(y1 * scale))


def _glow(canvas: Image.Image, el: Element, scale: float) -> None:
    """A soft disc of light (or shadow): blurred on a small mask, since it is blurry anyway."""
    x0, y0, x1, y1 = _ibox(el, scale)
    alpha, spread = el.extra
    pad = int(max(x1 - x0, y1 - y0) * spread)
    bx0, by0 = max(0, x0 - pad), max(0, y0 - pad)
    bx1, by1 = min(canvas.width, x1 + pad), min(canvas.height, y1 + pad)
    if bx1 - bx0 < 1 or by1 - by0 < 1:
        return
    k = max(1.0, max(bx1 - bx0, by1 - by0) / 128)
    small = Image.new("L", (max(1, round((bx1 - bx0) / k)), max(1, round((by1 - by0) / k))), 0)
    ImageDraw.Draw(small).ellipse(((x0 - bx0) / k, (y0 - by0) / k, (x1 - bx0) / k,
                                   (y1 - by0) / k), fill=round(255 * alpha))
    small = small.filter(ImageFilter.GaussianBlur(pad / k / 2))
    canvas.paste(el.color, (bx0, by0), small.resize((bx1 - bx0, by1 - by0),
                                                    Image.Resampling.BILINEAR))


def _sphere(canvas: Image.Image, el: Element, scale: float) -> None:
    """A ball lit from the upper left: a radial gradient off-centre, coloured highlight→shade."""
    x0, y0, x1, y1 = _ibox(el, scale)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return
    # radial_gradient is 0 at (128, 128); this crop puts that 20% in from the top-left corner.
    light = Image.radial_gradient("L").crop((102, 102, 230, 230))
    shaded = ImageOps.colorize(light, lighter(el.color, 0.6), darker(el.color, 0.55), el.color,
                               blackpoint=5, whitepoint=170, midpoint=75)
    mask = Image.new("L", (x1 - x0, y1 - y0), 0)
    ImageDraw.Draw(mask).ellipse((0, 0, x1 - x0 - 1, y1 - y0 - 1), fill=255)
    canvas.paste(shaded.resize(mask.size, Image.Resampling.BILINEAR), (x0, y0), mask)


def _crescent(canvas: Image.Image, el: Element, scale: float) -> None:
    x0, y0, x1, y1 = _ibox(el, scale)
    w, h = x1 - x0, y1 - y0
    if w < 2 or h < 2:
        return
    mask = Image.new("L", (w, h), 0)
    pen = ImageDraw.Draw(mask)
    pen.ellipse((0, 0, w - 1, h - 1), fill=255)
    dx, dy = w * el.extra[0], -h * el.extra[0] * 0.3
    pen.ellipse((dx, dy, w - 1 + dx, h - 1 + dy), fill=0)
    canvas.paste(el.color, (x0, y0), mask)


def _draw(canvas: Image.Image, pen: ImageDraw.ImageDraw, el: Element, scale: float,
          veil: float = 1.0) -> None:
    """Draw one element at ``scale`` pixels per scene pixel. ``veil`` < 1 makes the full-width
    ground and water bands translucent, so an edit's base shows through them too."""
    pts = [(x * scale, y * scale) for x, y in el.pts]
    kind, fill = el.kind, el.color
    if kind == "rect":
        pen.rectangle(pts[:2], fill=fill)
    elif kind == "rrect":
        pen.rounded_rectangle(pts[:2], radius=el.extra[0] * scale, fill=fill)
    elif kind == "ellipse":
        pen.ellipse(pts[:2], fill=fill)
    elif kind == "poly":
        pen.polygon(pts, fill=fill)
    elif kind == "line":
        pen.line(pts, fill=fill, width=max(1, round(el.extra[0] * scale)), joint="curve")
    elif kind == "arc":
        start, end, width = el.extra
        pen.arc(pts[:2], start, end, fill=fill, width=max(1, round(width * scale)))
    elif kind == "vgrad":
        x0, y0, x1, y1 = _ibox(el, scale)
        if x1 > x0 and y1 > y0:
            band = _gradient((x1 - x0, y1 - y0), (fill, el.color2 or fill))
            if veil < 1:
                band = Image.blend(canvas.crop((x0, y0, x1, y1)), band, veil)
            canvas.paste(band, (x0, y0))
    elif kind == "glow":
        _glow(canvas, el, scale)
    elif kind == "sphere":
        _sphere(canvas, el, scale)
    elif kind == "crescent":
        _crescent(canvas, el, scale)
    else:
        raise ValueError(f"unknown element kind {kind!r}")


def _supersample(width: int, height: int) -> int:
    # Drawing at 2-4x and box-reducing is Pillow's cheapest anti-aliasing; huge images skip it
    # (their pixels are small enough, and 4x the memory of a 4096x4096 canvas is not).
    if max(width, height) <= 256:
        return 4
    return 2 if width * height <= 1536 * 1024 else 1


def _backdrop(scene: Scene, size: tuple[int, int]) -> Image.Image:
    """The sky gradient with a gentle vignette, built small (it is smooth) and scaled up once."""
    small = (max(2, size[0] // 8), max(2, size[1] // 8))
    vignette = Image.radial_gradient("L").resize(small).point(lambda v: 255 - v * 3 // 10)
    bg = ImageChops.multiply(_gradient(small, scene.sky), Image.merge("RGB", [vignette] * 3))
    return bg.resize(size, Image.Resampling.BILINEAR)


def _noise(scene: Scene) -> Image.Image:
    """Colour noise with 3-pixel grain, at a third of the scene's size."""
    # Seeded by the scene, not effect_noise(): that one uses C rand() and is not reproducible.
    rng = random.Random(scene.noise_seed)
    w, h = -(-scene.width // 3), -(-scene.height // 3)
    grain = Image.frombytes("RGB", (w, h), rng.randbytes(w * h * 3))
    return Image.blend(grain, Image.new("RGB", (w, h), scene.sky[1]), 0.3)


def _schedule(elements: tuple[Element, ...], steps: int) -> list[list[Element]]:
    # Shapes go down during the first ~70% of the steps, back to front, in proportion to their
    # weight; the remaining steps only sharpen and denoise, like the tail of a diffusion run.
    drawing = max(1, math.ceil(steps * 0.7))
    total = sum(e.weight for e in elements) or 1.0
    batches: list[list[Element]] = [[] for _ in range(steps)]
    done = 0.0
    for el in elements:
        batches[min(drawing - 1, int(done / total * drawing))].append(el)
        done += el.weight
    return batches


def _present(canvas: Image.Image, ss: int, left: float, built: float, sketch: Image.Image,
             noise: dict[int, Image.Image], size: tuple[int, int]) -> Image.Image:
    """What a step shows. ``left`` is the fraction of steps still to come: the 'latent'
    resolution and the noise both shrink with it, and at 0 it is the crisp canvas. ``built`` is
    the fraction of the shapes on the canvas so far; the sketch stands in for the rest."""
    if left <= 0:
        return canvas.reduce(ss) if ss > 1 else canvas.copy()
    factor = 1 + int((min(size) / 16 - 1) * left**1.5)  # coarsest view: ~16 px on the short side
    view = canvas.reduce(ss * factor) if ss * factor > 1 else canvas
    if built < 1:
        view = Image.blend(sketch.resize(view.size, Image.Resampling.BILINEAR), view, built)
    # Add the noise at the coarsest size that loses nothing (neither the view nor the 3-pixel
    # grain has finer detail), then scale up once: full-size passes are what cost time.
    d = min(factor, 3)
    if d not in noise:
        noise[d] = noise[3].resize((-(-size[0] // d), -(-size[1] // d)), Image.Resampling.BILINEAR)
    work = noise[d].size
    frame = Image.blend(view.resize(work, Image.Resampling.BICUBIC), noise[d], 0.8 * left**1.5)
    return frame.resize(size, Image.Resampling.BILINEAR) if work != size else frame


def _edit_inputs(edit_base: Image.Image | None, mask: Image.Image | None,
                 size: tuple[int, int]) -> tuple[Image.Image | None, Image.Image | None]:
    """The base in RGB(A) at the scene's size, and 'keep' (255 = keep the base) from the mask."""
    if edit_base is None:
        if mask is not None:
            raise ValueError("a mask needs an edit_base")
        return None, None
    alpha = edit_base.mode in ("RGBA", "LA", "PA") or "transparency" in edit_base.info
    base = edit_base.convert("RGBA" if alpha else "RGB")
    if base.size != size:
        base = base.resize(size, Image.Resampling.LANCZOS)
    if mask is None:
        return base, None
    if mask.mode == "P":
        mask = mask.convert("RGBA")
    # OpenAI semantics: the mask's alpha is what counts, transparent = repaint. A mask without
    # alpha is read as a grey map: white keeps, black repaints.
    keep = mask.getchannel("A") if "A" in mask.getbands() else mask.convert("L")
    if keep.size != size:
        keep = keep.resize(size, Image.Resampling.NEAREST)
    return base, keep


def render_steps(scene: Scene, steps: int, edit_base: Image.Image | None = None,
                 mask: Image.Image | None = None) -> Iterator[Image.Image]:
    """Yield exactly ``steps`` images of the scene's size; the k-th is the state after step k+1
    and the last is the final picture. Images are RGB, or RGBA when an RGBA edit_base is kept
    under a mask. Each yielded image is a new object the caller may keep.

    With ``edit_base`` and a ``mask``, pixels where the mask is opaque stay exactly the base's and
    the scene is painted where it is transparent. With ``edit_base`` alone, the whole picture is
    repainted on top of the base, so it reads as an edit of it.
    """
    if steps < 1:
        raise ValueError("steps must be at least 1")
    size = (scene.width, scene.height)
    base, keep = _edit_inputs(edit_base, mask, size)
    return _render(scene, steps, base, keep)


def _start(scene: Scene, scale: float, base: Image.Image | None) -> Image.Image:
    """An empty canvas at ``scale``: the backdrop, or the base to repaint over (edit, no mask)."""
    canvas = _backdrop(scene, (max(1, round(scene.width * scale)),
                               max(1, round(scene.height * scale))))
    if base is not None:
        resized = base.convert("RGB").resize(canvas.size, Image.Resampling.LANCZOS)
        canvas = Image.blend(resized, canvas, 0.3)
    return canvas


def _render(scene: Scene, steps: int, base: Image.Image | None,
            keep: Image.Image | None) -> Iterator[Image.Image]:
    ss = _supersample(scene.width, scene.height)
    backing = base if keep is None else None
    # A whole-scene sketch at thumbnail size shows the composition from the first step on, the
    # way a diffusion model's early latents do; the full-size canvas then catches up with it.
    small = min(1.0, 96 / min(scene.width, scene.height))
    veil = 1.0 if backing is None else 0.5
    sketch = _start(scene, small, backing)
    pen = ImageDraw.Draw(sketch)
    for el in scene.elements:
        _draw(sketch, pen, el, small, veil)
    canvas = _start(scene, ss, backing)
    pen = ImageDraw.Draw(canvas)
    noise = {3: _noise(scene)}  # keyed by how many times smaller than the scene it is
    total, done, drawn = sum(e.weight for e in scene.elements) or 1.0, 0.0, 0
    for k, batch in enumerate(_schedule(scene.elements, steps)):
        for el in batch:
            _draw(canvas, pen, el, ss, veil)
            done, drawn = done + el.weight, drawn + 1
        built = done / total if drawn < len(scene.elements) else 1.0
        frame = _present(canvas, ss, 1 - (k + 1) / steps, built, sketch, noise,
                         (scene.width, scene.height))
        if base is not None and keep is not None:
            frame = Image.composite(base, frame.convert(base.mode), keep)
        yield frame
