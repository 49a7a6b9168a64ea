"""Subjects for the local painter: each planner turns one motif into a few primitive shapes.

Planners only decide geometry (floats, in output pixels) and colours; ``painter.py`` draws. That
keeps a Scene a plain value, and keeps every random choice on the one seeded ``ctx.rng`` so a
(prompt, seed) pair always plans the same picture. Sizes are fractions of ``ctx.u`` (the short
side), so a motif keeps its proportions on any aspect ratio.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

RGB = tuple[int, int, int]
Point = tuple[float, float]
WHITE: RGB = (255, 255, 255)
BLACK: RGB = (0, 0, 0)


def mix(a: RGB, b: RGB, t: float) -> RGB:
    """Blend from ``a`` (t=0) to ``b`` (t=1)."""
    return (
        round(a[0] + (b[0] - a[0]) * t),
        round(a[1] + (b[1] - a[1]) * t),
        round(a[2] + (b[2] - a[2]) * t),
    )


def lighter(c: RGB, t: float) -> RGB:
    return mix(c, WHITE, t)


def darker(c: RGB, t: float) -> RGB:
    return mix(c, BLACK, t)


def box(cx: float, cy: float, rx: float, ry: float) -> tuple[Point, Point]:
    return ((cx - rx, cy - ry), (cx + rx, cy + ry))


@dataclass(frozen=True)
class Element:
    """One primitive shape; ``kind`` picks its drawer in painter.py."""

    kind: str  # rect, rrect, ellipse, poly, line, arc, sphere, glow, crescent or vgrad
    color: RGB
    pts: tuple[Point, ...]  # two corners of a bounding box, or a polygon / polyline
    weight: float = 1.0  # its share of the progress steps: big shapes count, details barely
    extra: tuple[float, ...] = ()  # line width, corner radius, (alpha, spread), arc angles…
    color2: RGB | None = None  # bottom colour of a vertical gradient


@dataclass
class Ctx:
    """What the planners of one scene share."""

    w: float
    h: float
    rng: random.Random
    time: str  # day, night, sunset, dawn, studio or abstract
    sky: tuple[RGB, RGB, RGB]
    horizon: float  # where the sky meets ground or water
    base: float  # foot of mountains and buildings: just under the horizon, or h without ground
    palette: tuple[RGB, ...]
    floor: float = 0.0  # top of the ground things stand on: the horizon, or a beach's shore
    skyline: float = 0.0  # highest the land may reach (mountains, towers): a low sun sits above
    light: tuple[float, float, float, RGB] | None = None  # sun or moon (x, y, r, colour)
    out: list[Element] = field(default_factory=list)
    taken: list[tuple[float, float]] = field(default_factory=list)  # (x, size) of placed objects

    @property
    def u(self) -> float:
        return min(self.w, self.h)

    def add(self, kind: str, color: RGB, pts: Iterable[Point], weight: float = 1.0,
            extra: Iterable[float] = (), color2: RGB | None = None) -> None:
        self.out.append(Element(kind, color, tuple(pts), weight, tuple(extra), color2))

    def tone(self, c: RGB) -> RGB:
        """Put a lit colour in the scene's light: silhouettes at night, a warm cast at sunset."""
        cast = {"night": (self.sky[0], 0.55), "sunset": ((110, 50, 70), 0.3),
                "dawn": ((200, 150, 160), 0.12)}.get(self.time)
        return mix(c, *cast) if cast else c

    def shadow(self, x: float, y: float, rx: float) -> None:
        self.add("glow", BLACK, box(x, y, rx, rx * 0.2), 0.3, (0.45, 0.25))


