"""A sink whose writes hang: timed out and spooled, memory bounded, nothing lost at shutdown."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import tokenmeter
from tests.faults.fault_support import (
    FAULT,
    NO_FAULT,
    Caller,
    HangingSink,
    assert_call_time_within,
    assert_each_once,
    assert_settled,
    configure_fast,
    only_sink_stats,
    replay_in_running_engine,
    spool_files,
    spooled_records,
)

CHUNK = 1000


@pytest.fixture
def cancellable_sink() -> Iterator[HangingSink]:
    sink = HangingSink(cancellable=True)
    yield sink
    sink.release.set()


@pytest.fixture
def stuck_sink() -> Iterator[HangingSink]:
    sink = HangingSink(cancellable=False)
    yield sink
    # Lets the engine's stuck worker thread finish before the next test.
    sink.release.set()


def test_hanging_writes_time_out_to_spool(
    spool_dir: Path, caller: Caller, cancellable_sink: HangingSink
) -> None:
    sink = cancellable_sink
    configure_fast(spool_dir, sink, write_timeout_s=0.05, retry_attempts=2, batch_size=500)
    sink.release.set()
    caller.turns(CHUNK, phase="warm-up")
    assert tokenmeter.flush(timeout=30)

    for _ in range(4):
        caller.turns(CHUNK, NO_FAULT)
        assert tokenmeter.flush(timeout=30)
        sink.release.clear()
        caller.turns(CHUNK, FAULT)
        assert tokenmeter.flush(timeout=30)
        sink.release.set()

    sink_stats = assert_settled(caller.produced)
    assert sink_stats.spooled >= CHUNK
    assert "TimeoutError" in (sink_stats.last_error or "")
    assert_call_time_within(caller.times_ns)

    replay_in_running_engine(caller)
    assert_each_once(sink.records, range(1, caller.produced + 1))
    assert spool_files(spool_dir) == []


def test_hanging_sink_backlog_spills_to_spool(
    spool_dir: Path, caller: Caller, cancellable_sink: HangingSink
) -> None:
    sink = cancellable_sink
    max_queue = 500
    configure_fast(spool_dir, sink, max_queue=max_queue, batch_size=100)
    sink.release.set()
    caller.turns(CHUNK, phase="warm-up")
    caller.turns(5 * CHUNK, NO_FAULT)
    assert tokenmeter.flush(timeout=30)

    sink.release.clear()
    caller.turns(5 * CHUNK, FAULT)
    # The records past the queue bound went to the spool while the sink hung.
    sink.release.set()
    assert tokenmeter.flush(timeout=30)

    sink_stats = assert_settled(caller.produced)
    assert sink_stats.spooled >= 5 * CHUNK - max_queue - 100
    assert_call_time_within(caller.times_ns)

    replay_in_running_engine(caller)
    assert_each_once(sink.records, range(1, caller.produced + 1))
    assert spool_files(spool_dir) == []


def test_stuck_sink_pending_spooled_at_shutdown(
    spool_dir: Path, caller: Caller, stuck_sink: HangingSink
) -> None:
    sink = stuck_sink
    configure_fast(spool_dir, sink, batch_size=10, write_timeout_s=0.05)

    caller.turns(100)
    assert sink.entered.wait(timeout=10)
    assert not tokenmeter.shutdown(timeout=0.5)

    # The first batch of 10 is stuck inside the sink, and a write that ignores cancellation
    # cannot be taken back. The 90 records behind it must not depend on that write ending.
    spooled = spooled_records(spool_dir)
    assert len(spooled) >= 90
    assert len({record.id for record in spooled}) == len(spooled)
    assert only_sink_stats().dropped == {}
