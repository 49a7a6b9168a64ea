"""The metrics' own rules: which requests count, what an error code may be as a label, what a
finished job adds, how a circuit's state reads."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from proxy.observability.metrics import MULTIPROCESS, UNMATCHED, Metrics, code_label


def samples(metrics: Metrics) -> dict[tuple[str, tuple], float]:
    text = generate_latest(metrics.registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_error_codes_become_labels_only_when_shaped_like_codes() -> None:
    assert code_label(None) == code_label("") == ""
    assert code_label("upstream_circuit_open") == "upstream_circuit_open"
    assert code_label("content-policy.v2") == "content-policy.v2"
    assert code_label("a code with spaces") == "other"
    assert code_label("x" * 65) == "other"


def test_requests_are_counted_but_not_the_probes_or_the_scrape() -> None:
    metrics = Metrics()
    for route in ("/metrics", "/healthz", "/readyz"):
        metrics.request_answered(route, 200, "")
    metrics.request_answered("/v1/images/generations", 200, "")
    metrics.request_answered("/v1/images/generations", 200, "")
    metrics.request_answered(UNMATCHED, 404, "not_found")
    metrics.request_answered("/v1/images/generations", 400, "bad code!")
    counted = {labels: v for (name, labels), v in samples(metrics).items()
               if name == "image_proxy_requests_total"}
    assert counted == {
        (("error_code", ""), ("route", "/v1/images/generations"), ("status_code", "200")): 2,
        (("error_code", "not_found"), ("route", "unmatched"), ("status_code", "404")): 1,
        (("error_code", "other"), ("route", "/v1/images/generations"),
         ("status_code", "400")): 1}


def test_a_finished_job_counts_its_status_time_cost_and_bytes() -> None:
    metrics = Metrics()
    metrics.job_finished("m", "p", "generation", "succeeded", None, 1.5, 0.25, 100, 40)
    metrics.job_finished("m", "p", "generation", "succeeded", None, 0.5, None, 10, 0)
    metrics.job_finished("m", "p", "edit", "failed", "upstream_timeout", 2.0, None, 0, 0)
    seen = samples(metrics)
    job = {"model": "m", "provider": "p"}
    assert seen[("image_proxy_jobs_total", tuple(sorted({
        **job, "kind": "generation", "status": "succeeded", "error_code": ""}.items())))] == 2
    assert seen[("image_proxy_jobs_total", tuple(sorted({
        **job, "kind": "edit", "status": "failed",
        "error_code": "upstream_timeout"}.items())))] == 1
    assert seen[("image_proxy_cost_usd_total", tuple(sorted(job.items())))] == 0.25
    assert seen[("image_proxy_job_seconds_count", tuple(sorted(job.items())))] == 3
    assert seen[("image_proxy_image_bytes_total", (("kind", "final"),))] == 110
    assert seen[("image_proxy_image_bytes_total", (("kind", "partial"),))] == 40


def test_circuit_states_read_as_numbers_and_secrets_stay_out_of_labels() -> None:
    metrics = Metrics()
    upstream = "openai:https://user:hunter2@example.test/v1"
    metrics.circuit(upstream, "closed")
    metrics.circuit(upstream, "open", opened=True)
    metrics.circuit(upstream, "half_open")
    seen = samples(metrics)
    labels = [dict(k[1])["upstream"] for k in seen if k[0] == "image_proxy_upstream_circuit_state"]
    assert len(labels) == 1 and "hunter2" not in labels[0]
    key = (("upstream", labels[0]),)
    assert seen[("image_proxy_upstream_circuit_state", key)] == 1
    assert seen[("image_proxy_upstream_circuit_opened_total", key)] == 1


def test_a_single_process_answers_from_its_own_registry() -> None:
    assert not MULTIPROCESS  # no PROMETHEUS_MULTIPROC_DIR when the tests imported it
    metrics = Metrics()
    assert metrics.exposed is metrics.registry
    assert samples(metrics)[("image_proxy_worker_processes", ())] == 1