def _spots(ctx: Ctx, n: int, size: float) -> list[tuple[float, float, float]]:
    """(x, foot y, size) for n objects standing on the ground, far ones first (painted first).

    Each object tries a few places and takes the one that overlaps least with objects already
    placed, by any motif, preferring the middle, so a dog and a flower rarely share a spot.
    """
    rng, n = ctx.rng, min(n, 9)
    size *= 1.0 if n == 1 else 1.3 / math.sqrt(n)
    spots = []
    for _ in range(n):
        depth = rng.uniform(0.3, 0.65)
        s = size * (0.8 + 0.4 * depth) * rng.uniform(0.9, 1.1)
        spread = 0.3 if not ctx.taken else 0.8

        def score(x: float, s: float = s) -> float:
            apart = min([abs(x - tx) / (0.5 * (s + ts)) for tx, ts in ctx.taken] or [1.0])
            return min(apart, 1.0) - 0.2 * abs(x / ctx.w - 0.5)

        x = max((ctx.w * (0.5 + spread * (rng.random() - 0.5)) for _ in range(8)), key=score)
        ctx.taken.append((x, s))
        spots.append((x, ctx.floor + (ctx.h - ctx.floor) * depth, s))
    return sorted(spots, key=lambda s: s[1])


def stars(ctx: Ctx, variant: str, colour: RGB | None, count: int) -> None:
    rng, s = ctx.rng, ctx.u / 1024
    tint = colour or (255, 236, 200)
    for _ in range(int(min(400, max(30, 160 * ctx.w * ctx.h / 1024**2)))):
        x, y = rng.uniform(0, ctx.w), ctx.horizon * 0.95 * rng.random() ** 1.4  # denser up high
        r = max(0.6, s * rng.choice((0.9, 1.2, 1.6, 2.2, 3.0)))
        ctx.add("ellipse", mix(WHITE, tint, rng.random()), box(x, y, r, r), 0.02)
    for _ in range(3):  # a few bright ones with a halo
        x, y, r = rng.uniform(0, ctx.w), ctx.horizon * 0.8 * rng.random(), max(1.0, 3 * s)
        ctx.add("glow", tint, box(x, y, r * 3, r * 3), 0.1, (0.6, 0.5))
        ctx.add("ellipse", WHITE, box(x, y, r, r), 0.05)


def sun(ctx: Ctx, variant: str, colour: RGB | None, count: int) -> None:
    rng = ctx.rng
    low = ctx.time in ("sunset", "dawn")
    col = colour or ((255, 170, 90) if low else (255, 222, 120))
    r = ctx.u * rng.uniform(0.07, 0.1)
    # Off to one side: the middle belongs to the subject, which would hide a low sun.
    x = ctx.w * (rng.uniform(0.15, 0.38) if rng.random() < 0.5 else rng.uniform(0.62, 0.85))
    # Low suns sit on the horizon (or just over hills and towers), partly hidden by the land.
    y = ctx.skyline - r * rng.uniform(0.1, 0.7) if low else ctx.horizon * rng.uniform(0.2, 0.4)
    ctx.add("glow", lighter(col, 0.2), box(x, y, r * 3, r * 3), 1.0, (0.6, 0.45))
    ctx.add("ellipse", lighter(col, 0.35), box(x, y, r, r))
    ctx.light = (x, y, r, col)


def moon(ctx: Ctx, variant: str, colour: RGB | None, count: int) -> None:
    rng = ctx.rng
    col = colour or (244, 240, 222)
    r = ctx.u * rng.uniform(0.05, 0.08)
    x = ctx.w * (rng.uniform(0.15, 0.4) if rng.random() < 0.5 else rng.uniform(0.6, 0.85))
    y = ctx.horizon * rng.uniform(0.2, 0.45)
    ctx.add("glow", mix(col, (120, 150, 220), 0.5), box(x, y, r * 3, r * 3), 0.5, (0.35, 0.5))
    if rng.random() < 0.5:
        ctx.add("crescent", col, box(x, y, r, r), 1.0, (rng.uniform(0.3, 0.5),))
    else:
        ctx.add("sphere", col, box(x, y, r, r))
    ctx.light = (x, y, r, col)


