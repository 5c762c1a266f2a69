"""A slow spool disk at shutdown: spool writes still in progress finish before delivery stops."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import tokenmeter
from tests.faults.fault_support import (
    Caller,
    HangingSink,
    configure_fast,
    only_sink_stats,
    spooled_records,
)
from tokenmeter.spool import Spool

SLOW_WRITE_S = 0.5


@pytest.fixture
def slow_first_spool_write(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Make the first spool write of the test take `SLOW_WRITE_S`; return its start event.

    This patches the one function that writes spool files, because no public setting makes
    a disk slow.
    """
    started = threading.Event()
    original = Spool._write_sync

    def write_slowly(spool: Spool, lines: str) -> Path:
        if not started.is_set():
            started.set()
            time.sleep(SLOW_WRITE_S)
        return original(spool, lines)

    monkeypatch.setattr(Spool, "_write_sync", write_slowly)
    return started


@pytest.fixture
def hanging_sink() -> Iterator[HangingSink]:
    sink = HangingSink(cancellable=True)
    yield sink
    sink.release.set()


def test_spill_in_progress_finishes_before_stop(
    spool_dir: Path,
    caller: Caller,
    hanging_sink: HangingSink,
    slow_first_spool_write: threading.Event,
) -> None:
    configure_fast(spool_dir, hanging_sink, max_queue=100, batch_size=100)

    # Past max_queue, the oldest records spill to the spool while the sink hangs.
    caller.turns(1000)
    assert slow_first_spool_write.wait(timeout=10)
    assert not tokenmeter.shutdown(timeout=0.1)

    # The flush timed out, but the thread stopped: by then every record must be on disk,
    # since the process may exit the moment shutdown() returns.
    assert only_sink_stats().pending == 0
    assert only_sink_stats().spooled == 1000
    assert len(spooled_records(spool_dir)) == 1000
