"""The shape of the configuration file, as pydantic models.

Provider-specific keys (``base_url``, ``api_key``, ``workflow`` …) live next to the common ones in a
model entry. This module knows no provider, rule or price: a model's provider settings, ``rules``
and ``pricing`` are checked once, where the model table is built (:mod:`proxy.routing.build`), and
reported at their lines like everything else.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)

from proxy.config.fetch import FetchSettings
from proxy.config.storage import LocalStoreSettings, StorageSettings


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TimeoutConfig(Strict):
    """Seconds. Image models are slow: gpt-image-2 at high quality can take over two minutes."""

    connect: float = Field(10.0, gt=0)
    # Until the response headers arrive, and the longest silence allowed mid-stream: a non-streamed
    # OpenAI image call sends nothing until the image is done.
    first_byte: float = Field(600.0, gt=0)
    total: float = Field(900.0, gt=0)


def _mount(path: str) -> str:
    path = path.strip().rstrip("/")
    if path and not path.startswith("/"):
        raise ValueError(f"base path {path!r} must start with '/'")
    return path


class ServerConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    # Where the endpoints are mounted: OpenAI's /v1 and the paths of the published APIs the
    # gateway mirrors ("" is the root: /images/generations).
    base_paths: list[str] = Field(default_factory=lambda: ["/v1", "", "/api/v1", "/v3"])
    # The response_format a mount uses when a request names none (streams are always base64):
    # the API published at the root answers with image URLs.
    response_format_by_path: dict[str, Literal["url", "b64_json"]] = Field(
        default_factory=lambda: {"": "url"})
    # Largest JSON request body accepted (bytes); edits carry base64 images, so it is generous.
    max_body_bytes: int = Field(64 * 1024 * 1024, gt=0)
    # Largest multipart edit upload accepted (bytes): up to 16 images of 50 MB each are allowed
    # by OpenAI; this caps the request as a whole.
    max_upload_bytes: int = Field(200 * 1024 * 1024, gt=0)
    # On SIGTERM the gateway drains for at most this long: it keeps listening, refuses new
    # image requests (503 server_shutting_down, retry-after) and answers /readyz 503, while the
    # running jobs go on. It stops as soon as they are done; those still running at the end are
    # ended (streams get an error event, jobs are marked failed).
    shutdown_grace: float = Field(25.0, ge=0)
    # Seconds between SSE keep-alive comments while a stream has nothing to send.
    sse_keepalive: float = Field(15.0, gt=0)
    # A gateway without keys serves only loopback unless this says it may serve anyone.
    allow_open: bool = False
    # serve --workers N on Linux: each worker listens on a socket of its own on the port
    # (SO_REUSEPORT), and the kernel spreads new connections over them; with one shared socket
    # (the default) whichever worker is awake takes what arrives, all of a burst at times. The
    # cost: a worker that stops (drained on SIGTERM) resets the connections still waiting in
    # its own queue, unless net.ipv4.tcp_migrate_req=1 hands them to the other workers.
    reuse_port: bool = False
    # Other origins whose pages may use the Socket.IO progress channel ("*" for any).
    cors_origins: list[str] = Field(default_factory=list)

    @field_validator("base_paths")
    @classmethod
    def _normalise_paths(cls, paths: list[str]) -> list[str]:
        out = [_mount(path) for path in paths]
        if len(set(out)) != len(out):
            raise ValueError("a base path is listed twice")
        return out

    @field_validator("response_format_by_path")
    @classmethod
    def _normalise_defaults(cls, defaults: dict[str, str]) -> dict[str, str]:
        return {_mount(path): value for path, value in defaults.items()}


# Model keys a providers: section may set for all of that provider's models.
PROVIDER_WIDE = frozenset({"timeout", "retries", "expected_seconds", "max_concurrent_jobs",
                           "on_disconnect"})

# What a client that hangs up does to its job when it chose the job id (X-Job-Id or
# Idempotency-Key): ``cancel`` stops it (the upstream call too, which saves money); ``finish``
# lets it run on, its answer kept for a re-attach (``GET {base}/images/jobs/{id}/events``) or a
# repeat of the request. A job whose id the gateway made is always cancelled: nobody could
# find it again.
OnDisconnect = Literal["cancel", "finish"]


class ModelConfig(BaseModel):
    """One served model. Keys not listed here belong to the provider's own settings."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1)
    provider: str = Field(min_length=1)
    upstream_model: str | None = None
    aliases: list[str] = Field(default_factory=list)
    # Overrides of the catalog's rules for this model (checked where the model table is built).
    rules: dict[str, Any] | None = None
    # Parameters the model cannot honour: reject with 400 (default) or drop them and say so in the
    # ``x-dropped-params`` response header.
    drop_unsupported: bool | None = None
    timeout: TimeoutConfig = Field(default_factory=TimeoutConfig)
    # Models to try, in order, when this one fails with a transient error (after its retries)
    # or its circuit is open.
    fallbacks: list[str] = Field(default_factory=list)
    # Overrides reliability.retries for this model.
    retries: int | None = Field(None, ge=0, le=10)
    # Jobs of this model running at once in this process; past it 503 ``model_busy`` with a
    # ``retry-after``. None: only the gateway-wide limit applies.
    max_concurrent_jobs: int | None = Field(None, ge=1)
    # What a job on this model usually takes (seconds), until the gateway has measured it:
    # the basis of estimated progress for backends that report none.
    expected_seconds: float | None = Field(None, gt=0)
    # A client-chosen job on this model whose client hangs up: cancelled or finished (see
    # ``OnDisconnect``). None: the key's setting, else ``jobs.on_disconnect``.
    on_disconnect: OnDisconnect | None = None
    # Prices for this model (same shape as a pricing.yaml entry), e.g. a self-hosted model's
    # running cost; replaces the published prices the gateway ships.
    pricing: dict[str, Any] | None = None

    @property
    def provider_settings(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    def inheriting(self, shared: dict[str, Any]) -> ModelConfig:
        """This entry with the model keys its provider's section sets (``timeout``,
        ``retries``, ``expected_seconds``) where the entry does not set them itself."""
        changes = {k: v for k, v in shared.items()
                   if k in PROVIDER_WIDE and k not in self.model_fields_set}
        if not changes:
            return self
        return ModelConfig.model_validate({**self.model_dump(exclude_unset=True),
                                           **(self.model_extra or {}), **changes})


    def resolved_upstream_model(self) -> str:
        if self.upstream_model:
            return self.upstream_model
        prefix = f"{self.provider}/"
        return self.name[len(prefix):] if self.name.startswith(prefix) else self.name


CAPABILITIES = ("images", "images:edit", "admin")


class KeyConfig(Strict):
    """A gateway key. Only its SHA-256 is stored: ``image-proxy new-key`` prints both."""

    name: str = Field(min_length=1)
    key_sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")
    # images: generate; images:edit: edit; admin: everything, and everyone's usage and jobs.
    capabilities: list[Literal["images", "images:edit", "admin"]] = Field(
        default_factory=lambda: ["images", "images:edit"])
    # Model names (or globs: "openai/*") this key may use.
    models: list[str] = Field(default_factory=lambda: ["*"])
    requests_per_minute: int | None = Field(None, ge=1)
    concurrent_jobs: int | None = Field(None, ge=1)
    # Spend allowed per period (USD); past it, requests get 429 insufficient_quota.
    budget_usd: float | None = Field(None, ge=0)
    budget_period: Literal["day", "month", "total"] = "month"
    # This key's client-chosen jobs when their client hangs up (see ``OnDisconnect``); wins
    # over the model's setting. None: the model's, else ``jobs.on_disconnect``.
    on_disconnect: OnDisconnect | None = None


class JobsConfig(Strict):
    # How long a job's snapshot stays readable after its last update (seconds).
    retention_seconds: float = Field(3600.0, gt=0)
    # Jobs this process runs at once; past it a new job is refused at once with 503
    # ``gateway_busy`` and a ``retry-after`` (never parked out of sight). "auto": as many as
    # its open-file limit allows (each job holds a client and an upstream connection).
    max_concurrent: int | Literal["auto"] = Field("auto")
    # How long a finished job whose client chose its id keeps its answer (images, error or
    # stream events) for repeats of the request and re-attaching streams: its id stays
    # reserved that long. In memory, or in Redis with ``redis_url``: size it for the images.
    replay_seconds: float = Field(600.0, gt=0)
    # A client-chosen job whose client hangs up, unless its key or model says otherwise.
    on_disconnect: OnDisconnect = "cancel"

    @field_validator("max_concurrent")
    @classmethod
    def _positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("must be at least 1 (or \"auto\")")
        return value


class UpstreamConfig(Strict):
    """The connection pool every adapter shares. It never decides how many jobs run (admission
    does: ``jobs.max_concurrent``, a model's ``max_concurrent_jobs``, a key's
    ``concurrent_jobs``), so by default it has no limit: a request is never parked waiting for
    a connection nobody can see."""

    # Open connections to all upstreams together, and to any one host:port; 0 = no limit.
    max_connections: int = Field(0, ge=0)
    max_connections_per_host: int = Field(0, ge=0)
    # Idle keep-alive connections are closed after this many seconds.
    keepalive_timeout: float = Field(15.0, gt=0)


class ReliabilityConfig(Strict):
    """Retries of transient upstream failures (refused, 429, 5xx before any work), with
    jittered exponential backoff, and a circuit breaker per upstream."""

    retries: int = Field(2, ge=0, le=10)
    backoff_base: float = Field(0.5, ge=0)
    backoff_max: float = Field(8.0, ge=0)
    # A longer retry-after than this is not waited for: the next fallback, or the 429, instead.
    retry_after_max: float = Field(30.0, ge=0)
    # Upstream failures in a row that open its circuit; seconds it stays open before one
    # request probes it (proxy/jobs/breaker.py).
    circuit_failures: int = Field(5, ge=1)
    circuit_cooldown: float = Field(30.0, gt=0)


class UsageConfig(Strict):
    # Record every request in the usage ledger: SQLite in the data directory, or the PostgreSQL
    # database at database_url.
    enabled: bool = True
    # postgresql://user:password@host:5432/dbname (or postgres://): one ledger, and so one
    # spend per key, for every instance that names it. ${VAR} keeps the password out of the
    # file. A secret: never shown in logs, errors or the config's repr.
    database_url: SecretStr | None = None
    # The SQLite ledger begins at most one commit (one fsync) per this many seconds under load,
    # the records of the interval sharing it; a record after a quiet spell is written at once.
    # Answers never wait for it. 0: commit whatever is queued as soon as the last commit ends.
    commit_interval: float = Field(0.050, ge=0, le=1)

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, url: SecretStr | None) -> SecretStr | None:
        if url is None:
            return None
        # The messages never quote the value: it may hold a password.
        try:
            parts = urlsplit(url.get_secret_value())
            parts.port  # noqa: B018 (a bad port raises here)
        except ValueError:
            raise ValueError("not a valid URL (the value is not shown: it may hold a "
                             "password)") from None
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError("must be a postgresql:// (or postgres://) URL")
        return url