def planet(ctx: Ctx, variant: str, colour: RGB | None, count: int) -> None:
    rng = ctx.rng
    for i in range(min(count or rng.randint(2, 3), 5)):
        col = colour or rng.choice(ctx.palette)
        r = ctx.u * rng.uniform(0.12, 0.2) / (1 + 0.6 * i)
        x, y = ctx.w * rng.uniform(0.2, 0.8), max(r * 1.3, ctx.horizon * rng.uniform(0.25, 0.6))
        ring = variant == "saturn" or rng.random() < 0.5
        rim, ring_box, width = lighter(col, 0.35), box(x, y, r * 1.9, r * 0.45), r * 0.12
        ctx.add("glow", col, box(x, y, r * 1.6, r * 1.6), 0.5, (0.35, 0.4))
        if ring:  # the far half of the ring goes behind the planet, the near half in front
            ctx.add("arc", rim, ring_box, 0.3, (180, 360, width))
        ctx.add("sphere", col, box(x, y, r, r))
        if ring:
            ctx.add("arc", rim, ring_box, 0.3, (0, 180, width))


def cloud(ctx: Ctx, variant: str, colour: RGB | None, count: int) -> None:
    rng = ctx.rng
    col = ctx.tone(colour or mix(WHITE, ctx.sky[1], 0.2))
    under = mix(col, ctx.sky[0], 0.25)
    n = min(count or rng.randint(2, 4), 7)
    for i in range(n):  # one per slice of the width, so they do not pile up
        cw = ctx.u * rng.uniform(0.14, 0.26) / (1 + n / 6)
        x, y = ctx.w * (i + rng.uniform(0.2, 0.8)) / n, ctx.horizon * rng.uniform(0.15, 0.6)
        ctx.add("ellipse", under, box(x, y + cw * 0.12, cw, cw * 0.22), 0.3)
        for j in range(5):
            pr = cw * rng.uniform(0.25, 0.42) * (1 - abs(j - 2) * 0.15)
            puff = box(x + cw * (j * 0.4 - 0.8), y - pr * 0.5, pr, pr * 0.85)
            ctx.add("ellipse", col, puff, 0.15)


def _ridge(rng: random.Random, smooth: bool) -> list[float]:
    """65 heights in 0..1 across the width: rolling sines for hills; for mountains a few peaks
    with straight flanks (what makes them read as mountains) roughened by midpoint noise."""
    if smooth:
        waves = [(rng.uniform(0.5, 3.0), rng.uniform(0, 6.3), 1 / (k + 1)) for k in range(3)]
        ys = [sum(a * math.sin(2 * math.pi * f * j / 64 + p) for f, p, a in waves)
              for j in range(65)]
        lo, hi = min(ys), max(ys)
        return [(y - lo) / ((hi - lo) or 1.0) for y in ys]
    noise, step, amp = [0.0] * 65, 64, 0.12
    while step > 1:
        half = step // 2
        for i in range(half, 64, step):
            noise[i] = (noise[i - half] + noise[i + half]) / 2 + rng.uniform(-amp, amp)
        step, amp = half, amp * 0.6
    peaks = [(rng.uniform(-0.1, 1.1), rng.uniform(0.5, 1.0), rng.uniform(0.18, 0.35))
             for _ in range(rng.randint(2, 4))]
    return [max(0.0, max(top * (1 - abs(j / 64 - x) / half) for x, top, half in peaks) + noise[j])
            for j in range(65)]


def mountain(ctx: Ctx, variant: str, colour: RGB | None, count: int) -> None:
    rng, hill = ctx.rng, variant == "hill"
    col = colour or ((92, 148, 78) if hill else (96, 104, 138))
    ranges = 2 if count == 1 else 3
    for i in range(ranges):  # far to near; far ranges fade into the sky (aerial perspective)
        near = i / (ranges - 1)
        peak = (0.2 if hill else 0.38) * ctx.h * (1 - 0.4 * near) * rng.uniform(0.8, 1.1)
        foot = ctx.horizon + ctx.h * 0.02
        pts = [(ctx.w * j / 64, foot - (foot - ctx.horizon + peak) * y)
               for j, y in enumerate(_ridge(rng, hill))]
        ctx.add("poly", ctx.tone(mix(col, ctx.sky[2], 0.55 * (1 - near))),
                [(0, ctx.base), *pts, (ctx.w, ctx.base)])
        if hill:
            continue
        snow_col = ctx.tone(mix(WHITE, ctx.sky[1], 0.2 + 0.4 * (1 - near)))
        line = [ctx.horizon - peak * rng.uniform(0.62, 0.72) for _ in pts]
        run: list[int] = []
        for j in [*range(len(pts)), -1]:  # one cap per stretch of ridge above the snow line
            if j >= 0 and pts[j][1] < line[j]:
                run.append(j)
            elif len(run) > 1:
                cap = [pts[k] for k in run] + [(pts[k][0], line[k]) for k in reversed(run)]
                ctx.add("poly", snow_col, cap, 0.3)
                run = []
            else:
                run = []


