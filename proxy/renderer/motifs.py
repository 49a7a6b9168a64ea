"""Subjects for the local painter: each planner turns one motif into a few primitive shapes.

This module is the registry: ``PLANNERS`` maps a motif to its planner, in painting order. The
planners live in ``landscape.py`` (sky and land) and ``objects.py`` (things on the ground, and
abstract compositions); what they share (``Element``, ``Ctx``, colour helpers) in ``elements.py``.
Planners only decide geometry and colours; ``painter.py`` draws.
"""

from __future__ import annotations

from collections.abc import Callable

from proxy.renderer.elements import (
    BLACK,
    RGB,
    WHITE,
    Ctx,
    Element,
    Point,
    box,
    darker,
    lighter,
    mix,
)
from proxy.renderer.landscape import (
    city,
    cloud,
    forest,
    ground,
    moon,
    mountain,
    planet,
    sea,
    stars,
    sun,
)
from proxy.renderer.objects import abstract, animal, apple, ball, flower, tree

__all__ = [
    "BLACK", "PLANNERS", "RGB", "WHITE", "Ctx", "Element", "Planner", "Point", "abstract", "box",
    "darker", "lighter", "mix",
]

Planner = Callable[[Ctx, str, RGB | None, int], None]
# Back to front: each motif is painted over the ones before it.
PLANNERS: dict[str, Planner] = {
    "stars": stars, "sun": sun, "moon": moon, "planet": planet, "cloud": cloud,
    "mountain": mountain, "sea": sea, "ground": ground, "city": city, "forest": forest,
    "tree": tree, "flower": flower, "dog": animal, "cat": animal, "ball": ball, "apple": apple,
}
