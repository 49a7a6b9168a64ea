"""Billing: published prices, what a job cost, the usage meter that watches a job's events, and
the durable usage ledger of what every key spent (read by ``GET /v1/usage``)."""

from proxy.billing.ledger import FILENAME, LedgerClosed, UsageLedger
from proxy.billing.meter import UsageMeter
from proxy.billing.record import ModelUsage, UsageRecord, UsageReport, UsageTotals
from proxy.billing.schema import SCHEMA_VERSION, SchemaTooNew

__all__ = [
    "FILENAME",
    "SCHEMA_VERSION",
    "LedgerClosed",
    "ModelUsage",
    "SchemaTooNew",
    "UsageLedger",
    "UsageMeter",
    "UsageRecord",
    "UsageReport",
    "UsageTotals",
]