GROUNDS: dict[str, RGB] = {"grass": (86, 150, 70), "sand": (222, 196, 142),
                           "snow": (236, 240, 246), "table": (140, 92, 56)}


def ground(ctx: Ctx, variant: str, colour: RGB | None, count: int) -> None:
    rng, w, h, top = ctx.rng, ctx.w, ctx.h, ctx.horizon
    col = colour or GROUNDS.get(variant) or darker(mix(ctx.sky[1], (150, 120, 95), 0.35), 0.12)
    if ctx.floor > top:  # a beach: the sea (painted first) keeps the far half, up to a curved shore
        ripple = [rng.uniform(0, 6.3), rng.uniform(0.5, 1.5)]
        shore = [(w * j / 32, ctx.floor + ctx.u * 0.02 * math.sin(ripple[0] + ripple[1] * j / 5))
                 for j in range(33)]
        ctx.add("line", ctx.tone(lighter(col, 0.5)), shore, 0.2, (ctx.u * 0.008,))
        ctx.add("poly", ctx.tone(col), [(0, h), *shore, (w, h)])
        return
    ctx.add("vgrad", ctx.tone(mix(col, ctx.sky[2], 0.3)), ((0, top), (w, h)), 1.0,
            color2=ctx.tone(darker(col, 0.35)))
    if variant == "table":  # a lit front edge
        ctx.add("line", ctx.tone(lighter(col, 0.35)), [(0, top), (w, top)], 0.2, (ctx.u * 0.006,))
    if variant in ("table", "sand", "snow"):  # wood grain, sand ripples, snow drifts
        streak = {"table": darker(col, 0.18), "sand": lighter(col, 0.3),
                  "snow": mix(col, (150, 170, 210), 0.25)}[variant]
        for _ in range(8):
            y, a = top + (h - top) * rng.uniform(0.1, 1), ctx.u * rng.uniform(0.002, 0.008)
            phase, x0 = rng.uniform(0, 6.3), rng.uniform(-0.5, 0.5) * w
            pts = [(x0 + w * j / 16, y + a * math.sin(j * 0.8 + phase)) for j in range(17)]
            ctx.add("line", ctx.tone(streak), pts, 0.05, (ctx.u * 0.003,))
    elif variant == "grass":  # blades, longer toward the viewer
        for _ in range(int(70 * w / ctx.u)):
            x, depth = rng.uniform(0, w), rng.random() ** 0.6
            y, length = top + (h - top) * depth, ctx.u * (0.01 + 0.04 * depth)
            blade = mix(darker(col, 0.2), lighter(col, 0.25), rng.random())
            ctx.add("line", ctx.tone(blade), [(x, y), (x + rng.uniform(-0.4, 0.4) * length,
                                                        y - length)], 0.02, (ctx.u * 0.003,))


def sea(ctx: Ctx, variant: str, colour: RGB | None, count: int) -> None:
    rng, w, h, top = ctx.rng, ctx.w, ctx.h, ctx.horizon
    col = colour or (34, 96, 168)
    ctx.add("vgrad", ctx.tone(mix(col, ctx.sky[2], 0.45)), ((0, top), (w, h)), 1.0,
            color2=ctx.tone(darker(col, 0.3)))
    crest = ctx.tone(mix(lighter(col, 0.45), ctx.sky[1], 0.25))
    for row in range(12):  # rows of wave crests, spaced wider and drawn bigger up close
        t = (row + 1) / 13
        y = top + (h - top) * t**1.6
        for _ in range(rng.randint(2, 4)):
            length, x0 = w * (0.05 + 0.12 * t) * rng.uniform(0.6, 1.3), rng.uniform(-0.1 * w, w)
            amp = ctx.u * 0.006 * (0.4 + 2 * t)
            pts = [(x0 + length * j / 10, y - amp * math.sin(math.pi * j / 10)) for j in range(11)]
            ctx.add("line", crest, pts, 0.05, (ctx.u * 0.0025 * (0.5 + 2 * t),))
    if ctx.light:  # a glittering path under the sun or moon
        lx, _, lr, lc = ctx.light
        for row in range(10):
            t = (row + 0.5) / 10
            y, half = top + (h - top) * t**1.4, lr * (0.5 + 1.2 * t) * rng.uniform(0.5, 1.0)
            ctx.add("line", lighter(lc, 0.3), [(lx - half, y), (lx + half, y)], 0.05,
                    (ctx.u * 0.004 * (0.5 + t),))


