"""The local provider's painter: deterministic, prompt-driven, progressive, and exact on edits."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
import subprocess
import sys

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageStat

from proxy.renderer.painter import Scene, plan_scene, quality_steps, render_steps
from tests.support.paths import REPO_ROOT

APPLE = "a red apple on a table at sunset"


def render(prompt: str, seed: int = 1, width: int = 256, height: int = 256, steps: int = 6,
           transparent: bool = False, **edit: Image.Image) -> list[Image.Image]:
    scene = plan_scene(prompt, seed, width, height)
    return list(render_steps(scene, steps, **edit, transparent=transparent))


def mad(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference over all channel values, 0..255."""
    diff = ImageChops.difference(a.convert("RGB"), b.convert("RGB"))
    return sum(ImageStat.Stat(diff).mean) / 3


def channel_means(image: Image.Image) -> list[float]:
    return ImageStat.Stat(image.convert("RGB")).mean


# --- determinism ----------------------------------------------------------------------------


def test_same_arguments_give_identical_pixels_at_every_step() -> None:
    first, second = render(APPLE, seed=42), render(APPLE, seed=42)
    assert [f.tobytes() for f in first] == [f.tobytes() for f in second]
    assert plan_scene(APPLE, 42, 256, 256) == plan_scene(APPLE, 42, 256, 256)


def test_pixels_do_not_depend_on_the_process_hash_seed() -> None:
    # Python salts str hashes per process; the painter must not let that leak into pixels.
    code = (
        "import hashlib\n"
        "from proxy.renderer.painter import plan_scene, render_steps\n"
        f"frames = list(render_steps(plan_scene({APPLE!r}, 7, 128, 96), 3))\n"
        "print(hashlib.sha256(frames[-1].tobytes()).hexdigest())\n"
    )
    root = REPO_ROOT
    digests = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, check=True,
                             capture_output=True, text=True)
        digests.add(out.stdout.strip())
    local = hashlib.sha256(render(APPLE, seed=7, width=128, height=96, steps=3)[-1].tobytes())
    assert digests == {local.hexdigest()}


def test_another_seed_gives_a_different_but_related_picture() -> None:
    one, two = plan_scene(APPLE, 1, 256, 256), plan_scene(APPLE, 2, 256, 256)
    assert render(APPLE, seed=1)[-1].tobytes() != render(APPLE, seed=2)[-1].tobytes()
    assert one.motifs == two.motifs and one.time == two.time  # same subject, other layout


# --- sizes and steps ------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(64, 64), (256, 128), (96, 320), (1536, 1024), (4096, 64)])
def test_every_step_has_the_requested_size(size: tuple[int, int]) -> None:
    frames = render("a cat and a dog on a beach at night", width=size[0], height=size[1], steps=4)
    assert {f.size for f in frames} == {size}
    assert {f.mode for f in frames} <= {"RGB", "RGBA"}


@pytest.mark.parametrize("steps", [1, 2, 6, 12, 24])
def test_yields_exactly_the_requested_number_of_steps(steps: int) -> None:
    assert len(render("mountains at dawn", width=64, height=64, steps=steps)) == steps


def test_bad_arguments_are_refused_up_front() -> None:
    scene = plan_scene(APPLE, 1, 64, 64)
    with pytest.raises(ValueError):
        render_steps(scene, 0)  # raised by the call itself, not at the first next()
    with pytest.raises(ValueError):
        render_steps(scene, 3, mask=Image.new("RGBA", (64, 64)))
    with pytest.raises(ValueError):
        plan_scene(APPLE, 1, 0, 64)


def test_quality_maps_to_more_steps_for_more_quality() -> None:
    assert quality_steps("low") == 6
    assert quality_steps("medium") == quality_steps("auto") == quality_steps(None) == 12
    assert quality_steps("high") == quality_steps("HIGH") == 24
    assert quality_steps("low") < quality_steps("medium") < quality_steps("high")


# --- progression ----------------------------------------------------------------------------


