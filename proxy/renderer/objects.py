"""Object motifs: trees, flowers, animals, apples and balls standing on the ground, and the
abstract composition for prompts with no known subject."""

from __future__ import annotations

import math

from proxy.renderer.elements import BLACK, RGB, WHITE, Ctx, box, darker, lighter
from proxy.renderer.landscape import conifer


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

def tree(ctx: Ctx, variant: str, colour: RGB | None, count: int) -> None:
    rng = ctx.rng
    for x, y, s in _spots(ctx, count or rng.randint(2, 4), ctx.u * 0.5):
        col = colour or ((40, 110, 70) if variant == "pine" else (70, 140, 60))
        ctx.shadow(x, y, s * 0.25)
        if variant == "pine":
            conifer(ctx, x, y, s, ctx.tone(col))
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