class FleetConfig(Strict):
    """Several instances sharing Redis (``redis_url``): how running jobs are owned, and how long
    a call to the shared store may take (docs/fleet.md)."""

    # A running job's lease: the instance running it renews all its leases every third of this.
    # When an instance stops renewing (killed, frozen, cut off from Redis), any other instance
    # ends its jobs (failed, ``instance_lost``) and their keys' concurrency slots free themselves,
    # within about 1⅓ of this.
    lease_seconds: float = Field(10.0, ge=0.5, le=3600)
    # Seconds one call to the shared store may take to connect, and to answer, before the
    # gateway treats the store as down (a job never waits longer for a progress write). At most
    # a third of lease_seconds, so a renewal always fits in its interval.
    store_timeout: float = Field(1.0, gt=0, le=30)
    # This instance's name in leases and logs; default: host name and process id.
    instance_id: str | None = Field(None, min_length=1, max_length=200)
    # Async jobs (``Prefer: respond-async``) go to a queue every instance shares (a Redis
    # Stream) and any instance runs them: this many at once per instance (each also takes a
    # place of ``jobs.max_concurrent``). Image jobs mostly wait on their upstream, so a few
    # dozen cost little; fewer leave more of the queue to the other instances.
    async_jobs: int = Field(16, ge=1, le=10000)
    # Unfinished async jobs the queue may hold (fleet-wide, each with its request and input
    # images); past it a new one gets 503 ``queue_full`` with a retry-after.
    async_queue_max: int = Field(1000, ge=1)

    @model_validator(mode="after")
    def _timeout_fits(self) -> FleetConfig:
        if self.store_timeout > self.lease_seconds / 3:
            raise ValueError(f"store_timeout ({self.store_timeout:g} s) must be at most a third "
                             f"of lease_seconds ({self.lease_seconds:g} s)")
        return self