@pytest.mark.parametrize("prompt", [APPLE, "a city skyline at night", "quantum feelings"])
def test_partials_converge_to_the_final_image(prompt: str) -> None:
    frames = render(prompt, steps=12)
    distances = [mad(frame, frames[-1]) for frame in frames]
    assert distances[-1] == 0
    assert distances[0] > 4 * distances[-2] > 0  # starts far, ends close but not identical
    for earlier, later in itertools.pairwise(distances):
        assert later <= earlier + 0.5, distances


def test_early_steps_are_noisy_and_the_last_is_crisp() -> None:
    frames = render(APPLE, steps=12)

    def grain(image: Image.Image) -> float:  # how much a 1-pixel shift changes the image
        return mad(image, ImageChops.offset(image, 1, 0))

    assert grain(frames[0]) > 2 * grain(frames[-1])


# --- the prompt steers the picture ----------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_colour_words_steer_the_palette(seed: int) -> None:
    red, _, blue = channel_means(render("a red apple", seed=seed)[-1])
    assert red > blue + 20
    red, _, blue = channel_means(render("a blue ocean", seed=seed)[-1])
    assert blue > red + 20


def test_subject_and_time_words_pick_motifs() -> None:
    apple = plan_scene(APPLE, 1, 256, 256)
    assert {"apple", "ground", "sun"} <= set(apple.motifs) and apple.time == "sunset"
    cat = plan_scene("a black cat at night", 1, 256, 256)
    assert {"cat", "stars", "moon"} <= set(cat.motifs) and cat.time == "night"
    assert (26, 26, 30) in cat.palette
    balls = plan_scene("two blue balls and a yellow orb", 1, 256, 256)
    assert sum(el.kind == "sphere" for el in balls.elements) == 3


def test_unknown_prompts_still_give_a_composed_picture() -> None:
    scene = plan_scene("quantum entanglement of feelings", 1, 256, 256)
    assert isinstance(scene, Scene) and scene.motifs == () and len(scene.elements) > 5
    final = render("quantum entanglement of feelings")[-1]
    assert max(ImageStat.Stat(final).stddev) > 20  # shapes, not a flat field
    other = render("a completely different abstract idea")[-1]
    assert mad(final, other) > 10


# --- edits ----------------------------------------------------------------------------------

HOLE = (64, 64, 192, 160)


def hole_mask(mode: str = "RGBA") -> Image.Image:
    mask = Image.new("RGBA", (256, 256), (0, 0, 0, 255))
    ImageDraw.Draw(mask).rectangle((HOLE[0], HOLE[1], HOLE[2] - 1, HOLE[3] - 1), fill=(0, 0, 0, 0))
    return mask if mode == "RGBA" else mask.getchannel("A")


@pytest.mark.parametrize("base_mode", ["RGB", "RGBA"])
@pytest.mark.parametrize("mask_mode", ["RGBA", "L"])
def test_edit_keeps_the_opaque_mask_region_exactly(base_mode: str, mask_mode: str) -> None:
    base = render("a blue ocean", seed=5)[-1].convert(base_mode)
    frames = render("a red apple", steps=6, edit_base=base, mask=hole_mask(mask_mode))
    for frame in frames:
        assert frame.mode == base.mode and frame.size == base.size
        outside = ImageChops.difference(frame, base)
        outside.paste(0, HOLE)  # blank the hole: what remains must be all zero
        assert outside.getbbox() is None
    assert mad(frames[-1].crop(HOLE), base.crop(HOLE)) > 10


def test_edit_without_mask_repaints_over_the_base() -> None:
    base = render("a blue ocean", seed=5)[-1]
    plain = render("a red apple")[-1]
    edited = render("a red apple", edit_base=base)[-1]
    assert edited.tobytes() != plain.tobytes()
    assert mad(edited, base) < mad(plain, base)  # it is visibly an edit of the base
    assert mad(edited, base) > 10  # ...and not the base unchanged


# --- transparent backgrounds ----------------------------------------------------------------


def alpha_distance(a: Image.Image, b: Image.Image) -> float:
    return ImageStat.Stat(ImageChops.difference(a.getchannel("A"), b.getchannel("A"))).mean[0]


