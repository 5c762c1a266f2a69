"""1,000 asyncio tasks and 8 threads metering at once, with the sink up and then down."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import tokenmeter
from tests.faults.fault_support import (
    FAULT,
    NO_FAULT,
    Caller,
    SwitchableSink,
    assert_call_time_within,
    assert_each_once,
    assert_settled,
    async_step,
    configure_fast,
    replay_in_running_engine,
    spool_files,
)

THREADS = 8
TURNS_PER_THREAD = 1_000
TASKS = 1_000
TURNS_PER_TASK = 3


def meter_concurrently(caller: Caller, phase: str) -> None:
    """Meter from 8 threads and 1,000 asyncio tasks started together; fail on any exception."""
    start = threading.Barrier(THREADS + 1)
    errors: list[BaseException] = []

    def thread_body() -> None:
        try:
            start.wait(timeout=30)
            caller.turns(TURNS_PER_THREAD, phase)
        except BaseException as error:
            errors.append(error)

    async def task_body() -> None:
        for _ in range(TURNS_PER_TASK):
            await async_step(caller.number())

    async def all_tasks() -> None:
        start.wait(timeout=30)
        await asyncio.gather(*(task_body() for _ in range(TASKS)))
        assert await tokenmeter.aflush(timeout=30)

    threads = [threading.Thread(target=thread_body) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    asyncio.run(all_tasks())
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert not any(thread.is_alive() for thread in threads)


def test_tasks_and_threads_lose_nothing(spool_dir: Path, caller: Caller) -> None:
    sink = SwitchableSink()
    configure_fast(spool_dir, sink, retry_attempts=2)

    meter_concurrently(caller, NO_FAULT)
    assert tokenmeter.flush(timeout=30)
    sink.down()
    meter_concurrently(caller, FAULT)
    assert tokenmeter.flush(timeout=30)

    produced = 2 * (THREADS * TURNS_PER_THREAD + TASKS * TURNS_PER_TASK)
    sink_stats = assert_settled(produced)
    assert sink_stats.spooled >= produced // 2
    assert_call_time_within(caller.times_ns)

    sink.up()
    replay_in_running_engine(caller)
    assert_each_once(sink.records, range(1, produced + 3))
    assert spool_files(spool_dir) == []
