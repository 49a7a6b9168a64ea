"""OpenTelemetry traces: a server span per HTTP request, a span per job, one per upstream attempt,
and a client span per HTTP request to an upstream, which carries ``traceparent`` on.

Off by default, and then free: nothing of OpenTelemetry is imported, :func:`active` is None and
every caller skips its span on that one check. Turned on, once per process, by the standard
environment (:func:`configure_from_environment`): ``OTEL_TRACES_EXPORTER`` (``otlp``,
``console``, any exporter installed under that entry point; ``none``), or only an OTLP endpoint
(``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``: ``otlp`` is then
implied); ``OTEL_SDK_DISABLED=true`` wins over both. Everything else is the SDK's own reading of
the environment: ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` (default service name
``image-proxy``), ``OTEL_TRACES_SAMPLER`` (``parentbased_always_on``: an incoming sampled
``traceparent`` is followed), ``OTEL_BSP_*``, ``OTEL_EXPORTER_OTLP_*``, ``OTEL_PROPAGATORS``.

Attributes follow the semantic conventions: ``http.*``, ``url.*``, ``server.*`` for HTTP
(stable) and ``gen_ai.*`` for the model calls (still "development" upstream); what the
conventions do not name is under ``image_proxy.*``. No span carries a prompt, an image, a key
or a query string.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from proxy import __version__

if TYPE_CHECKING:
    import aiohttp
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span

log = logging.getLogger("proxy.tracing")

ENTRY_POINTS = "opentelemetry_traces_exporter"
# Providers as gen_ai.provider.name knows them (the rest go by the gateway's provider name).
GENAI_PROVIDERS = {"openai": "openai", "azure": "azure.ai.openai", "xai": "x_ai",
                   "gemini": "gcp.gen_ai", "imagen": "gcp.gen_ai"}
# The HTTP headers a trace context may come in (W3C trace context and baggage, B3, Jaeger).
CONTEXT_HEADERS = frozenset((b"traceparent", b"tracestate", b"baggage", b"b3",
                             b"x-b3-traceid", b"x-b3-spanid", b"x-b3-sampled",
                             b"uber-trace-id"))


def exporter_names(environ: Mapping[str, str]) -> list[str]:
    """The span exporters the environment asks for; empty: traces stay off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = [name.strip().lower() for name in environ.get("OTEL_TRACES_EXPORTER", "").split(",")
             if name.strip()]
    if not names and (environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                      or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
        names = ["otlp"]
    return [name for name in names if name != "none"]


class Traces:
    """The gateway's spans, made through an OpenTelemetry SDK ``TracerProvider``."""

    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry import context, propagate, trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self.provider = provider
        self.tracer = provider.get_tracer("image-proxy", __version__)
        self._context, self._propagate, self._trace = context, propagate, trace
        self._kinds = {"server": SpanKind.SERVER, "client": SpanKind.CLIENT,
                       "internal": SpanKind.INTERNAL}
        self._error = StatusCode.ERROR
        self._status = Status

    # Spans of the gateway's own making.

    def start(self, name: str, kind: str, attributes: dict[str, Any], *,
              parent: Span | None = None, headers: list[tuple[bytes, bytes]] | None = None,
              ) -> Span:
        """A span under ``parent``, or under the trace context of incoming ``headers`` (a
        client's ``traceparent``), or else under the current span."""
        context = None
        if headers is not None:
            carrier = {name.decode("latin-1"): value.decode("latin-1")
                       for name, value in headers if name in CONTEXT_HEADERS}
            context = self._propagate.extract(carrier)
        elif parent is not None:
            context = self._trace.set_span_in_context(parent)
        return self.tracer.start_span(name, context=context, kind=self._kinds[kind],
                                      attributes=attributes)

    def activate(self, span: Span) -> object:
        """Make ``span`` the current one (its children, ``traceparent`` sent upstream); hand
        the token back to :meth:`deactivate` in the same task."""
        return self._context.attach(self._trace.set_span_in_context(span))

    def deactivate(self, token: object) -> None:
        self._context.detach(token)  # type: ignore[arg-type]

    def end(self, span: Span, attributes: dict[str, Any] | None = None, *,
            error: str | None = None, description: str | None = None) -> None:
        """End ``span``, with ``attributes`` (None values left out) and, when it failed, its
        ``error.type`` and an error status."""
        if attributes:
            span.set_attributes({k: v for k, v in attributes.items() if v is not None})
        if error is not None:
            span.set_attribute("error.type", error)
            span.set_status(self._status(self._error, description or error))
        span.end()

    def ids(self) -> tuple[str, str] | None:
        """The current trace and span ids (hex), for log lines; None outside any span."""
        context = self._trace.get_current_span().get_span_context()
        if not context.is_valid:
            return None
        return format(context.trace_id, "032x"), format(context.span_id, "016x")

    # Client spans of the upstream HTTP client (aiohttp's request hooks).

    def client_trace_config(self) -> aiohttp.TraceConfig:
        """aiohttp hooks: a client span per upstream request made within a span (an upstream
        attempt), its context sent in ``traceparent``."""
        import aiohttp

        config = aiohttp.TraceConfig()
        config.on_request_start.append(self._request_start)
        config.on_request_end.append(self._request_end)
        config.on_request_exception.append(self._request_exception)
        return config

    async def _request_start(self, session: Any, ctx: Any,
                             params: aiohttp.TraceRequestStartParams) -> None:
        if not self._trace.get_current_span().get_span_context().is_valid:
            return  # a call of no job (a health check of a ComfyUI pool): no trace of its own
        url = params.url
        attributes: dict[str, Any] = {"http.request.method": params.method,
                                      "server.address": url.host or "",
                                      "url.full": _without_query(str(url))}
        if url.port is not None:
            attributes["server.port"] = url.port
        span = self.start(params.method, "client", attributes)
        ctx.span = span
        self._propagate.inject(params.headers, context=self._trace.set_span_in_context(span))

    async def _request_end(self, session: Any, ctx: Any,
                           params: aiohttp.TraceRequestEndParams) -> None:
        span = getattr(ctx, "span", None)
        if span is not None:
            status = params.response.status
            self.end(span, {"http.response.status_code": status},
                     error=str(status) if status >= 400 else None)

    async def _request_exception(self, session: Any, ctx: Any,
                                 params: aiohttp.TraceRequestExceptionParams) -> None:
        span = getattr(ctx, "span", None)
        if span is not None:
            self.end(span, error=type(params.exception).__qualname__)


_traces: Traces | None = None


def active() -> Traces | None:
    """The process's traces, or None when they are off (the one check on every hot path)."""
    return _traces


def install(provider: TracerProvider | None) -> Traces | None:
    """Make spans through ``provider`` from now on (None: traces off). For tests, which read
    what an in-memory exporter received; a gateway calls :func:`configure_from_environment`."""
    global _traces
    _traces = Traces(provider) if provider is not None else None
    return _traces


def configure_from_environment(environ: Mapping[str, str] = os.environ) -> Traces | None:
    """Turn traces on if the environment asks for them (once per process; the gateways built
    afterwards trace). A missing exporter is logged as an error and traces stay off: telemetry
    never stops the gateway from serving."""
    if _traces is not None:
        return _traces
    names = exporter_names(environ)
    if not names:
        return None
    try:
        provider = _provider(names, environ)
    except (ImportError, ValueError) as exc:
        log.error("traces are off: %s (OTEL_TRACES_EXPORTER=%s; the OTLP exporter comes with "
                  "pip install 'image-proxy[otel]')", exc, ",".join(names))
        return None
    from opentelemetry import trace

    trace.set_tracer_provider(provider)  # for any other instrumentation in the process
    log.info("traces on: exporting to %s", ", ".join(names))
    return install(provider)


def flush(timeout: float = 5.0) -> None:
    """Export the spans still buffered (at shutdown; blocks up to ``timeout`` seconds)."""
    if _traces is not None:
        _traces.provider.force_flush(int(timeout * 1000))


def _provider(names: list[str], environ: Mapping[str, str]) -> TracerProvider:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.version": __version__})
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": "image-proxy"}))
    provider = TracerProvider(resource=resource)
    for name in names:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name, environ)))
    return provider


def _exporter(name: str, environ: Mapping[str, str]) -> Any:
    """The exporter registered under ``name`` (``otlp``: over HTTP/protobuf, or gRPC when
    ``OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL`` says ``grpc``)."""
    from importlib.metadata import entry_points

    if name == "otlp":
        protocol = (environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                    or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf")
        name = "otlp_proto_grpc" if protocol.strip().lower() == "grpc" else "otlp_proto_http"
    found = entry_points(group=ENTRY_POINTS, name=name)
    if not found:
        raise ValueError(f"no span exporter named {name!r} is installed")
    return next(iter(found)).load()()


def _without_query(url: str) -> str:
    """A URL without user information, query string or fragment (they may carry a key)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}"
