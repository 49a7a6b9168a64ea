"""What motifs are made of: the Element a planner emits, the Ctx planners share, colour helpers.

Planners (``landscape.py``, ``objects.py``) only decide geometry (floats, in output pixels) and
colours; ``painter.py`` draws. That keeps a Scene a plain value, and keeps every random choice on
the one seeded ``ctx.rng`` so a (prompt, seed) pair always plans the same picture. Sizes are
fractions of ``ctx.u`` (the short side), so a motif keeps its proportions on any aspect ratio.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
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