def _windows(ctx: Ctx, x0: float, y0: float, x1: float, y1: float, wall: RGB) -> None:
    rng, size = ctx.rng, ctx.u * 0.012
    if size < 1.5:  # too small to read at this size
        return
    # Some buildings are busier than others; one flat probability looks like random glyphs.
    lit = {"night": 0.6, "sunset": 0.35, "dawn": 0.2}.get(ctx.time, 0.0) * rng.uniform(0.3, 1.5)
    cols = max(1, int((x1 - x0) / (size * 2)) - 1)
    rows = max(1, int((y1 - y0 - size) / (size * 2.6)))
    gap = (x1 - x0 - cols * size) / (cols + 1)
    dim = mix(wall, ctx.sky[1], 0.35)
    for r in range(rows):
        for c in range(cols):
            wx, wy = x0 + gap + c * (size + gap), y0 + size * (1.2 + 2.6 * r)
            glass = (255, 214, 130) if rng.random() < lit else dim
            ctx.add("rect", glass, ((wx, wy), (wx + size, wy + size * 1.4)), 0.01)


def city(ctx: Ctx, variant: str, colour: RGB | None, count: int) -> None:
    rng, u, base = ctx.rng, ctx.u, ctx.base
    col = colour or (74, 84, 108)
    featured = variant != "tower"  # a "tower" prompt gets one tall building up front
    for row in (0, 1):  # a hazy back row, then the front row with windows
        # The front row is darker than the hazy back row so both read, even at night.
        wall = ctx.tone(mix(col, ctx.sky[2], 0.45) if row == 0 else darker(col, 0.35))
        x = -rng.uniform(0, u * 0.05)
        while x < ctx.w:
            bw = u * rng.uniform(0.06, 0.13)
            bh = min(base * 0.9, ctx.h * rng.uniform(0.12, 0.3) * (1.25 if row == 0 else 1.0))
            if row == 1 and not featured and x > ctx.w * 0.35:
                featured, bh = True, base * rng.uniform(0.6, 0.75)
                ctx.add("line", wall, [(x + bw / 2, base - bh), (x + bw / 2, base - bh * 1.12)],
                        0.1, (u * 0.006,))
            ctx.add("rect", wall, ((x, base - bh), (x + bw, base)), 0.4)
            if row == 1:
                _windows(ctx, x + bw * 0.08, base - bh, x + bw * 0.92, base, wall)
            x += bw + (u * rng.uniform(0, 0.015) if row else 0)


def _conifer(ctx: Ctx, x: float, foot: float, size: float, col: RGB) -> None:
    trunk = ((x - size * 0.03, foot - size * 0.15), (x + size * 0.03, foot))
    ctx.add("rect", ctx.tone((90, 62, 40)), trunk, 0.05)
    for i in range(3):  # three stacked tiers, narrower and lighter toward the top
        low = foot - size * (0.12 + 0.25 * i)
        half = size * (0.28 - 0.06 * i)
        ctx.add("poly", lighter(col, 0.06 * i),
                [(x - half, low), (x + half, low), (x, low - size * 0.45)], 0.1)


