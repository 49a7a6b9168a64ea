"""The usage ledger: what every key spent, durably, and ``GET /v1/usage`` to read it."""

from proxy.usage.endpoint import UsageQuery, parse_usage_query, usage_endpoint
from proxy.usage.ledger import FILENAME, LedgerClosed, UsageLedger
from proxy.usage.meter import UsageMeter
from proxy.usage.record import ModelUsage, UsageRecord, UsageReport, UsageTotals
from proxy.usage.schema import SCHEMA_VERSION, SchemaTooNew

__all__ = [
    "FILENAME",
    "SCHEMA_VERSION",
    "LedgerClosed",
    "ModelUsage",
    "SchemaTooNew",
    "UsageLedger",
    "UsageMeter",
    "UsageQuery",
    "UsageRecord",
    "UsageReport",
    "UsageTotals",
    "parse_usage_query",
    "usage_endpoint",
]
