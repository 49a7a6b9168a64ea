"""A PostgreSQL database of a test's own: a unique name, created for the test, dropped after it.

The server is the one ``scripts/test`` makes sure of (``ensure_postgres`` in scripts/_env.sh):
127.0.0.1:5432, user postgres without a password, or the URL in ``IMAGE_PROXY_TEST_POSTGRES``.
Without one the test is skipped, saying why; under CI it fails instead.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

ADMIN_URL = os.environ.get("IMAGE_PROXY_TEST_POSTGRES",
                           "postgresql://postgres@127.0.0.1:5432/postgres")


def database_url(name: str, base: str = ADMIN_URL) -> str:
    """``base`` with its database replaced by ``name``."""
    return urlunsplit(urlsplit(base)._replace(path=f"/{name}"))


async def admin_connection() -> asyncpg.Connection:
    try:
        return await asyncpg.connect(ADMIN_URL, timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        reason = (f"no PostgreSQL answers at {urlsplit(ADMIN_URL).netloc} "
                  f"({type(exc).__name__}); scripts/test starts one (ensure_postgres)")
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


@asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """The URL of a new, empty database (``image_proxy_test_<pid>_<random>``), dropped on
    exit even if connections to it are still open."""
    name = f"image_proxy_test_{os.getpid()}_{secrets.token_hex(4)}"
    admin = await admin_connection()
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield database_url(name)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
