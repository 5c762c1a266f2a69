"""os.fork and multiprocessing children: each child's records once, the parent's never resent."""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest

import tokenmeter
from tests.faults.fault_support import (
    Caller,
    assert_each_once,
    configure_fast,
    meter_range,
    meter_range_tuple,
    replay_in_running_engine,
    spool_files,
)
from tokenmeter import UsageRecord
from tokenmeter.sinks.jsonl import JsonlSink

# Python 3.12 and later warn when a process with threads forks; forking is the test here.
pytestmark = pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")

CHILD_FIRST = 10_001


class ParentGatedSink:
    """Appends to a JSONL file. In the process that created it, a write may fail or wait.

    `failing` makes the creator's writes raise; a cleared `gate` makes them wait. Children
    write straight through, so the parent's sink can hang while a child's works.
    """

    spool_key = "tests.faults.parent-gated"

    def __init__(self, path: Path) -> None:
        self.inner = JsonlSink(path)
        self.owner = os.getpid()
        self.failing = False
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        """Set when a write starts waiting at the closed gate."""

    async def write(self, records: Sequence[UsageRecord]) -> None:
        if os.getpid() == self.owner:
            if self.failing:
                raise ConnectionError("the parent's sink is down")
            if not self.gate.is_set():
                self.entered.set()
                await anyio.to_thread.run_sync(self.gate.wait, abandon_on_cancel=True)
        await self.inner.write(records)

    async def aclose(self) -> None:
        await self.inner.aclose()


def stored(path: Path) -> list[UsageRecord]:
    return tokenmeter.read_jsonl(path, dedupe=False)


def test_forked_child_never_resends_parent_records(
    tmp_path: Path, spool_dir: Path, caller: Caller
) -> None:
    out = tmp_path / "usage.jsonl"
    sink = ParentGatedSink(out)
    configure_fast(spool_dir, sink, batch_size=50, flush_interval_s=60, retry_attempts=2)

    # The parent's records, at the fork, in every state: delivered (1-20), spooled (21-50),
    # in the write stuck at the gate (51-100), and queued behind it (101-190).
    caller.turns(20)
    assert tokenmeter.flush(timeout=30)
    sink.failing = True
    caller.turns(30)
    assert tokenmeter.flush(timeout=30)
    sink.failing = False
    sink.gate.clear()
    caller.turns(50)
    assert sink.entered.wait(timeout=30)
    caller.turns(90)

    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            Caller(first=CHILD_FIRST).turns(40)
            code = 0 if tokenmeter.shutdown(timeout=30) else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)

    assert os.waitstatus_to_exitcode(status) == 0
    sink.gate.set()
    assert tokenmeter.flush(timeout=30)
    replay_in_running_engine(caller)
    assert_each_once(
        stored(out), [*range(1, caller.produced + 1), *range(CHILD_FIRST, CHILD_FIRST + 40)]
    )
    assert spool_files(spool_dir) == []


@pytest.fixture
def jsonl_everywhere(tmp_path: Path, spool_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Configure a JSONL sink here and, through the environment, in spawned children."""
    out = tmp_path / "usage.jsonl"
    monkeypatch.setenv("TOKENMETER_SINK", f"jsonl:{out}")
    monkeypatch.setenv("TOKENMETER_SPOOL_DIR", str(spool_dir))
    # The parent's records stay queued while the children run.
    configure_fast(spool_dir, f"jsonl:{out}", flush_interval_s=60, batch_size=1000)
    return out


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_process_child_records_delivered(
    method: str, jsonl_everywhere: Path, caller: Caller
) -> None:
    caller.turns(100)
    # typeshed's BaseContext lacks Process, which every concrete context has.
    context: Any = multiprocessing.get_context(method)

    # The child meters and returns without flushing: its exit must deliver.
    child = context.Process(target=meter_range, args=(CHILD_FIRST, 200))
    child.start()
    child.join(timeout=60)

    assert child.exitcode == 0
    assert tokenmeter.flush(timeout=30)
    assert_each_once(
        stored(jsonl_everywhere), [*range(1, 101), *range(CHILD_FIRST, CHILD_FIRST + 200)]
    )


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_pool_records_delivered(method: str, jsonl_everywhere: Path, caller: Caller) -> None:
    caller.turns(100)
    tasks = [(CHILD_FIRST + 1000 * index, 100) for index in range(6)]
    context = multiprocessing.get_context(method)

    pool = context.Pool(2)
    try:
        counts = pool.map(meter_range_tuple, tasks)
        pool.close()
        pool.join()
    finally:
        pool.terminate()

    assert counts == [100] * 6
    assert tokenmeter.flush(timeout=30)
    expected = [*range(1, 101)]
    for first, count in tasks:
        expected.extend(range(first, first + count))
    assert_each_once(stored(jsonl_everywhere), expected)
