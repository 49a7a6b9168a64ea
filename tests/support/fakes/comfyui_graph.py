"""What the fake ComfyUI (``comfyui.py``) makes of an API-format graph: the order its nodes run
in, the size of the latent it samples, and the images its output nodes save.

The saved image of an edit graph is computed from the upload like ComfyUI would shape it: scaled
by ``ImageScale``, kept where the noise mask (1 - alpha, from ``LoadImage``'s MASK or
``LoadImageMask``) is 0 and blended toward the paint by the sampler's ``denoise`` where it is 1
(everywhere without one). A text-to-image graph saves plain PNGs of the latent's size.
"""

from __future__ import annotations

import io
from typing import Any

from PIL import Image, ImageOps

IMAGE_LOADERS = frozenset({"LoadImage", "LoadImageMask"})
SAMPLERS = frozenset({"KSampler", "KSamplerAdvanced"})

# (type, subfolder, name) -> bytes: the server's input, output and temp folders.
Files = dict[tuple[str, str, str], bytes]


def jpeg(width: int, height: int, colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


def png(width: int, height: int, colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, "PNG")
    return buffer.getvalue()


def _png_of(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _link(value: Any) -> tuple[str, int] | None:
    """``["12", 0]`` -> ``("12", 0)``: an input wired to another node's output."""
    if isinstance(value, list) and len(value) == 2 and isinstance(value[1], int):
        return str(value[0]), value[1]
    return None


def input_file(files: Files, name: Any) -> bytes | None:
    """The file a ``LoadImage.image`` value names (``sub/name``, maybe ``name [input]``)."""
    if not isinstance(name, str):
        return None
    kind = "input"
    for annotation in ("output", "input", "temp"):
        if name.endswith(f" [{annotation}]"):
            name, kind = name[:-len(annotation) - 3], annotation
    folder, _, filename = name.rpartition("/")
    return files.get((kind, folder, filename))


def order(workflow: dict[str, Any]) -> list[str]:
    """Nodes after the nodes their inputs link to (``[node_id, slot]``)."""
    done: list[str] = []

    def visit(node_id: str) -> None:
        if node_id in done:
            return
        for value in (workflow[node_id].get("inputs") or {}).values():
            if isinstance(value, list) and len(value) == 2 and str(value[0]) in workflow:
                visit(str(value[0]))
        done.append(node_id)

    for node_id in workflow:
        visit(node_id)
    return done


class GraphImages:
    """The images one graph makes, from the server's files."""

    def __init__(self, workflow: dict[str, Any], files: Files) -> None:
        self.workflow = workflow
        self.files = files

    def latent(self) -> tuple[int, int, int]:
        """Width, height and batch of the sampled latent: EmptyLatentImage's, or for an edit
        the ImageScale size (else the uploaded image's) times RepeatLatentBatch's amount."""
        for spec in self.workflow.values():
            if spec["class_type"] == "EmptyLatentImage":
                i = spec["inputs"]
                return int(i.get("width", 512)), int(i.get("height", 512)), int(
                    i.get("batch_size", 1))
        batch = 1
        for spec in self.workflow.values():
            if spec["class_type"] == "RepeatLatentBatch":
                batch *= int(spec["inputs"].get("amount", 1))
        for spec in self.workflow.values():
            i = spec["inputs"]
            if spec["class_type"] == "ImageScale" and (i.get("width") or i.get("height")):
                return int(i.get("width") or 512), int(i.get("height") or 512), batch
        source = self._source()
        if source is not None:
            return source.width, source.height, batch
        return 512, 512, batch

    def _load(self, node_id: str) -> Image.Image | None:
        spec = self.workflow.get(node_id) or {}
        data = input_file(self.files, (spec.get("inputs") or {}).get("image"))
        if spec.get("class_type") not in IMAGE_LOADERS or data is None:
            return None
        image = Image.open(io.BytesIO(data))
        image.load()
        return image

    def _source(self) -> Image.Image | None:
        """The picture an edit graph encodes: the LoadImage behind VAEEncode's pixels."""
        workflow = self.workflow
        for spec in workflow.values():
            if spec["class_type"] in ("VAEEncode", "VAEEncodeForInpaint"):
                link = _link(spec["inputs"].get("pixels"))
                while link is not None and workflow[link[0]]["class_type"] == "ImageScale":
                    link = _link(workflow[link[0]]["inputs"].get("image"))
                if link is not None and workflow[link[0]]["class_type"] == "LoadImage":
                    return self._load(link[0])
        return None

    def _noise_mask(self) -> Image.Image | None:
        """The MASK an inpaint graph samples under (L, 255 = repaint), as ComfyUI makes it:
        ``LoadImage`` output 1 and ``LoadImageMask`` channel alpha are 1 - alpha."""
        for spec in self.workflow.values():
            if spec["class_type"] not in ("SetLatentNoiseMask", "VAEEncodeForInpaint"):
                continue
            link = _link(spec["inputs"].get("mask"))
            image = self._load(link[0]) if link is not None else None
            if image is None:
                continue
            loader = self.workflow[link[0]]  # type: ignore[index]
            channel = "alpha" if loader["class_type"] == "LoadImage" else \
                loader["inputs"].get("channel", "alpha")
            if channel == "alpha":
                if "A" not in image.getbands() and "transparency" not in image.info:
                    return Image.new("L", image.size, 0)  # ComfyUI: an all-zero mask
                return ImageOps.invert(image.convert("RGBA").getchannel("A"))
            return image.convert("RGB").getchannel("RGB".index(channel[0].upper()))
        return None

    def _denoise(self) -> float:
        for spec in self.workflow.values():
            if spec["class_type"] in SAMPLERS:
                return float(spec["inputs"].get("denoise", 1.0))
        return 1.0

    def save(self, names: list[str], kind: str) -> list[dict[str, str]]:
        """Write one image per latent batch item under ``names``; their refs."""
        width, height, _ = self.latent()
        source, mask = self._source(), self._noise_mask()
        images = []
        for index, name in enumerate(names):
            colour = (200, 40 * index % 256, 30)
            if source is None:
                data = png(width, height, colour)
            else:
                base = source.convert("RGB").resize((width, height))
                paint = Image.blend(base, Image.new("RGB", (width, height), colour),
                                    self._denoise())
                if mask is not None:
                    paint = Image.composite(paint, base, mask.resize((width, height)))
                data = _png_of(paint)
            self.files[(kind, "", name)] = data
            images.append({"filename": name, "subfolder": "", "type": kind})
        return images
