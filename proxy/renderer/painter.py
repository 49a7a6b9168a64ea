"""The local provider's painter: a planned Scene becomes a picture, painted in steps.

No model and no network. ``scene.plan_scene`` decides what to draw; ``render_steps`` paints it
the way a diffusion model previews its work: coloured noise over a blurry low-resolution guess
at first, the crisp picture at the last step. Rendering makes no choices of its own, so the same
Scene gives the same pixels. Pure synchronous Pillow: the provider runs it in a thread.

Transparent backgrounds paint the same shapes on a premultiplied-alpha canvas (Pillow's "RGBa")
that starts fully transparent instead of on the sky. Drawing, pasting through masks, blending,
reducing and resizing are all per-channel linear, which is exactly right for premultiplied
pixels: the alpha channel comes out as each shape's (anti-aliased) coverage, glows and shadows
stay translucent in their own colour, and edges carry no fringe of the sky they were not drawn on.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageOps

from proxy.renderer.motifs import RGB, Element, darker, lighter, mix
from proxy.renderer.scene import Scene, plan_scene, quality_steps

__all__ = ["Scene", "plan_scene", "quality_steps", "render_steps"]


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


def _fill(canvas: Image.Image, colour: RGB, xy: tuple[int, int], mask: Image.Image) -> None:
    """Paint ``colour`` through ``mask`` (its coverage). Pillow fills RGBA-like images through a
    mask with straight-alpha maths; pasting an image of the colour blends linearly instead, which
    is what premultiplied RGBa needs (and the same as a fill on an opaque RGB canvas)."""
    if canvas.mode == "RGB":
        canvas.paste(colour, xy, mask)
    else:
        canvas.paste(Image.new(canvas.mode, mask.size, colour), xy, mask)


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
    _fill(canvas, el.color, (bx0, by0), small.resize((bx1 - bx0, by1 - by0),
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
    _fill(canvas, el.color, (x0, y0), mask)


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
            if band.mode != canvas.mode:
                band = band.convert(canvas.mode)
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


def _noise(scene: Scene, mode: str) -> Image.Image:
    """Colour noise with 3-pixel grain, at a third of the scene's size. Opaque in either mode:
    early transparent frames are partly covered by it, the last one not at all."""
    # Seeded by the scene, not effect_noise(): that one uses C rand() and is not reproducible.
    rng = random.Random(scene.noise_seed)
    w, h = -(-scene.width // 3), -(-scene.height // 3)
    grain = Image.frombytes("RGB", (w, h), rng.randbytes(w * h * 3))
    noise = Image.blend(grain, Image.new("RGB", (w, h), scene.sky[1]), 0.3)
    return noise if mode == "RGB" else noise.convert(mode)


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
                 mask: Image.Image | None = None, *, transparent: bool = False,
                 ) -> Iterator[Image.Image]:
    """Yield exactly ``steps`` images of the scene's size; the k-th is the state after step k+1
    and the last is the final picture. Images are RGB, or RGBA when an RGBA edit_base is kept
    under a mask. Each yielded image is a new object the caller may keep.

    With ``edit_base`` and a ``mask``, pixels where the mask is opaque stay exactly the base's and
    the scene is painted where it is transparent. With ``edit_base`` alone, the whole picture is
    repainted on top of the base, so it reads as an edit of it.

    With ``transparent``, every image is RGBA and the backdrop is left out: in the last image
    alpha is 0 wherever no shape was drawn, 255 inside shapes, in between on their anti-aliased
    edges and under glows and shadows. Earlier images are partly covered by the opaque noise.
    An edit's base is kept (under the mask) or painted over (without one) with its own alpha,
    or opaque if it has none.
    """
    if steps < 1:
        raise ValueError("steps must be at least 1")
    size = (scene.width, scene.height)
    base, keep = _edit_inputs(edit_base, mask, size)
    return _render(scene, steps, base, keep, transparent)


def _start(scene: Scene, scale: float, base: Image.Image | None, transparent: bool,
           ) -> Image.Image:
    """An empty canvas at ``scale``: the backdrop, or the base to repaint over (edit, no mask).
    Transparent canvases are premultiplied RGBa and have no backdrop: nothing, or the base."""
    size = (max(1, round(scene.width * scale)), max(1, round(scene.height * scale)))
    if transparent:
        if base is None:
            return Image.new("RGBa", size, (0, 0, 0, 0))
        return base.convert("RGBa").resize(size, Image.Resampling.LANCZOS)
    canvas = _backdrop(scene, size)
    if base is not None:
        resized = base.convert("RGB").resize(canvas.size, Image.Resampling.LANCZOS)
        canvas = Image.blend(resized, canvas, 0.3)
    return canvas


def _render(scene: Scene, steps: int, base: Image.Image | None, keep: Image.Image | None,
            transparent: bool) -> Iterator[Image.Image]:
    ss = _supersample(scene.width, scene.height)
    backing = base if keep is None else None
    if transparent and base is not None and keep is not None:
        base = base.convert("RGBA")  # kept pixels keep the base's alpha, or become opaque
    # A whole-scene sketch at thumbnail size shows the composition from the first step on, the
    # way a diffusion model's early latents do; the full-size canvas then catches up with it.
    small = min(1.0, 96 / min(scene.width, scene.height))
    veil = 1.0 if backing is None else 0.5
    sketch = _start(scene, small, backing, transparent)
    pen = ImageDraw.Draw(sketch)
    for el in scene.elements:
        _draw(sketch, pen, el, small, veil)
    canvas = _start(scene, ss, backing, transparent)
    pen = ImageDraw.Draw(canvas)
    noise = {3: _noise(scene, canvas.mode)}  # keyed by how many times smaller than the scene
    total, done, drawn = sum(e.weight for e in scene.elements) or 1.0, 0.0, 0
    for k, batch in enumerate(_schedule(scene.elements, steps)):
        for el in batch:
            _draw(canvas, pen, el, ss, veil)
            done, drawn = done + el.weight, drawn + 1
        built = done / total if drawn < len(scene.elements) else 1.0
        frame = _present(canvas, ss, 1 - (k + 1) / steps, built, sketch, noise,
                         (scene.width, scene.height))
        if transparent:
            frame = frame.convert("RGBA")  # un-premultiply
        if base is not None and keep is not None:
            frame = Image.composite(base, frame.convert(base.mode), keep)
        yield frame
