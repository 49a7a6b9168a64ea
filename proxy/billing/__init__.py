"""Billing: published prices, what a job cost, the usage meter that watches a job's events, and
the durable usage ledger of what every key spent (read by ``GET /v1/usage`` and budgets): SQLite
in the data directory, or PostgreSQL for a fleet (``ledger_postgres.PostgresLedger``, imported
where it is configured: it brings asyncpg)."""

from proxy.billing.ledger import LedgerClosed, LedgerStats, LedgerUnavailable, UsageLedger
from proxy.billing.ledger_sqlite import FILENAME, SQLiteLedger
from proxy.billing.meter import UsageMeter
from proxy.billing.record import ModelUsage, UsageRecord, UsageReport, UsageTotals
from proxy.billing.schema import SCHEMA_VERSION, SchemaTooNew

__all__ = [
    "FILENAME",
    "SCHEMA_VERSION",
    "LedgerClosed",
    "LedgerStats",
    "LedgerUnavailable",
    "ModelUsage",
    "SQLiteLedger",
    "SchemaTooNew",
    "UsageLedger",
    "UsageMeter",
    "UsageRecord",
    "UsageReport",
    "UsageTotals",
]
