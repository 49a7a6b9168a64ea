"""What every provider adapter is: something that turns one call into a stream of events.

An adapter is built once per served model with what it needs of that model (:class:`ModelSpec`)
and its own settings. Each attempt at a job hands it a :class:`Call`: the job's id and kind and
the request bound to this model (input images included). It never sees the job, the served-model
table or the caller: it does not learn whether the client wanted JSON, SSE or progress.

**One way to fail:** raise :class:`~proxy.core.errors.GatewayError`. Retries, fallbacks and
circuit breakers act on what is raised (``transient`` errors are retried while nothing has
reached the client); the job runner turns it into the ``Failed`` event writers see. An adapter
never yields ``Failed`` itself (the retry layer treats one as raised, to be safe).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from proxy.config import TimeoutConfig
from proxy.core.events import Event
from proxy.models.rules import ModelRules
from proxy.request.bound import ImageRequest
from proxy.upstream.client import UpstreamClient

JobKind = Literal["generation", "edit"]


class ProviderSettings(BaseModel):
    """Base for each provider's own config keys; unknown keys are errors that name the key."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """The served model an adapter is built for: what it needs of it, nothing more."""

    name: str  # the name clients use, for messages
    upstream_model: str  # the name the upstream knows
    timeout: TimeoutConfig
    rules: ModelRules


@dataclass(frozen=True, slots=True)
class Call:
    """One attempt at a job: all an adapter knows of it."""

    job_id: str
    kind: JobKind
    request: ImageRequest  # bound to this adapter's model; input images and mask included
    # The caller writes a large JSON answer while the upstream still sends it: an adapter that
    # can may hand each image's base64 on in ``ImagePiece`` events as it arrives.
    pieces: bool = False


@dataclass(frozen=True)
class ProviderContext:
    """What the gateway lends every adapter."""

    http: UpstreamClient
    # Relative paths in a model entry (a ComfyUI workflow file, say) are relative to this.
    config_dir: Path


class Provider(ABC):
    name: ClassVar[str]
    settings_class: ClassVar[type[ProviderSettings]] = ProviderSettings

    def __init__(self, model: ModelSpec, settings: ProviderSettings,
                 context: ProviderContext) -> None:
        self.model = model
        self.settings = settings
        self.context = context
        self.http = context.http

    @classmethod  # noqa: B027 - optional hook; most providers need no extra checks
    def check(cls, settings: ProviderSettings, config_dir: Path) -> None:
        """Checks that need more than the settings' types (files to read, graphs to inspect).

        Raise ``ValueError("<setting>: <problem>")``; it is reported at the line of that
        setting. Called when the model table is built, before any adapter is.
        """

    @classmethod
    def narrow_rules(cls, rules: ModelRules, settings: ProviderSettings,
                     config_dir: Path) -> ModelRules:
        """The model's rules as these settings leave them: what a backend or a workflow cannot
        take is taken out here, once, so that binding refuses (or drops and reports) it and
        ``GET /v1/models`` does not offer it. Called after :meth:`check` succeeded."""
        return rules

    @abstractmethod
    def generate(self, call: Call) -> AsyncIterator[Event]:
        """Run one attempt: yield progress, partial images, images, then ``Completed``; raise
        ``GatewayError`` to fail."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most adapters hold nothing
        """Release what the adapter holds (the shared HTTP client is closed by the app)."""

    @property
    def upstream_key(self) -> str:
        """Which upstream this is, for its circuit breaker: provider and address."""
        where = getattr(self.settings, "base_url", None) or getattr(self.settings, "endpoint",
                                                                     None)
        return f"{self.name}:{where or ''}"
