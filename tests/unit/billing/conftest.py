"""The ledger's unit tests share a ledger in a temporary folder."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from proxy.billing import UsageLedger


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[UsageLedger]:
    async with UsageLedger(tmp_path / "data") as ledger:
        yield ledger
