"""A sink taking a second per batch under 10,000 turns a second: the backlog spills, none lost."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import tokenmeter
from tests.faults.fault_support import (
    FAULT,
    NO_FAULT,
    Caller,
    SlowSink,
    assert_call_time_within,
    assert_each_once,
    assert_settled,
    configure_fast,
    replay_in_running_engine,
    spool_files,
)

RATE_PER_S = 10_000
MAX_QUEUE = 2_000


def drive_load(caller: Caller, phase: str, seconds: float) -> None:
    """Meter `RATE_PER_S` turns a second for `seconds`, from a thread of its own."""
    total = int(RATE_PER_S * seconds)

    def run() -> None:
        started = time.perf_counter()
        done = 0
        while done < total:
            # Catch up with the schedule in small bursts, then yield the CPU for a moment.
            due = min(total, int((time.perf_counter() - started) * RATE_PER_S) + 1)
            if due > done:
                caller.turns(due - done, phase)
                done = due
            else:
                time.sleep(0.0005)

    thread = threading.Thread(target=run, name=f"load-{phase}")
    thread.start()
    thread.join(timeout=seconds * 3 + 10)
    assert not thread.is_alive(), f"the load thread did not finish {total} turns in time"


def test_slow_sink_under_load_loses_nothing(spool_dir: Path, caller: Caller) -> None:
    sink = SlowSink(delay_s=0)
    configure_fast(spool_dir, sink, max_queue=MAX_QUEUE)
    drive_load(caller, "warm-up", 0.2)
    drive_load(caller, NO_FAULT, 0.5)
    assert tokenmeter.flush(timeout=30)
    healthy = caller.produced
    healthy_batches = sink.batches

    sink.delay_s = 1.0
    drive_load(caller, FAULT, 3)
    batches_while_slow = sink.batches - healthy_batches

    # The sink speeds up again; only the batch it is working on still takes its second.
    sink.delay_s = 0
    assert tokenmeter.flush(timeout=30)

    sink_stats = assert_settled(caller.produced)
    faulty = caller.produced - healthy
    # The sink took about 3 batches of 200 during the load, and the queue held MAX_QUEUE
    # more; the rest had to go to the spool.
    assert batches_while_slow <= 10
    assert sink_stats.spooled >= faulty - MAX_QUEUE - 10 * 200
    assert_call_time_within(caller.times_ns)

    replay_in_running_engine(caller)
    assert_each_once(sink.records, range(1, caller.produced + 1))
    assert spool_files(spool_dir) == []