class LimitsConfig(Strict):
    # While the shared store (Redis) cannot be reached, a key's rate and concurrency limits
    # cannot be checked. fail_open (default): admit the job (logged once per outage); the
    # per-process capacity limits and spend budgets still hold. fail_closed: refuse it with 503
    # limits_unavailable and a retry-after. Keys without such limits are never refused for it.
    on_store_failure: Literal["fail_open", "fail_closed"] = "fail_open"


class LogsConfig(Strict):
    """What the log lines may carry beyond the defaults (the format is one JSON object a line)."""

    # The job's prompt in its log line (up to PROMPT_LOGGED characters, secrets redacted). Off:
    # prompts are the users' words, and often more sensitive than anything else in the log.
    prompts: bool = False


class MemoryConfig(Strict):
    """Giving memory back after a burst of jobs (:mod:`proxy.service.memory`). The allocator
    settings apply on glibc Linux only; elsewhere they are ignored."""

    # Once no job has run for this many seconds, the process collects the garbage a burst left
    # in reference cycles and trims the allocator's free memory back to the system; it does so
    # again after 3, 9, 27 ... times as long while it stays idle (``idle_passes`` in all), for
    # what is freed later (pooled upstream connections close after upstream.keepalive_timeout).
    # 0: never.
    idle_seconds: float = Field(5.0, ge=0)
    idle_passes: int = Field(4, ge=1, le=10)
    # glibc's M_MMAP_THRESHOLD in bytes: blocks at least this big get their own mapping,
    # returned to the system when freed (fixed: glibc's own threshold creeps up to 32 MiB as
    # big blocks are freed, and they then stay in the heap). null: glibc's dynamic default.
    mmap_threshold: int | None = Field(2 * 1024 * 1024, ge=0, le=32 * 1024 * 1024)
    # glibc's M_TRIM_THRESHOLD in bytes: free memory at the top of the heap past this is
    # returned at once (8 MiB: a large answer passed through in pieces frees and takes back
    # blocks at the top all the time; the idle passes return the rest). null: glibc's default
    # (which also creeps up with the mmap threshold).
    trim_threshold: int | None = Field(8 * 1024 * 1024, ge=0)
    # The allocator of the gateway's objects (PYTHONMALLOC, and LD_PRELOAD for jemalloc, set by
    # `serve`, which starts itself again for it; a PYTHONMALLOC in the environment wins).
    # pymalloc: CPython's own, cheapest per object, but a 1 MiB arena of it goes back only once
    # every object in it is gone, so the few hundred objects that outlive a burst (mostly dead
    # ones on C extensions' free lists) keep tens of MB resident. malloc: glibc's, which the
    # idle passes return down to 4 KiB pages, at ~7 % more CPU per small request. jemalloc
    # (Debian's libjemalloc2): ~1 % more, and the idle passes purge it. auto: jemalloc where
    # the system has it, else pymalloc.
    allocator: Literal["auto", "pymalloc", "malloc", "jemalloc"] = "auto"


