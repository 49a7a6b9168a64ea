"""Records the PostgreSQL ledger could not write, kept on local disk until it can.

While its database cannot be reached the ledger keeps records in memory. Past ``MAX_BUFFERED``
of them, or when it closes before the database is back, they go to a spill file in the data
directory, ``usage-unwritten-<pid>-<random>.jsonl``: one JSON array per line (a row, its
``record_id`` first), written under a temporary name, fsynced, then renamed, so a file is whole
or absent. Whenever the ledger (re)connects it inserts the rows of every such file and deletes
it. The record ids make that idempotent: a file replayed twice (two processes sharing the data
directory), or a row that was in fact committed, is inserted once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from proxy.billing.schema_postgres import ROW_COLUMNS

log = logging.getLogger("proxy.billing")

PREFIX = "usage-unwritten-"
SUFFIX = ".jsonl"
REJECTED = ".rejected"


def write_spill(data_dir: Path, rows: Sequence[tuple[Any, ...]]) -> Path:
    """Write ``rows`` to a new spill file, durably; returns its path."""
    data_dir.mkdir(parents=True, exist_ok=True)
    name = f"{PREFIX}{os.getpid()}-{uuid.uuid4().hex}{SUFFIX}"
    temporary = data_dir / f".{name}.tmp"
    with open(temporary, "w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps([str(row[0]), *row[1:]], ensure_ascii=False,
                                 allow_nan=False))
            out.write("\n")
        out.flush()
        os.fsync(out.fileno())
    final = data_dir / name
    os.replace(temporary, final)
    directory = os.open(data_dir, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a crash
    finally:
        os.close(directory)
    return final


def spill_files(data_dir: Path) -> list[Path]:
    """Every spill file waiting in ``data_dir``, oldest name first."""
    if not data_dir.is_dir():
        return []
    return sorted(data_dir.glob(f"{PREFIX}*{SUFFIX}"))


def read_spill(path: Path) -> list[tuple[Any, ...]]:
    """The rows of a spill file; ValueError naming the line for one that is not a row."""
    rows: list[tuple[Any, ...]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            values = json.loads(line)
            if not isinstance(values, list) or len(values) != len(ROW_COLUMNS):
                raise ValueError("not a usage row")
            rows.append((uuid.UUID(values[0]), *values[1:]))
        except (ValueError, TypeError, AttributeError) as exc:
            raise ValueError(f"{path.name}:{number}: {exc}") from None
    return rows


def reject(path: Path) -> Path:
    """Set aside a file that cannot be replayed (renamed, never deleted: it holds charges)."""
    target = path.with_name(path.name + REJECTED)
    os.replace(path, target)
    return target


async def replay(data_dir: Path,
                 write: Callable[[list[tuple[Any, ...]]], Awaitable[None]]) -> None:
    """Hand the rows of every spill file in ``data_dir`` to ``write``, then delete the file.
    An error ``write`` raises (the database went away) leaves the file for the next time."""
    for path in spill_files(data_dir):
        try:
            rows = await asyncio.to_thread(read_spill, path)
        except FileNotFoundError:
            continue  # another process sharing the data directory replayed it
        except (OSError, ValueError) as exc:
            with contextlib.suppress(OSError):
                path = reject(path)
            log.error("usage ledger: cannot replay a spill file (%s); left as %s", exc, path)
            continue
        await write(rows)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        log.warning("usage ledger: wrote the %d record(s) kept in %s", len(rows), path.name)