def forest(ctx: Ctx, variant: str, colour: RGB | None, count: int) -> None:
    rng, top = ctx.rng, ctx.horizon
    col = colour or (44, 104, 70)
    for row in range(3):  # far rows are smaller, higher and hazier
        near = row / 2
        c = ctx.tone(mix(col, ctx.sky[2], 0.5 * (1 - near)))
        size = ctx.u * (0.16 + 0.16 * near)
        foot = top + min(ctx.base - top, (ctx.h - top) * (0.05 + 0.35 * near))
        x = -rng.uniform(0, size * 0.3)
        while x < ctx.w + size * 0.3:
            jitter = rng.uniform(-0.05, 0.05) * size
            _conifer(ctx, x, foot + jitter, size * rng.uniform(0.8, 1.2), c)
            x += size * rng.uniform(0.25, 0.45)


def tree(ctx: Ctx, variant: str, colour: RGB | None, count: int) -> None:
    rng = ctx.rng
    for x, y, s in _spots(ctx, count or rng.randint(2, 4), ctx.u * 0.5):
        col = colour or ((40, 110, 70) if variant == "pine" else (70, 140, 60))
        ctx.shadow(x, y, s * 0.25)
        if variant == "pine":
            _conifer(ctx, x, y, s, ctx.tone(col))
            continue
        ctx.add("rect", ctx.tone((100, 70, 45)), ((x - s * 0.04, y - s * 0.55), (x + s * 0.04, y)))
        cy, rc = y - s * 0.68, s * 0.3
        ctx.add("ellipse", ctx.tone(darker(col, 0.25)), box(x, cy, rc * 1.05, rc * 0.95))
        for dx, dy, k in ((-0.45, 0.15, 0.6), (0.45, 0.2, 0.6), (0.0, -0.4, 0.65)):
            ctx.add("ellipse", ctx.tone(col), box(x + dx * rc, cy + dy * rc, rc * k, rc * k * 0.9),
                    0.3)
        ctx.add("ellipse", ctx.tone(lighter(col, 0.2)),
                box(x - rc * 0.25, cy - rc * 0.45, rc * 0.35, rc * 0.3), 0.2)


FLOWERS: tuple[RGB, ...] = ((232, 84, 120), (245, 200, 60), (160, 90, 200), (240, 120, 60))


def flower(ctx: Ctx, variant: str, colour: RGB | None, count: int) -> None:
    rng = ctx.rng
    n = rng.randint(6, 9) if variant == "garden" else count or rng.randint(3, 5)
    for x, y, s in _spots(ctx, n, ctx.u * 0.42):
        col = colour or ((200, 30, 50) if variant == "rose" else rng.choice(FLOWERS))
        col, green = ctx.tone(col), ctx.tone((70, 140, 60))
        hx, hy = x + s * rng.uniform(-0.08, 0.08), y - s
        ctx.add("line", green, [(x, y), ((x + hx) / 2 + s * 0.03, y - s * 0.5), (hx, hy)], 0.3,
                (s * 0.03,))
        ctx.add("poly", green, [(x, y - s * 0.3), (x + s * 0.16, y - s * 0.42),
                                (x + s * 0.3, y - s * 0.38), (x + s * 0.14, y - s * 0.3)], 0.2)
        k, phase = rng.randint(5, 8), rng.uniform(0, 6.3)
        for j in range(k):
            a = phase + 2 * math.pi * j / k
            ctx.add("ellipse", lighter(col, 0.15 * (j % 2)),
                    box(hx + math.cos(a) * s * 0.1, hy + math.sin(a) * s * 0.1, s * 0.08, s * 0.08),
                    0.1)
        eye = (120, 80, 40) if col[0] > 200 and col[1] > 170 else (245, 196, 60)
        ctx.add("ellipse", ctx.tone(eye), box(hx, hy, s * 0.055, s * 0.055), 0.1)


COATS = {"cat": ((232, 140, 58), (128, 128, 136), (40, 38, 44), (235, 230, 220)),
         "dog": ((160, 104, 60), (214, 170, 104), (60, 52, 48), (240, 236, 228))}