def default_data_dir() -> Path:
    """``$IMAGE_PROXY_DATA_DIR``, else ``$XDG_DATA_HOME/image-proxy`` (~/.local/share)."""
    explicit = os.environ.get("IMAGE_PROXY_DATA_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "image-proxy"


class GatewayConfig(Strict):
    server: ServerConfig = Field(default_factory=ServerConfig)
    # Credentials and settings per provider, given once: every catalog model of a provider
    # listed here is served, and `models:` entries of that provider inherit these settings.
    providers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    models: list[ModelConfig] = Field(default_factory=list)
    keys: list[KeyConfig] = Field(default_factory=list)
    jobs: JobsConfig = Field(default_factory=JobsConfig)
    upstream: UpstreamConfig = Field(default_factory=UpstreamConfig)
    # Images given to edits as http(s) URLs are fetched with SSRF protection.
    fetch: FetchSettings = Field(default_factory=FetchSettings)
    usage: UsageConfig = Field(default_factory=UsageConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    # Leases of running jobs and timeouts of the shared store (with redis_url).
    fleet: FleetConfig = Field(default_factory=FleetConfig)
    reliability: ReliabilityConfig = Field(default_factory=ReliabilityConfig)
    logs: LogsConfig = Field(default_factory=LogsConfig)
    memory: MemoryConfig = Field(default_factory=MemoryConfig)
    # Where images go when a client asks response_format "url": by default a directory in
    # data_dir served by the gateway under signed, expiring URLs; or an S3-compatible bucket.
    storage: StorageSettings = Field(default_factory=LocalStoreSettings)
    # Several processes or hosts: job snapshots, async results, rate/concurrency counters and
    # Socket.IO events are shared through this Redis (e.g. redis://127.0.0.1:6379/0).
    redis_url: str | None = Field(None, pattern=r"^(rediss?|unix)://")
    # Every Redis key (and the Socket.IO channel) starts with this.
    redis_prefix: str = Field("image-proxy", min_length=1)
    # Where the gateway keeps what must survive a restart (usage ledger, hosted images); a
    # relative path is relative to this file.
    data_dir: str | None = None
    # Used when a request names no model.
    default_model: str | None = None
    # Parameters a model cannot use (and unknown ones) are dropped and listed in the
    # x-dropped-params response header; false refuses them with a 400 naming the parameter.
    drop_unsupported: bool = True
    # The folder of the file this came from: relative paths inside it are relative to it.
    _source_dir: Path = PrivateAttr(default_factory=Path.cwd)
    # Where the configuration came from, to point later problems at their lines.
    _source_name: str = PrivateAttr(default="<config>")
    _source_text: str = PrivateAttr(default="")

    @property
    def source_dir(self) -> Path:
        return self._source_dir

    @property
    def data_path(self) -> Path:
        return self._source_dir / self.data_dir if self.data_dir else default_data_dir()

    @field_validator("models")
    @classmethod
    def _unique_names(cls, models: list[ModelConfig]) -> list[ModelConfig]:
        seen: set[str] = set()
        for model in models:
            for name in (model.name, *model.aliases):
                if name in seen:
                    raise ValueError(f"model name or alias {name!r} is used twice")
                seen.add(name)
        return models

    @model_validator(mode="after")
    def _something_to_serve(self) -> GatewayConfig:
        if not self.models and not self.providers:
            raise ValueError("configure at least one model (models:) or provider (providers:)")
        return self

    @field_validator("keys")
    @classmethod
    def _unique_keys(cls, keys: list[KeyConfig]) -> list[KeyConfig]:
        names = [k.name for k in keys]
        hashes = [k.key_sha256.lower() for k in keys]
        if len(set(names)) != len(names) or len(set(hashes)) != len(hashes):
            raise ValueError("key names and hashes must be unique")
        return keys
