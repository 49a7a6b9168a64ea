"""OpenTelemetry traces: a gateway under uvicorn in this process, its spans read from the SDK's
in-memory exporter. A request's server span (under the client's ``traceparent``), its job's span,
one span per upstream attempt and the upstream request's client span, parent to child; the fake
upstream receives a ``traceparent`` of the same trace. Off by default, with nothing of
OpenTelemetry imported; on by the standard ``OTEL_*`` environment."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator

import httpx
import openai
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy.observability import tracing
from tests.support.clients import async_sdk
from tests.support.fakes.openai_upstream import API_KEY, FakeOpenAI
from tests.support.paths import REPO_ROOT
from tests.support.processes import wait_healthy
from tests.support.servers import free_port, serve
from tests.support.stack import upstream_and_gateway

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CLIENT_SPAN}-01"


def openai_yaml(url: str) -> str:
    return f"""
reliability: {{retries: 1, backoff_base: 0.01, backoff_max: 0.02, circuit_failures: 1000}}
models:
  - {{name: m, provider: openai, upstream_model: gpt-image-1, base_url: "{url}/v1",
      api_key: {API_KEY}}}
"""


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Traces on, into memory, for the gateways this test starts (and off again after it)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        yield exporter
    finally:
        tracing.install(None)
        provider.shutdown()


def named(spans: tuple[ReadableSpan, ...], prefix: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name.startswith(prefix)]


def child_of(span: ReadableSpan, parent: ReadableSpan) -> bool:
    assert span.parent is not None and span.context is not None and parent.context is not None
    return (span.parent.span_id == parent.context.span_id
            and span.context.trace_id == parent.context.trace_id)


async def finished(exporter: InMemorySpanExporter, name: str) -> tuple[ReadableSpan, ...]:
    """The spans, once the server span ``name`` has ended (after the response's last byte)."""
    for _ in range(200):
        spans = exporter.get_finished_spans()
        if named(spans, name):
            return spans
        await asyncio.sleep(0.02)
    raise AssertionError(f"no span {name!r} among {[s.name for s in spans]}")


async def test_request_job_attempt_and_upstream_spans_follow_the_callers_trace(spans) -> None:
    fake = FakeOpenAI(mode="status", status=503, status_times=1)  # one retry, then an image
    with upstream_and_gateway(fake, openai_yaml) as (_, server):
        async with async_sdk(server) as sdk:
            await sdk.images.generate(model="m", prompt="p",
                                      extra_headers={"traceparent": TRACEPARENT})
        exported = await finished(spans, "POST /v1/images/generations")
    request = named(exported, "POST /v1/images/generations")[0]
    job = named(exported, "generation m")[0]
    attempts = sorted(named(exported, "generate_content gpt-image-1"),
                      key=lambda span: span.attributes["image_proxy.attempt"])
    calls = sorted((span for span in exported if span.kind == SpanKind.CLIENT
                    and span.name == "POST"), key=lambda span: span.start_time or 0)

    assert request.kind == SpanKind.SERVER and request.context.trace_id == int(TRACE_ID, 16)
    assert request.parent is not None and request.parent.span_id == int(CLIENT_SPAN, 16)
    assert request.attributes["http.request.method"] == "POST"
    assert request.attributes["http.route"] == "/v1/images/generations"
    assert request.attributes["http.response.status_code"] == 200

    assert child_of(job, request)
    assert job.attributes["gen_ai.request.model"] == "m"
    assert job.attributes["gen_ai.provider.name"] == "openai"
    assert job.attributes["image_proxy.job.status"] == "succeeded"
    assert job.attributes["image_proxy.job.attempts"] == 2

    assert len(attempts) == 2 and all(child_of(span, job) for span in attempts)
    assert attempts[0].status.status_code == StatusCode.ERROR
    assert attempts[0].attributes["error.type"] == "upstream_error"
    assert attempts[0].attributes["http.response.status_code"] == 503
    assert attempts[1].status.status_code != StatusCode.ERROR
    assert attempts[1].attributes["gen_ai.operation.name"] == "generate_content"

    assert len(calls) == 2
    assert child_of(calls[0], attempts[0]) and child_of(calls[1], attempts[1])
    assert [c.attributes["http.response.status_code"] for c in calls] == [503, 200]
    assert "?" not in calls[0].attributes["url.full"]
    # The upstream got each request's context: the same trace, its client span as parent.
    sent = [recorded.headers["traceparent"] for recorded in fake.requests]
    assert sent == [f"00-{TRACE_ID}-{c.context.span_id:016x}-01" for c in calls]


async def test_a_streamed_job_and_a_dead_upstream_are_traced_too(spans) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with upstream_and_gateway(FakeOpenAI(), lambda url: openai_yaml(url) + f"""
  - {{name: dead, provider: openai, base_url: "{dead}/v1", api_key: {API_KEY}, retries: 0}}
""") as (_, server):
        async with async_sdk(server) as sdk:
            stream = await sdk.images.generate(model="m", prompt="p", stream=True,
                                               partial_images=1)
            async for _ in stream:
                pass
            with pytest.raises(openai.APIStatusError):
                await sdk.images.generate(model="dead", prompt="p")
        exported = await finished(spans, "POST /v1/images/generations")
        for _ in range(100):
            exported = spans.get_finished_spans()
            if len(named(exported, "POST /v1/images/generations")) == 2:
                break
            await asyncio.sleep(0.02)
    requests = named(exported, "POST /v1/images/generations")
    assert len(requests) == 2 and requests[0].context.trace_id != requests[1].context.trace_id
    streamed, refused = sorted(requests, key=lambda span: span.start_time or 0)
    (job,) = [span for span in named(exported, "generation m") if child_of(span, streamed)]
    assert job.attributes["image_proxy.job.status"] == "succeeded"
    (failed,) = [span for span in named(exported, "generation dead") if child_of(span, refused)]
    assert failed.attributes["error.type"] == "upstream_unreachable"
    (attempt,) = [span for span in exported if span.parent is not None
                  and span.parent.span_id == failed.context.span_id]
    assert attempt.attributes["error.type"] == "upstream_unreachable"
    (call,) = [span for span in exported if span.parent is not None
               and span.parent.span_id == attempt.context.span_id]
    assert call.kind == SpanKind.CLIENT and call.status.status_code == StatusCode.ERROR
    assert refused.attributes["http.response.status_code"] == 502
    assert refused.status.status_code == StatusCode.ERROR


async def test_health_probes_and_scrapes_are_not_traced(spans, start_gateway) -> None:
    with start_gateway("models: [{name: local, provider: local}]") as server:
        async with httpx.AsyncClient(base_url=server.url) as client:
            for path in ("/healthz", "/readyz", "/metrics"):
                await client.get(path)
            await client.get("/v1/models")
        exported = await finished(spans, "GET /v1/models")
    assert [span.name for span in exported] == ["GET /v1/models"]


SERVE_ONE = """
import logging, sys
if sys.argv[1] == "absent":  # as if the otel extra were not installed
    sys.modules["opentelemetry"] = None
logging.basicConfig(level=logging.INFO)
from starlette.testclient import TestClient
from proxy.app import create_app
from proxy.config import load_default_config
from proxy.observability import tracing
with TestClient(create_app(load_default_config())) as client:
    assert client.post("/v1/images/generations", json={
        "model": "local", "prompt": "p", "size": "64x64"}).status_code == 200
assert tracing.active() is None
# redis-py imports OpenTelemetry's metrics API when it is installed; the tracing SDK and the
# propagators are ours alone to import.
print(sorted(name for name in sys.modules if name.startswith(
    ("opentelemetry.sdk.trace", "opentelemetry.propagate", "opentelemetry.exporter"))))
"""


@pytest.mark.parametrize("otel", ["installed", "absent"])
@pytest.mark.parametrize("settings", [{}, {"OTEL_TRACES_EXPORTER": "none"}, {
    "OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}])
def test_off_by_default_with_nothing_of_the_sdk_imported(otel, settings) -> None:
    """No OTEL_* settings, ``none``, or OTEL_SDK_DISABLED winning over an endpoint: a gateway
    built and answering never loads the tracing SDK, and works without OpenTelemetry."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run([sys.executable, "-c", SERVE_ONE, otel], cwd=REPO_ROOT, timeout=60,
                          env={**environ, **settings}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert "traces" not in done.stderr


def test_traces_asked_for_without_the_otel_extra_are_an_error_not_an_outage() -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run([sys.executable, "-c", SERVE_ONE, "absent"], cwd=REPO_ROOT,
                          env={**environ, "OTEL_TRACES_EXPORTER": "otlp"}, timeout=60,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "ERROR:proxy.tracing:traces are off" in done.stderr
    assert "image-proxy[otel]" in done.stderr


async def serve_one_request(environ: dict[str, str]) -> tuple[str, str]:
    """``image-proxy serve`` under ``environ`` (no other OTEL_* settings) answering one request
    that carries ``traceparent``, then stopped: its stdout and stderr."""
    port = free_port()
    environ = {**{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
               **environ}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "serve", "--port", str(port), env=environ,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(url)
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            response = await client.post("/v1/images/generations", json={
                "model": "local", "prompt": "p", "size": "64x64"},
                headers={"traceparent": TRACEPARENT})
            assert response.status_code == 200
    finally:
        process.terminate()
        stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    return stdout.decode(), stderr.decode()


async def test_the_otel_environment_turns_traces_on_in_a_served_gateway() -> None:
    """``image-proxy serve`` with OTEL_TRACES_EXPORTER=console and OTEL_SERVICE_NAME: the
    spans are printed as JSON with that service name, flushed when the gateway stops, and the
    job's log line names the trace."""
    out, err = await serve_one_request({"OTEL_TRACES_EXPORTER": "console",
                                        "OTEL_SERVICE_NAME": "images-east"})
    decoder, spans, at = json.JSONDecoder(), [], out.find("{")
    while at >= 0:
        span, end = decoder.raw_decode(out, at)
        spans.append(span)
        at = out.find("{", end)
    by_name = {span["name"]: span for span in spans}
    assert {"POST /v1/images/generations", "generation local",
            "generate_content local"} <= set(by_name), list(by_name)
    for span in by_name.values():
        assert span["context"]["trace_id"] == f"0x{TRACE_ID}"
        assert span["resource"]["attributes"]["service.name"] == "images-east"
    logged = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    job = next(line for line in logged if line.get("job_status"))
    assert job["trace_id"] == TRACE_ID and len(job["span_id"]) == 16


async def test_spans_reach_an_otlp_collector_named_by_the_endpoint_alone() -> None:
    """Only OTEL_EXPORTER_OTLP_ENDPOINT set: the request's spans arrive at that collector over
    OTLP/HTTP (protobuf), batched, by the time the gateway has stopped."""
    received: list[ExportTraceServiceRequest] = []

    async def traces(request: Request) -> Response:
        received.append(ExportTraceServiceRequest.FromString(await request.body()))
        return Response(ExportTraceServiceResponse().SerializeToString(),
                        media_type="application/x-protobuf")

    collector = Starlette(routes=[Route("/v1/traces", traces, methods=["POST"])])
    with serve(collector) as server:
        await serve_one_request({"OTEL_EXPORTER_OTLP_ENDPOINT": server.url})
    spans = [span for export in received for resource in export.resource_spans
             for scope in resource.scope_spans for span in scope.spans]
    names = {span.name for span in spans}
    assert {"POST /v1/images/generations", "generation local",
            "generate_content local"} <= names, names
    assert {span.trace_id.hex() for span in spans} == {TRACE_ID}
    service = {attribute.value.string_value for export in received
               for resource in export.resource_spans
               for attribute in resource.resource.attributes
               if attribute.key == "service.name"}
    assert service == {"image-proxy"}


def test_which_exporters_the_environment_asks_for() -> None:
    names = tracing.exporter_names
    assert names({}) == []
    assert names({"OTEL_TRACES_EXPORTER": "none"}) == []
    assert names({"OTEL_TRACES_EXPORTER": "otlp,console"}) == ["otlp", "console"]
    assert names({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}) == ["otlp"]
    assert names({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}) == ["otlp"]
    assert names({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}) == []
    assert names({"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_EXPORTER": "console"}) == [
        "console"]
