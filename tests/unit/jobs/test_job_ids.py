"""Job ids: random version-4 UUIDs in canonical form, never repeated, not even across a fork."""

from __future__ import annotations

import os
import uuid

from proxy.jobs.job import new_job_id, parse_job_id


def test_canonical_random_uuids() -> None:
    ids = [new_job_id() for _ in range(3000)]  # past one pool of 256
    assert len(set(ids)) == len(ids)
    for job_id in ids:
        parsed = uuid.UUID(job_id)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert parse_job_id(job_id) == job_id == str(parsed)


def test_a_forked_child_draws_its_own() -> None:
    new_job_id()  # the parent's pool holds ids it has not handed out yet
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next ids and leave at once
        os.write(write, ",".join(new_job_id() for _ in range(4)).encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 4096).decode().split(",")
    os.close(read)
    os.waitpid(pid, 0)
    parent = [new_job_id() for _ in range(4)]
    assert len(child) == 4 and not set(child) & set(parent)
