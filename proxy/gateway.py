"""The running gateway's shared state: configuration, served models, keys, progress, upstreams."""

from __future__ import annotations

from dataclasses import dataclass

from proxy.auth import KeyRing
from proxy.config import GatewayConfig
from proxy.fetching import ImageFetcher
from proxy.models.served import ModelTable
from proxy.progress.hub import ProgressHub
from proxy.progress.latency import LatencyBook
from proxy.progress.store import MemorySnapshotStore
from proxy.upstream import UpstreamClient


@dataclass
class Gateway:
    config: GatewayConfig
    http: UpstreamClient
    models: ModelTable
    keys: KeyRing
    hub: ProgressHub
    fetcher: ImageFetcher

    @classmethod
    def from_config(cls, config: GatewayConfig) -> Gateway:
        http = UpstreamClient()
        store = MemorySnapshotStore(retention=config.jobs.retention_seconds)
        return cls(config=config, http=http, models=ModelTable(config, http),
                   keys=KeyRing(config.keys), hub=ProgressHub(store, LatencyBook()),
                   fetcher=ImageFetcher(config.fetch))

    async def start(self) -> None:
        await self.http.start()
        await self.fetcher.start()

    async def aclose(self) -> None:
        await self.fetcher.aclose()
        await self.models.aclose()
        await self.hub.store.aclose()
        await self.http.aclose()