def animal(ctx: Ctx, variant: str, colour: RGB | None, count: int) -> None:
    """A sitting cat or dog facing us: body, head, ears, eyes and a tail. Deliberately simple."""
    rng, cat = ctx.rng, variant == "cat"
    for x, y, s in _spots(ctx, count or rng.randint(2, 3), ctx.u * 0.42):
        fur = colour or rng.choice(COATS["cat" if cat else "dog"])
        c, pale, dark = ctx.tone(fur), ctx.tone(lighter(fur, 0.3)), ctx.tone(darker(fur, 0.3))
        hy = y - s * 0.7  # head centre
        ctx.shadow(x, y, s * 0.38)
        # The tail: a quadratic Bézier, curling up for a cat, short and perky for a dog.
        (ax, ay), (bx, by), (cx, cy) = (((0.2, 0.05), (0.62, 0.02), (0.5, 0.5)) if cat
                                        else ((0.25, 0.2), (0.38, 0.25), (0.42, 0.45)))
        tail = [((1 - t) ** 2 * ax + 2 * t * (1 - t) * bx + t * t * cx,
                 (1 - t) ** 2 * ay + 2 * t * (1 - t) * by + t * t * cy)
                for t in (i / 8 for i in range(9))]
        ctx.add("line", dark, [(x + s * dx, y - s * dy) for dx, dy in tail], 0.3, (s * 0.06,))
        ctx.add("ellipse", c, box(x, y - s * 0.3, s * 0.3, s * 0.3))
        ctx.add("ellipse", pale, box(x, y - s * 0.22, s * 0.14, s * 0.2), 0.2)
        for sx in (-1, 1):
            ctx.add("ellipse", pale, box(x + sx * s * 0.12, y - s * 0.03, s * 0.08, s * 0.045), 0.1)
            if cat:
                ear = [(x + sx * s * 0.19, hy - s * 0.02), (x + sx * s * 0.16, hy - s * 0.27),
                       (x + sx * s * 0.04, hy - s * 0.17)]
                ctx.add("poly", c, ear, 0.2)
        ctx.add("ellipse", c, box(x, hy, s * 0.22, s * 0.2))
        for sx in (-1, 1):
            ex, ey = x + sx * s * 0.08, hy - s * 0.03
            if cat:
                ctx.add("ellipse", (130, 200, 90), box(ex, ey, s * 0.04, s * 0.035), 0.05)
                ctx.add("ellipse", BLACK, box(ex, ey, s * 0.012, s * 0.03), 0.05)
            else:
                ctx.add("ellipse", dark, box(x + sx * s * 0.2, hy + s * 0.03, s * 0.065, s * 0.15),
                        0.2)
                ctx.add("ellipse", (30, 25, 20), box(ex, ey, s * 0.03, s * 0.03), 0.05)
            glint = box(ex - s * 0.01, ey - s * 0.012, s * 0.008, s * 0.008)
            ctx.add("ellipse", WHITE, glint, 0.02)
        if cat:
            nose = [(x + s * dx, hy + s * dy) for dx, dy in ((-0.025, 0.04), (0.025, 0.04),
                                                             (0, 0.07))]
            ctx.add("poly", (230, 140, 150), nose, 0.05)
            for sx in (-1, 1):
                for dy in (-0.01, 0.02):
                    ctx.add("line", pale, [(x + sx * s * 0.06, hy + s * 0.06),
                                           (x + sx * s * 0.28, hy + s * (0.04 + dy * 2))], 0.02,
                            (s * 0.006,))
        else:
            ctx.add("ellipse", pale, box(x, hy + s * 0.08, s * 0.1, s * 0.07), 0.1)
            ctx.add("ellipse", (30, 25, 25), box(x, hy + s * 0.05, s * 0.035, s * 0.025), 0.05)


def apple(ctx: Ctx, variant: str, colour: RGB | None, count: int) -> None:
    rng = ctx.rng
    for x, y, s in _spots(ctx, count or rng.randint(2, 4), ctx.u * 0.3):
        r, col = s / 2, colour or (200, 30, 40)
        ctx.shadow(x + r * 0.15, y, r * 1.1)
        ctx.add("sphere", ctx.tone(col), ((x - r * 1.06, y - 2 * r), (x + r * 1.06, y)))
        ctx.add("line", ctx.tone((90, 60, 30)), [(x, y - 1.85 * r), (x + 0.1 * r, y - 2.3 * r)],
                0.1, (r * 0.1,))
        leaf = ((0.05, 2.15), (0.35, 2.42), (0.62, 2.3), (0.32, 2.12))
        ctx.add("poly", ctx.tone((80, 150, 60)), [(x + dx * r, y - dy * r) for dx, dy in leaf], 0.1)


