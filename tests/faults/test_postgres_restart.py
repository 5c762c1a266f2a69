"""PostgreSQL stopped and restarted under a steady stream of turns: each record stored once."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import tokenmeter
from tests.faults.fault_support import (
    FAULT,
    NO_FAULT,
    Caller,
    assert_call_time_within,
    assert_each_once,
    assert_settled,
    configure_fast,
    only_sink_stats,
    replay_in_running_engine,
    spool_files,
)
from tests.postgres_server import LocalPostgres, with_query

pytestmark = pytest.mark.postgres

RATE_PER_S = 5_000


@pytest.fixture(scope="module")
def server() -> Iterator[LocalPostgres]:
    """A server of this module's own, which the test stops and starts."""
    with LocalPostgres() as running:
        yield running


class SteadyLoad:
    """Meters `RATE_PER_S` turns a second from a thread until stopped; `phase` labels them."""

    def __init__(self, caller: Caller) -> None:
        self.caller = caller
        self.phase = "warm-up"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="steady-load")

    def _run(self) -> None:
        started = time.perf_counter()
        done = 0
        while not self._stop.is_set():
            due = int((time.perf_counter() - started) * RATE_PER_S) + 1
            if due > done:
                self.caller.turns(due - done, self.phase)
                done = due
            else:
                time.sleep(0.0005)

    def __enter__(self) -> SteadyLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def wait_until(condition: Callable[[], bool]) -> None:
    """Flush until `condition` holds: each flush returns once the turns so far are settled."""
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, "condition not met within 30 s"
        assert tokenmeter.flush(timeout=30)


def test_restart_mid_stream_stores_each_once(
    server: LocalPostgres, spool_dir: Path, caller: Caller
) -> None:
    if not server.is_running():
        server.start()
    url = with_query(server.dsn, schema=f"tm_faults_{uuid.uuid4().hex[:12]}")
    configure_fast(spool_dir, url, retry_attempts=3, batch_size=100)

    with SteadyLoad(caller) as load:
        wait_until(lambda: only_sink_stats().delivered >= 1000)
        load.phase = NO_FAULT
        wait_until(lambda: only_sink_stats().delivered >= 6000)

        server.stop("immediate")
        load.phase = FAULT
        wait_until(lambda: only_sink_stats().spooled >= 2000)

        server.start()
        load.phase = "restarted"
        delivered_before = only_sink_stats().delivered
        wait_until(lambda: only_sink_stats().delivered >= delivered_before + 2000)
    assert tokenmeter.flush(timeout=30)

    sink_stats = assert_settled(caller.produced)
    assert sink_stats.failed_batches >= 20
    assert_call_time_within(caller.times_ns)

    replay_in_running_engine(caller)
    assert_each_once(tokenmeter.read_postgres(url), range(1, caller.produced + 1))
    assert spool_files(spool_dir) == []