def test_transparent_leaves_the_backdrop_clear_and_the_subjects_opaque() -> None:
    scene = plan_scene("a red apple", 1, 256, 256)
    final = list(render_steps(scene, 6, transparent=True))[-1]
    assert final.mode == "RGBA" and final.size == (256, 256)
    alpha = final.getchannel("A")
    assert alpha.getextrema() == (0, 255)
    assert alpha.getpixel((0, 0)) == 0  # an empty sky corner
    (x0, y0), (x1, y1) = next(el.pts for el in scene.elements if el.kind == "sphere")
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, min(x1 - x0, y1 - y0) / 2
    core = alpha.crop((round(cx - r / 2), round(cy - r / 2), round(cx + r / 2), round(cy + r / 2)))
    assert core.getextrema() == (255, 255)  # the apple itself
    edge = alpha.crop((round(cx - r * 1.2), round(cy - r * 1.2), round(cx + r * 1.2), round(cy)))
    assert any(edge.histogram()[1:255])  # anti-aliased edges: soft alpha, not a cut-out


@pytest.mark.parametrize("prompt", ["a red apple", "a black cat under the moon at night",
                                    "two blue balls and a yellow orb", "quantum feelings"])
def test_transparent_picture_over_its_backdrop_is_the_opaque_picture(prompt: str) -> None:
    # Coverage and colour are both right (no sky fringe on edges, glows in their own colour)
    # exactly when laying the transparent picture over the sky gives back the opaque one.
    scene = plan_scene(prompt, 3, 256, 192)
    opaque = list(render_steps(scene, 4))[-1]
    sky = list(render_steps(dataclasses.replace(scene, elements=()), 1))[-1].convert("RGBA")
    sky.alpha_composite(list(render_steps(scene, 4, transparent=True))[-1])
    assert mad(sky, opaque) < 1
    worst = ImageChops.difference(sky.convert("RGB"), opaque).getextrema()
    assert max(high for _, high in worst) <= 6


def test_transparent_partials_are_rgba_and_converge_to_a_clean_final() -> None:
    frames = render("a city skyline at night", steps=12, transparent=True)
    assert {f.mode for f in frames} == {"RGBA"} and {f.size for f in frames} == {(256, 256)}
    distances = [alpha_distance(frame, frames[-1]) for frame in frames]
    assert distances[-1] == 0 and distances[0] > 4 * distances[-2] > 0
    for earlier, later in itertools.pairwise(distances):
        assert later <= earlier + 0.5, distances
    assert frames[0].getpixel((0, 0))[3] > 0 == frames[-1].getpixel((0, 0))[3]  # noise clears


def test_opaque_is_the_default_and_unchanged_by_the_keyword() -> None:
    scene = plan_scene(APPLE, 42, 128, 96)
    default = list(render_steps(scene, 3))
    explicit = list(render_steps(scene, 3, transparent=False))
    assert {f.mode for f in default} == {"RGB"}
    assert [f.tobytes() for f in default] == [f.tobytes() for f in explicit]


@pytest.mark.parametrize("base_mode", ["RGB", "RGBA"])
def test_transparent_edit_keeps_the_base_and_its_alpha_under_the_mask(base_mode: str) -> None:
    base = render("a blue ocean", seed=5)[-1].convert(base_mode)
    if base_mode == "RGBA":
        base.putalpha(Image.linear_gradient("L").resize(base.size))  # alpha 0..255 top to bottom
    frames = render("a red apple", steps=6, edit_base=base, mask=hole_mask(), transparent=True)
    expected = base.convert("RGBA")
    for frame in frames:
        assert frame.mode == "RGBA"
        outside = ImageChops.difference(frame, expected)
        outside.paste(0, HOLE)
        assert outside.getbbox() is None  # colour and alpha both, exactly
    assert frames[-1].crop(HOLE).getchannel("A").getextrema()[0] == 0  # clear sky in the hole


def test_transparent_edit_without_mask_paints_over_the_base_with_its_alpha() -> None:
    base = render("a blue ocean", seed=5)[-1]
    edited = render("a red apple", edit_base=base, transparent=True)[-1]
    assert edited.mode == "RGBA" and edited.getchannel("A").getextrema() == (255, 255)
    assert mad(edited, base) > 10
