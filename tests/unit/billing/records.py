"""A usage record for the ledger's unit tests, varied per test."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from proxy.billing import UsageRecord

T0 = 1_700_000_000.0


def rec(i: int = 0, **changes: Any) -> UsageRecord:
    base = UsageRecord(
        job_id=f"job-{i}", key="alice", model="openai/gpt-image-1", provider="openai",
        kind="generation", n=1, images=1, size="1024x1024", quality="high", input_tokens=10,
        output_tokens=100, total_tokens=110, cost=0.01, latency_ms=1200, status="succeeded",
        error_code=None, user=None, metadata=None, created_at=T0 + i)
    return replace(base, **changes)
