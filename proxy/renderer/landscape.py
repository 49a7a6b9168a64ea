"""Sky and landscape motifs: stars, sun, moon, planets, clouds, mountains, ground, sea, city,
forest. The backdrop behind them is the painter's; these are the shapes drawn over it."""

from __future__ import annotations

import math
import random

from proxy.renderer.elements import RGB, WHITE, Ctx, box, darker, lighter, mix


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


def conifer(ctx: Ctx, x: float, foot: float, size: float, col: RGB) -> None:
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
            conifer(ctx, x, foot + jitter, size * rng.uniform(0.8, 1.2), c)
            x += size * rng.uniform(0.25, 0.45)

