"""JsonlSink and `tokenmeter reprice` replacing its file: no appended batch is lost."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tokenmeter.reading import read_jsonl
from tokenmeter.records import record_to_json
from tokenmeter.sinks import JsonlSink
from tokenmeter.sinks.jsonl import lock_file

if TYPE_CHECKING:
    from tests.sinks.conftest import RecordFactory

PROC_LOCKS = Path("/proc/locks")


def blocked_flock_waiters() -> int:
    # Linux lists a process that waits for a lock with "->" before the lock's type.
    return sum("-> FLOCK" in line for line in PROC_LOCKS.read_text().splitlines())


@pytest.mark.skipif(not PROC_LOCKS.exists(), reason="needs Linux /proc/locks to see a waiter")
def test_append_waiting_on_lock_lands_in_new_file(
    tmp_path: Path, make_record: RecordFactory
) -> None:
    path = tmp_path / "usage.jsonl"
    old, new, appended = make_record(0), make_record(1), make_record(2)
    path.write_text(record_to_json(old) + "\n")
    sink = JsonlSink(path)
    waiting_before = blocked_flock_waiters()

    with path.open("rb") as held:
        lock_file(held.fileno())
        writer = threading.Thread(target=asyncio.run, args=(sink.write([appended]),))
        writer.start()
        deadline = time.monotonic() + 10
        while blocked_flock_waiters() == waiting_before and time.monotonic() < deadline:
            time.sleep(0.005)
        assert blocked_flock_waiters() > waiting_before, "the writer never waited for the lock"

        # As reprice does: write the new content beside, rename it over the original.
        replacement = tmp_path / ".usage.jsonl.tmp"
        replacement.write_text(record_to_json(new) + "\n")
        os.replace(replacement, path)
    writer.join(timeout=10)

    assert not writer.is_alive()
    assert [record.id for record in read_jsonl(path)] == [new.id, appended.id]


def test_lock_released_after_append(tmp_path: Path, make_record: RecordFactory) -> None:
    path = tmp_path / "usage.jsonl"
    sink = JsonlSink(path)

    asyncio.run(sink.write([make_record(0)]))

    with path.open("rb") as file:
        # A lock still held by the sink would block here forever.
        lock_file(file.fileno())
    assert len(read_jsonl(path)) == 1
