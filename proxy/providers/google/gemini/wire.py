"""Gemini ``generateContent`` on the wire: the request body, and reading one answer.

Both functions are pure (no I/O): the adapter sends and fans out, this knows the JSON.
Shapes: ``../shared/reference/providers.md`` §B.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from proxy.core.errors import upstream_error
from proxy.core.events import Usage
from proxy.providers.google.errors import Refusal
from proxy.request.bound import ImageRequest

# finishReason / blockReason values that mean a filter refused (not "the model drew nothing").
_BLOCKING = frozenset({
    "SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "RECITATION", "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION", "MODEL_ARMOR", "JAILBREAK",
})


def request_body(request: ImageRequest, *, vertex: bool,
                 safety_settings: list[dict[str, Any]] | None) -> dict[str, Any]:
    # An edit is the instruction followed by the images as inline parts (Gemini has no mask:
    # the catalog says so, and a mask is dropped and reported before it gets here).
    parts: list[dict[str, Any]] = [{"text": request.prompt}]
    parts += [{"inlineData": {"mimeType": image.mime, "data": image.b64}}
              for image in request.images]
    body: dict[str, Any] = {
        "contents": [{"role": "user", "parts": parts}],
        "generationConfig": generation_config(request, vertex=vertex),
    }
    if safety_settings:
        body["safetySettings"] = safety_settings
    return body


def generation_config(request: ImageRequest, *, vertex: bool) -> dict[str, Any]:
    modalities = [m.upper() for m in request.response_modalities or ("image",)]
    config: dict[str, Any] = {"responseModalities": list(dict.fromkeys(modalities)),
                              "candidateCount": 1}
    image: dict[str, Any] = {}
    if request.aspect_ratio:
        image["aspectRatio"] = request.aspect_ratio
    if request.resolution:
        image["imageSize"] = request.resolution
    if vertex and request.output_format in ("png", "jpeg"):
        # Vertex encodes as asked; the Gemini API rejects the field (the gateway transcodes).
        options: dict[str, Any] = {"mimeType": f"image/{request.output_format}"}
        if request.output_format == "jpeg" and request.output_compression is not None:
            options["compressionQuality"] = request.output_compression
        image["imageOutputOptions"] = options
    if image:
        config["imageConfig"] = image
    if request.thinking_level:
        config["thinkingConfig"] = {"thinkingLevel": request.thinking_level.upper()}
    if request.media_resolution:
        config["mediaResolution"] = f"MEDIA_RESOLUTION_{request.media_resolution.upper()}"
    return config


@dataclass(slots=True)
class Answer:
    """One ``generateContent`` response, read."""

    # Final images, byte-identical repeats dropped: (base64, MIME type).
    images: list[tuple[str, str]] = field(default_factory=list)
    # The non-thought parts in order: ("text", text) or ("image", index into ``images``).
    parts: list[tuple[str, Any]] = field(default_factory=list)
    text: str = ""
    usage: Usage | None = None
    refusal: Refusal | None = None


def read_answer(body: Any) -> Answer:
    if not isinstance(body, dict):
        raise _invalid("a body that is not a JSON object")
    usage = read_usage(body.get("usageMetadata"))
    candidates = body.get("candidates")
    if not candidates:
        feedback = body.get("promptFeedback")
        feedback = feedback if isinstance(feedback, dict) else {}
        reason = feedback.get("blockReason")
        if reason:
            message = feedback.get("blockReasonMessage") or "the prompt was blocked."
            return Answer(usage=usage, refusal=Refusal(True, str(reason), str(message)))
        return Answer(usage=usage, refusal=Refusal(
            False, "NO_CANDIDATES", "the response had neither candidates nor a block reason."))
    candidate = candidates[0] if isinstance(candidates, list) else None
    if not isinstance(candidate, dict):
        raise _invalid("a candidate that is not a JSON object")
    finish = str(candidate.get("finishReason") or "")
    content = candidate.get("content")
    raw_parts = content.get("parts") if isinstance(content, dict) else None

    answer = Answer(usage=usage)
    texts: list[str] = []
    seen: set[str] = set()
    last_image: tuple[str, str] | None = None
    for part in raw_parts if isinstance(raw_parts, list) else ():
        if not isinstance(part, dict):
            continue
        thought = part.get("thought") is True
        image = _inline_image(part)
        if image is not None:
            last_image = image
            if thought or image[0] in seen:  # interim "thinking" image, or a repeat
                continue
            seen.add(image[0])
            answer.parts.append(("image", len(answer.images)))
            answer.images.append(image)
        elif isinstance(part.get("text"), str) and not thought:
            texts.append(part["text"])
            answer.parts.append(("text", part["text"]))
    answer.text = "".join(texts)

    if not answer.images:
        said = str(candidate.get("finishMessage") or "").strip()
        if _blocking(finish):
            answer.refusal = Refusal(True, finish, said or answer.text.strip()
                                     or "the image was blocked.")
        elif last_image is not None:
            # Only "thought" images came back (reported once): the last one is the image.
            answer.parts.append(("image", 0))
            answer.images.append(last_image)
        else:
            answer.refusal = Refusal(False, finish or "NO_IMAGE", answer.text.strip() or said
                                     or "the model answered without an image.")
    return answer


def _inline_image(part: dict[str, Any]) -> tuple[str, str] | None:
    inline = part.get("inlineData") or part.get("inline_data")
    if not isinstance(inline, dict):
        return None
    data = inline.get("data")
    mime = str(inline.get("mimeType") or inline.get("mime_type") or "image/png")
    if not isinstance(data, str) or not data or not mime.startswith("image/"):
        return None
    return data, mime


def _blocking(reason: str) -> bool:
    return reason in _BLOCKING or "SAFETY" in reason


def read_usage(meta: Any) -> Usage | None:
    """``usageMetadata`` -> OpenAI's usage: thoughts count as output (text) tokens."""
    if not isinstance(meta, dict):
        return None
    prompt = _count(meta.get("promptTokenCount"))
    candidates = _count(meta.get("candidatesTokenCount"))
    thoughts = _count(meta.get("thoughtsTokenCount"))
    inputs = _by_modality(meta.get("promptTokensDetails"))
    outputs = _by_modality(meta.get("candidatesTokensDetails"))
    return Usage(
        input_tokens=prompt,
        output_tokens=candidates + thoughts,
        input_text_tokens=inputs.get("TEXT", 0) if inputs else prompt,
        input_image_tokens=inputs.get("IMAGE", 0),
        output_image_tokens=outputs.get("IMAGE", 0) if outputs else None,
        output_text_tokens=outputs.get("TEXT", 0) + thoughts if outputs else None,
    )


def add_usage(total: Usage | None, more: Usage | None) -> Usage | None:
    if total is None or more is None:
        return total or more

    def plus(a: int | None, b: int | None) -> int | None:
        return None if a is None and b is None else (a or 0) + (b or 0)

    return Usage(
        input_tokens=total.input_tokens + more.input_tokens,
        output_tokens=total.output_tokens + more.output_tokens,
        input_text_tokens=total.input_text_tokens + more.input_text_tokens,
        input_image_tokens=total.input_image_tokens + more.input_image_tokens,
        output_image_tokens=plus(total.output_image_tokens, more.output_image_tokens),
        output_text_tokens=plus(total.output_text_tokens, more.output_text_tokens),
    )


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _by_modality(details: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in details if isinstance(details, list) else ():
        if isinstance(item, dict) and isinstance(item.get("modality"), str):
            out[item["modality"]] = out.get(item["modality"], 0) + _count(item.get("tokenCount"))
    return out


def _invalid(what: str) -> Exception:
    return upstream_error(f"Google sent {what}.", code="upstream_invalid_response")
