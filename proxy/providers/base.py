"""What every provider adapter is: something that turns a job into a stream of events.

An adapter knows only its upstream's wire format. It never learns whether the caller wanted JSON,
SSE or progress; the writers consume its events. Errors are yielded as ``Failed`` (or raised as
``GatewayError``, which the job runner turns into ``Failed``) so a stream can end cleanly.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ConfigDict

from proxy.config import ModelConfig
from proxy.events import Event

if TYPE_CHECKING:
    from proxy.jobs import Job
    from proxy.upstream import UpstreamClient


class ProviderSettings(BaseModel):
    """Base for each provider's own config keys; unknown keys are errors that name the key."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class ProviderContext:
    """What the gateway lends every adapter."""

    http: UpstreamClient
    # Relative paths in a model entry (a ComfyUI workflow file, say) are relative to this.
    config_dir: Path


class Provider(ABC):
    name: ClassVar[str]
    settings_class: ClassVar[type[ProviderSettings]] = ProviderSettings

    def __init__(
        self, model: ModelConfig, settings: ProviderSettings, context: ProviderContext
    ) -> None:
        self.model = model
        self.settings = settings
        self.context = context
        self.http = context.http

    @classmethod  # noqa: B027 - optional hook; most providers need no extra checks
    def check(cls, settings: ProviderSettings, config_dir: Path) -> None:
        """Checks that need more than the settings' types (files to read, graphs to inspect).

        Raise ``ValueError("<setting>: <problem>")``; the config loader reports it at the line
        of that setting. Called at start-up, before any adapter is built.
        """

    @abstractmethod
    def generate(self, job: Job) -> AsyncIterator[Event]:
        """Run the job; yield progress, partial images, images, then ``Completed`` or ``Failed``."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most adapters hold nothing
        """Release what the adapter holds (the shared HTTP client is closed by the app)."""
