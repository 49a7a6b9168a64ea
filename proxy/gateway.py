"""The running gateway's shared state: configuration, served models, the upstream client."""

from __future__ import annotations

from dataclasses import dataclass

from proxy.config import GatewayConfig
from proxy.models.served import ModelTable
from proxy.upstream import UpstreamClient


@dataclass
class Gateway:
    config: GatewayConfig
    http: UpstreamClient
    models: ModelTable

    @classmethod
    def from_config(cls, config: GatewayConfig) -> Gateway:
        http = UpstreamClient()
        return cls(config=config, http=http, models=ModelTable(config, http))

    async def start(self) -> None:
        await self.http.start()

    async def aclose(self) -> None:
        await self.models.aclose()
        await self.http.aclose()
