"""The config keys of a ``comfyui`` model entry (see ``docs/comfyui.md``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from proxy.providers.base import ProviderSettings

# The gateway parameters a workflow can take, each injected into one or more node inputs.
PARAMETERS = ("prompt", "negative_prompt", "seed", "width", "height", "batch_size", "steps")
# What only an edit workflow takes: the uploaded image's and mask's names (``LoadImage.image``,
# ``LoadImageMask.image``) and the sampler's denoise.
EDIT_PARAMETERS = (*PARAMETERS, "image", "mask", "denoise")

# One injection target: ``[node_id, input_name]``.
Target = tuple[str, str]


def targets(value: Any) -> Any:
    """``["6", "text"]`` or ``[["6", "text"], ["7", "text"]]`` -> a list of pairs; node ids
    written as YAML integers become strings, as in ComfyUI's API format."""
    if not isinstance(value, (list, tuple)) or not value:
        return value
    pairs = [value] if not isinstance(value[0], (list, tuple)) else list(value)
    out = []
    for pair in pairs:
        if isinstance(pair, (list, tuple)) and len(pair) == 2 and isinstance(pair[0], int):
            pair = [str(pair[0]), pair[1]]
        out.append(pair)
    return out


def _normalise(value: Any, known: tuple[str, ...], hint: str = "") -> Any:
    if not isinstance(value, dict):
        return value
    unknown = sorted(set(value) - set(known))
    if unknown:
        extra = hint if set(unknown) & set(EDIT_PARAMETERS) else ""
        raise ValueError(f"unknown parameter(s) {', '.join(unknown)}; "
                         f"known: {', '.join(known)}{extra}")
    return {name: targets(pairs) for name, pairs in value.items()}


class ServerEntry(BaseModel):
    """One ComfyUI server of a model's pool: its URL, and how many of this gateway's jobs it
    may hold at once (waiting in its queue or running); None: no limit."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(pattern=r"^https?://[^/?#]+")
    max_concurrent: int | None = Field(None, ge=1, le=10000)


class ComfyUISettings(ProviderSettings):
    # The ComfyUI server, e.g. ``http://127.0.0.1:8188`` (the websocket URL is derived from it).
    # One server: ``base_url``; several behind the one model: ``servers`` (not both).
    base_url: str | None = Field(None, pattern=r"^https?://[^/?#]+")
    # The pool: each entry a URL, or ``{url, max_concurrent}``. Each job goes to the server
    # with the least work queued; a server failing its health checks is left out until it
    # answers again.
    servers: list[ServerEntry] = Field(default_factory=list)
    # Jobs of this gateway one server may hold at once, for servers that set no
    # ``max_concurrent`` of their own (and for ``base_url``); None: no limit.
    max_concurrent_per_server: int | None = Field(None, ge=1, le=10000)
    # Seconds between health checks of every server (``GET /system_stats`` and the queue's
    # length from ``GET /prompt``), run in the background while the model serves.
    health_interval: float = Field(10.0, gt=0, le=3600)
    # A built-in workflow name (``sdxl_text_to_image``) or the path of an API-format JSON file;
    # relative paths are relative to the configuration file's folder.
    workflow: str = Field("sdxl_text_to_image", min_length=1)
    # Gateway parameter -> ``[node_id, input_name]`` or a list of such pairs. A built-in workflow
    # brings its own map; entries here override it parameter by parameter.
    inputs: dict[str, list[Target]] = Field(default_factory=dict)
    # Request quality -> sampler steps; used only when ``steps`` is mapped.
    quality_steps: dict[str, int] = Field(default_factory=dict)
    # Size used when the request has none (or ``auto``).
    default_size: str = Field("1024x1024", pattern=r"^[1-9][0-9]{0,4}x[1-9][0-9]{0,4}$")
    # Only this node's images are the result; default: every node that reports images.
    output_node: str | None = None
    # Sent with every request to ComfyUI (HTTP and websocket), e.g. a reverse proxy's auth.
    headers: dict[str, str] = Field(default_factory=dict)
    # Seconds between ``/history`` polls when the websocket is lost mid-job.
    poll_interval: float = Field(1.0, gt=0, le=60)
    # How long polls may keep failing (server restarting, a network blip) before the job
    # fails; every successful answer starts the window again.
    poll_grace: float = Field(10.0, ge=0, le=600)
    # Edits (``/images/edits``): the workflow run for them, a built-in name or a path like
    # ``workflow``; without one the model refuses edits.
    edit_workflow: str | None = Field(None, min_length=1)
    # The edit workflow's injection map (it must map ``image``); overrides a built-in's map.
    edit_inputs: dict[str, list[Target]] = Field(default_factory=dict)
    # The sampler's denoise for edits, when the edit workflow maps ``denoise``; default: the
    # built-in workflow's (0.75 image-to-image, 1.0 inpaint), else 0.75.
    edit_denoise: float | None = Field(None, gt=0, le=1)
    # ComfyUI input subfolder that edit uploads go to ("" = the input folder itself).
    upload_subfolder: str = "image-proxy"

    @field_validator("servers", mode="before")
    @classmethod
    def _server_urls(cls, value: Any) -> Any:
        """``- http://gpu-1:8188`` is short for ``- {url: http://gpu-1:8188}``."""
        if not isinstance(value, list):
            return value
        return [{"url": item} if isinstance(item, str) else item for item in value]

    @model_validator(mode="after")
    def _one_way_to_name_servers(self) -> ComfyUISettings:
        if (self.base_url is None) == (not self.servers):
            raise ValueError("set base_url (one ComfyUI server) or servers (a pool), not "
                             + ("both" if self.base_url else "neither"))
        urls = [server.url.rstrip("/") for server in self.pool()]
        if len(set(urls)) != len(urls):
            raise ValueError("servers: the same URL is listed twice")
        return self

    def pool(self) -> list[ServerEntry]:
        """Every server this model runs on, each with its own limit."""
        if self.base_url is not None:
            return [ServerEntry(url=self.base_url, max_concurrent=self.max_concurrent_per_server)]
        return [server if server.max_concurrent is not None else
                server.model_copy(update={"max_concurrent": self.max_concurrent_per_server})
                for server in self.servers]

    @field_validator("inputs", mode="before")
    @classmethod
    def _normalise_inputs(cls, value: Any) -> Any:
        return _normalise(value, PARAMETERS, hint=" (image, mask and denoise belong in "
                                                   "edit_inputs)")

    @field_validator("edit_inputs", mode="before")
    @classmethod
    def _normalise_edit_inputs(cls, value: Any) -> Any:
        return _normalise(value, EDIT_PARAMETERS)

    @field_validator("quality_steps")
    @classmethod
    def _positive_steps(cls, value: dict[str, int]) -> dict[str, int]:
        for quality, steps in value.items():
            if not 1 <= steps <= 10000:
                raise ValueError(f"steps for quality {quality!r} must be between 1 and 10000")
        return value

    @field_validator("upload_subfolder")
    @classmethod
    def _relative_folder(cls, value: str) -> str:
        if value.startswith("/") or ".." in value.split("/") or "\\" in value:
            raise ValueError("must be a relative folder inside ComfyUI's input folder, "
                             "without '..' or backslashes")
        return value.rstrip("/")

    @field_validator("output_node", mode="before")
    @classmethod
    def _node_id(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value