def ball(ctx: Ctx, variant: str, colour: RGB | None, count: int) -> None:
    rng = ctx.rng
    for x, y, s in _spots(ctx, count or rng.randint(2, 4), ctx.u * 0.3):
        r, col = s / 2, colour or rng.choice(ctx.palette)
        if variant == "orb":  # orbs float and glow instead of casting a shadow
            y -= r * 0.6
            ctx.add("glow", lighter(col, 0.3), box(x, y - r, r * 1.8, r * 1.8), 0.5, (0.5, 0.4))
            ctx.add("sphere", col, box(x, y - r, r, r))
        else:
            ctx.shadow(x + r * 0.15, y, r * 1.1)
            ctx.add("sphere", ctx.tone(col), box(x, y - r, r, r))


def abstract(ctx: Ctx) -> None:
    """No known subject: a composition of palette shapes around the rule-of-thirds points."""
    rng, pal, u = ctx.rng, ctx.palette, ctx.u
    for _ in range(2):  # soft colour fields behind everything
        x, y = rng.uniform(0, ctx.w), rng.uniform(0, ctx.h)
        ctx.add("glow", rng.choice(pal), box(x, y, u * 0.45, u * 0.45), 1.0, (0.45, 0.4))
    anchors = [(ctx.w * a, ctx.h * b) for a in (1 / 3, 1 / 2, 2 / 3) for b in (1 / 3, 1 / 2, 2 / 3)]
    for i in range(rng.randint(4, 6)):
        cx, cy = rng.choice(anchors)
        cx, cy = cx + rng.uniform(-0.08, 0.08) * ctx.w, cy + rng.uniform(-0.08, 0.08) * ctx.h
        size = u * (0.3 - 0.035 * i) * rng.uniform(0.8, 1.2)
        col = pal[(i + rng.randint(0, 1)) % len(pal)]
        shape = rng.choice(("sphere", "disc", "ring", "rrect", "tri", "band"))
        if shape == "disc":
            ctx.add("ellipse", col, box(cx, cy, size, size))
        elif shape == "sphere":
            ctx.add("sphere", col, box(cx, cy, size, size))
        elif shape == "ring":
            ctx.add("arc", col, box(cx, cy, size, size), 1.0, (0, 360, size * 0.18))
        elif shape == "rrect":
            ctx.add("rrect", col, box(cx, cy, size, size * 0.7), 1.0, (size * 0.2,))
        elif shape == "tri":
            a = rng.uniform(0, 2 * math.pi)
            corners = [a + k * 2 * math.pi / 3 for k in range(3)]
            ctx.add("poly", col, [(cx + size * math.cos(c), cy + size * math.sin(c))
                                  for c in corners])
        else:
            band = [(cx - size * 1.6, cy + size * 0.4), (cx + size * 1.6, cy - size * 0.4)]
            ctx.add("line", col, band, 1.0, (size * 0.25,))
    gx, gy = rng.uniform(0.05, 0.75) * ctx.w, rng.uniform(0.05, 0.75) * ctx.h
    dot = lighter(pal[0], 0.6)
    for i in range(25):  # a small dot grid: fine detail that only sharp steps show
        x, y = gx + (i % 5) * u * 0.03, gy + (i // 5) * u * 0.03
        ctx.add("ellipse", dot, box(x, y, u * 0.005, u * 0.005), 0.02)


Planner = Callable[[Ctx, str, RGB | None, int], None]
# Back to front: each motif is painted over the ones before it.
PLANNERS: dict[str, Planner] = {
    "stars": stars, "sun": sun, "moon": moon, "planet": planet, "cloud": cloud,
    "mountain": mountain, "sea": sea, "ground": ground, "city": city, "forest": forest,
    "tree": tree, "flower": flower, "dog": animal, "cat": animal, "ball": ball, "apple": apple,
}
