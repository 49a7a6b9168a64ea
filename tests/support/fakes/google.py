"""A fake Google: Gemini ``generateContent`` and Imagen ``:predict``, each on the Gemini API and
on Vertex AI, and an OAuth token endpoint for service-account keys.

Wire formats as documented (``../shared/reference/providers.md`` §B, §C). It checks what the real
services check that matters to the gateway: the API key (Gemini API) or a bearer token it issued
and that has not expired (Vertex), the role of ``contents``, ``candidateCount`` 1, fields the
Gemini API refuses. Every request is recorded; answers can be scripted call by call (a documented
safety shape as HTTP 200, an HTTP error) and calls can be slowed to prove they run in parallel.

Edits (§B.2): input images are ``inlineData`` parts (``inline_data`` is read too) next to the
text of the user turn; the fake checks that each ``mimeType`` is one Gemini takes and that
``data`` is valid base64 of an image of that type (400 ``INVALID_ARGUMENT`` otherwise), holds
gemini-2.5-flash-image to 3 of them, and records them in ``Recorded.inputs``.

The token endpoint verifies the service account's RS256 assertion (its audience, issuer, scope,
signature) and issues ``fake-token-1``, ``fake-token-2`` ... that live ``token_lifetime`` seconds.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

API_KEY = "fake-gemini-api-key"
PROJECT = "fake-project"
CLIENT_EMAIL = "gateway@fake-project.iam.gserviceaccount.com"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
# The audience of every service-account assertion, whatever the file's token_uri says.
TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"

GEMINI_MODELS = {"gemini-2.5-flash-image", "gemini-3-pro-image", "gemini-3-pro-image-preview",
                 "gemini-3.1-flash-image", "gemini-3.1-flash-image-preview"}
IMAGEN_MODELS = {"imagen-4.0-generate-001", "imagen-4.0-ultra-generate-001",
                 "imagen-4.0-fast-generate-001", "imagen-3.0-generate-002"}

# Output pixels at 1K (Google's table); other tiers scale them.
GEMINI_1K = {"1:1": (1024, 1024), "2:3": (832, 1248), "3:2": (1248, 832), "3:4": (864, 1184),
             "4:3": (1184, 864), "4:5": (896, 1152), "5:4": (1152, 896), "9:16": (768, 1344),
             "16:9": (1344, 768), "21:9": (1536, 672), "1:4": (512, 2048), "4:1": (2048, 512),
             "1:8": (384, 3072), "8:1": (3072, 384)}
IMAGEN_1K = {"1:1": (1024, 1024), "3:4": (896, 1280), "4:3": (1280, 896), "9:16": (768, 1408),
             "16:9": (1408, 768)}
TIER_SCALE = {"512": 0.5, "1K": 1, "2K": 2, "4K": 4}
# Input images Gemini takes inline (PIL reads the first three), and how many a model takes.
INPUT_MIMES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP",
               "image/heic": None, "image/heif": None}
MAX_INPUT_IMAGES = {"gemini-2.5-flash-image": 3}
MAX_INPUT_IMAGES_DEFAULT = 14

_PATH = re.compile(
    r"^/(?:(?P<version>v1beta)/models/|(?P<vversion>v1)/projects/(?P<project>[^/]+)/locations/"
    r"(?P<location>[^/]+)/publishers/google/models/)(?P<model>[^/:]+):(?P<method>\w+)$")


def encoded_image(width: int, height: int, colour: tuple[int, int, int],
                  mime: str = "image/png") -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(
        buffer, {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}[mime])
    return base64.b64encode(buffer.getvalue()).decode()


def new_private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def write_service_account(path: Path, token_uri: str, key: rsa.RSAPrivateKey) -> Path:
    """A service-account key file as Google issues it, its ``token_uri`` pointing at the fake."""
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path.write_text(json.dumps({
        "type": "service_account", "project_id": PROJECT, "private_key_id": "fake-key-id",
        "private_key": pem, "client_email": CLIENT_EMAIL, "client_id": "1234567890",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": token_uri,
        "universe_domain": "googleapis.com",
    }))
    return path


def error_body(code: int, status: str, message: str,
               details: list[dict[str, Any]] | None = None) -> bytes:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details is not None:
        error["details"] = details
    return orjson.dumps({"error": error})


# --- documented answers that arrive as HTTP 200 (providers.md §B.4) -----------------------------

def usage_metadata(prompt: int = 9) -> dict[str, Any]:
    return {"promptTokenCount": prompt, "totalTokenCount": prompt,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}]}


def prompt_blocked(reason: str = "PROHIBITED_CONTENT",
                   message: str | None = None) -> dict[str, Any]:
    """A blocked prompt: no candidates, ``promptFeedback.blockReason``."""
    feedback: dict[str, Any] = {"blockReason": reason, "safetyRatings": [
        {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}]}
    if message is not None:
        feedback["blockReasonMessage"] = message
    return {"promptFeedback": feedback, "usageMetadata": usage_metadata(),
            "modelVersion": "fake", "responseId": "blocked"}


def finish_blocked(reason: str = "IMAGE_SAFETY",
                   message: str = "Unable to show the generated image.") -> dict[str, Any]:
    """A candidate without parts, stopped by a filter (``content`` has no ``parts``)."""
    return {"candidates": [{"content": {"role": "model"}, "finishReason": reason,
                            "finishMessage": message, "index": 0}],
            "usageMetadata": usage_metadata(), "modelVersion": "fake", "responseId": "stopped"}


def text_only(text: str, finish: str = "STOP") -> dict[str, Any]:
    """The model answered in words only (with ["TEXT", "IMAGE"])."""
    return {"candidates": [{"content": {"role": "model", "parts": [{"text": text}]},
                            "finishReason": finish, "index": 0}],
            "usageMetadata": usage_metadata(), "modelVersion": "fake", "responseId": "text"}


@dataclass
class Reply:
    """A scripted HTTP answer."""

    status: int
    body: bytes | dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    def response(self) -> Response:
        body = self.body if isinstance(self.body, bytes) else orjson.dumps(self.body)
        return Response(body, status_code=self.status, headers=self.headers,
                        media_type="application/json")


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    # generateContent: the user turn's parts in order, ("text", text) or (MIME type, bytes)
    # for each inline image; filled once the parts are checked.
    parts: list[tuple[str, Any]] = field(default_factory=list)

    @property
    def inputs(self) -> list[tuple[str, bytes]]:
        """The inline input images: (MIME type, decoded bytes)."""
        return [part for part in self.parts if part[0] != "text"]

    @property
    def model(self) -> str:
        match = _PATH.match(self.path)
        return match.group("model") if match else ""


Scripted = dict[str, Any] | Reply | Callable[[dict[str, Any]], Any]


@dataclass
class FakeGoogle:
    # Answers for the next calls, first in first out, shared by :generateContent and :predict:
    # a dict (HTTP 200 JSON), a Reply, or a function of the request body returning either.
    script: list[Scripted] = field(default_factory=list)
    # MIME type Gemini answers in unless Vertex's imageOutputOptions asks for another.
    image_mime: str = "image/jpeg"
    # Gemini: repeat the final image part (gemini-3-pro-image does this, billed twice).
    duplicate: bool = False
    # Gemini: interim thought parts (a text and a draft image); default: 3-pro or thinkingConfig.
    thoughts: bool | None = None
    text: str = "Here is the picture you asked for."
    # Imagen: this many of the sampleCount images are removed by the safety filter.
    rai_filtered: int = 0
    # Seconds each generation call takes (concurrency shows in ``max_in_flight``).
    delay: float = 0.0
    # OAuth: lifetime of issued tokens; keys of the service accounts the fake knows.
    token_lifetime: int = 3600
    public_keys: list[rsa.RSAPublicKey] = field(default_factory=list)
    static_tokens: set[str] = field(default_factory=set)

    requests: list[Recorded] = field(default_factory=list)
    token_requests: list[dict[str, Any]] = field(default_factory=list)
    issued: dict[str, float] = field(default_factory=dict)
    in_flight: int = 0
    max_in_flight: int = 0
    calls: int = 0

    def reset(self) -> None:
        """Forget requests and scripts; tokens already issued stay valid."""
        fresh = FakeGoogle(public_keys=self.public_keys, issued=self.issued)
        self.__dict__.update(fresh.__dict__)

    @property
    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/token", self._token, methods=["POST"]),
            Route("/{path:path}", self._api, methods=["POST"]),
        ])

    def generation_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith(":generateContent")]

    # --- OAuth ---------------------------------------------------------------------------------

    async def _token(self, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return _oauth_error("unsupported_grant_type", "Invalid grant_type.")
        claims = self._verify(form.get("assertion", ""))
        if isinstance(claims, str):
            return _oauth_error("invalid_grant", claims)
        self.token_requests.append(claims)
        token = f"fake-token-{len(self.issued) + 1}"
        self.issued[token] = time.monotonic() + self.token_lifetime
        return Response(orjson.dumps({"access_token": token, "expires_in": self.token_lifetime,
                                      "token_type": "Bearer"}), media_type="application/json")

    def _verify(self, assertion: str) -> dict[str, Any] | str:
        try:
            head, payload, signature = assertion.split(".")
            claims = orjson.loads(_unb64(payload))
        except ValueError:
            return "Invalid JWT."
        if not any(_signed_by(key, f"{head}.{payload}".encode(), _unb64(signature))
                   for key in self.public_keys):
            return "Invalid JWT Signature."
        if claims.get("aud") != TOKEN_AUDIENCE or claims.get("iss") != CLIENT_EMAIL:
            return "Invalid JWT: audience or issuer."
        if CLOUD_PLATFORM not in str(claims.get("scope", "")).split():
            return "Invalid JWT: scope."
        if claims.get("exp", 0) < time.time():
            return "Invalid JWT: Token must be a short-lived token."
        return claims

    def _authorised(self, headers: dict[str, str], vertex: bool) -> Response | None:
        if not vertex:
            if headers.get("x-goog-api-key") == API_KEY:
                return None
            return Reply(400, error_body(400, "INVALID_ARGUMENT",
                                         "API key not valid. Please pass a valid API key.",
                                         [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                           "reason": "API_KEY_INVALID",
                                           "domain": "googleapis.com"}])).response()
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme == "Bearer" and (token in self.static_tokens or
                                   self.issued.get(token, 0) > time.monotonic()):
            return None
        return Reply(401, error_body(
            401, "UNAUTHENTICATED", "Request had invalid authentication credentials. Expected "
            "OAuth 2 access token, login cookie or other valid authentication credential.")
        ).response()

    # --- the APIs ------------------------------------------------------------------------------

    async def _api(self, request: Request) -> Response:
        path = request.url.path
        match = _PATH.match(path)
        if match is None:
            return Reply(404, error_body(404, "NOT_FOUND", f"Unknown path {path}.")).response()
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return Reply(400, error_body(400, "INVALID_ARGUMENT",
                                         "Invalid JSON payload received.")).response()
        headers = dict(request.headers)
        self.requests.append(Recorded(path, headers, body))
        vertex = match.group("vversion") is not None
        refused = self._authorised(headers, vertex)
        if refused is not None:
            return refused
        if vertex and match.group("project") != PROJECT:
            return Reply(403, error_body(403, "PERMISSION_DENIED", "Permission denied on "
                                         f"project {match.group('project')}.")).response()
        model, method = match.group("model"), match.group("method")
        known = GEMINI_MODELS if method == "generateContent" else IMAGEN_MODELS
        if method not in ("generateContent", "predict") or model not in known:
            version = match.group("version") or match.group("vversion")
            return Reply(404, error_body(404, "NOT_FOUND", f"models/{model} is not found for "
                                         f"API version {version}, or is not supported for "
                                         f"{method}.")).response()
        if method == "generateContent":
            problem = _read_parts(body, self.requests[-1], model)
            if problem is not None:
                return _invalid(problem)
        self.calls += 1
        number = self.calls
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.script:
                answer = self.script.pop(0)
                if callable(answer):
                    answer = answer(body)
                return answer.response() if isinstance(answer, Reply) else _json(answer)
            if method == "generateContent":
                return self._generate(model, body, vertex, number)
            return self._predict(body, vertex)
        finally:
            self.in_flight -= 1

    def _generate(self, model: str, body: dict[str, Any], vertex: bool,
                  number: int) -> Response:
        contents = body.get("contents")
        if not (isinstance(contents, list) and contents and contents[0].get("role") == "user"):
            return _invalid("Please use a valid role: user, model.")
        config = body.get("generationConfig", {})
        if config.get("candidateCount", 1) != 1:
            return _invalid("Multiple candidates is not enabled for this model.")
        image_config = config.get("imageConfig", {})
        if "imageOutputOptions" in image_config and not vertex:
            return _invalid('Invalid JSON payload received. Unknown name "imageOutputOptions" '
                            'at \'generation_config.image_config\': Cannot find field.')
        modalities = config.get("responseModalities", ["TEXT", "IMAGE"])
        width, height = GEMINI_1K[image_config.get("aspectRatio", "1:1")]
        scale = TIER_SCALE[image_config.get("imageSize", "1K")]
        width, height = int(width * scale), int(height * scale)
        mime = image_config.get("imageOutputOptions", {}).get("mimeType", self.image_mime)
        colour = (40 * number % 256, 120, 200)
        thoughts = self.thoughts
        if thoughts is None:
            thoughts = "thinkingConfig" in config or "3-pro" in model

        parts: list[dict[str, Any]] = []
        if thoughts:
            parts.append({"text": "Sketching the composition first.", "thought": True})
            parts.append({"inlineData": {"mimeType": "image/jpeg", "data": encoded_image(
                64, 64, (1, 2, 3), "image/jpeg")}, "thought": True})
        if "TEXT" in modalities:
            parts.append({"text": self.text})
        final = {"inlineData": {"mimeType": mime,
                                "data": encoded_image(width, height, colour, mime)},
                 "thoughtSignature": "c2lnbmF0dXJl"}
        parts.append(final)
        if self.duplicate:
            parts.append(final)
        outputs = [{"modality": "IMAGE", "tokenCount": 1120}]
        if "TEXT" in modalities:
            outputs.append({"modality": "TEXT", "tokenCount": 10})
        usage = {**usage_metadata(), "candidatesTokenCount": sum(o["tokenCount"] for o in outputs),
                 "candidatesTokensDetails": outputs}
        if thoughts:
            usage["thoughtsTokenCount"] = 150
        return _json({"candidates": [{"content": {"role": "model", "parts": parts},
                                      "finishReason": "STOP", "index": 0}],
                      "usageMetadata": usage, "modelVersion": model,
                      "responseId": f"fake-{number}"})

    def _predict(self, body: dict[str, Any], vertex: bool) -> Response:
        params = body.get("parameters", {})
        if not vertex:
            for name in ("seed", "negativePrompt", "addWatermark", "enhancePrompt"):
                if name in params:
                    return _invalid(f"{name} parameter is not supported in Gemini API.")
        if "seed" in params and params.get("addWatermark", True):
            return _invalid("Seed is not supported when watermark is enabled.")
        count = params.get("sampleCount", 4)
        mime = params.get("outputOptions", {}).get("mimeType", "image/png")
        width, height = IMAGEN_1K[params.get("aspectRatio", "1:1")]
        scale = TIER_SCALE[params.get("sampleImageSize", "1K")]
        predictions: list[dict[str, Any]] = []
        for index in range(count):
            if index >= count - self.rai_filtered:
                predictions.append({"raiFilteredReason": "Your current safety filter threshold "
                                    "filtered out a generated image. You will not be charged "
                                    "for blocked images. Support codes: 56562880"})
                continue
            item = {"mimeType": mime, "bytesBase64Encoded": encoded_image(
                int(width * scale), int(height * scale), (30 * index, 90, 160), mime)}
            if params.get("enhancePrompt"):
                item["prompt"] = "A detailed, enhanced version of: " + \
                    body["instances"][0]["prompt"]
            predictions.append(item)
        return _json({"predictions": predictions})


def _read_parts(body: dict[str, Any], recorded: Recorded, model: str) -> str | None:
    """Check the user turn's parts and record them; what is wrong, or None."""
    contents = body.get("contents")
    turn = contents[0] if isinstance(contents, list) and contents else None
    parts = turn.get("parts") if isinstance(turn, dict) else None
    if not isinstance(parts, list) or not parts:
        return None  # _generate answers the missing turn
    for index, part in enumerate(parts):
        if not isinstance(part, dict):
            return f"Invalid value at 'contents[0].parts[{index}]': not an object."
        inline = part.get("inlineData", part.get("inline_data"))
        if inline is None:
            if not isinstance(part.get("text"), str):
                return f"contents[0].parts[{index}] has neither text nor inlineData."
            recorded.parts.append(("text", part["text"]))
            continue
        where = f"contents[0].parts[{index}].inline_data"
        mime = inline.get("mimeType", inline.get("mime_type")) if isinstance(inline, dict) \
            else None
        if mime not in INPUT_MIMES:
            return f"Unsupported MIME type at '{where}.mime_type': {mime}"
        try:
            data = base64.b64decode(str(inline.get("data", "")), validate=True)
        except (binascii.Error, ValueError):
            return (f"Invalid value at '{where}.data' (TYPE_BYTES), Base64 decoding failed for "
                    f'"{str(inline.get("data"))[:16]}"')
        if not data:
            return f"Invalid value at '{where}.data': empty."
        expected = INPUT_MIMES[mime]
        if expected is not None:
            try:
                with Image.open(io.BytesIO(data)) as image:
                    image.load()
                    found = image.format
            except (OSError, ValueError):
                return f"Unable to process input image at '{where}': not a valid image."
            if found != expected:
                return f"Unable to process input image at '{where}': {mime} holds {found}."
        recorded.parts.append((mime, data))
    limit = MAX_INPUT_IMAGES.get(model, MAX_INPUT_IMAGES_DEFAULT)
    if len(recorded.inputs) > limit:
        return f"Too many input images: {len(recorded.inputs)} (at most {limit} for {model})."
    return None


def _json(body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


def _invalid(message: str) -> Response:
    return Reply(400, error_body(400, "INVALID_ARGUMENT", message)).response()


def _oauth_error(error: str, description: str) -> Response:
    return Response(orjson.dumps({"error": error, "error_description": description}),
                    status_code=400, media_type="application/json")


def _signed_by(key: rsa.RSAPublicKey, message: bytes, signature: bytes) -> bool:
    try:
        key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

