"""Sinks that fail on command, a step that numbers its records, and the checks fault tests share."""

from __future__ import annotations

import itertools
import os
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread

import tokenmeter
from tokenmeter import SinkStats, Usage, UsageRecord, metered_turn
from tokenmeter.records import record_from_json

REPO_ROOT = Path(__file__).resolve().parents[2]

NO_FAULT = "no fault"
FAULT = "fault"


@metered_turn(agent="faults", model="gpt-4o", provider="openai")
def step(sequence: int) -> Usage:
    """Meter one turn whose record carries `sequence` as its input token count."""
    return Usage(input_tokens=sequence, output_tokens=1)


@metered_turn(agent="faults", model="gpt-4o", provider="openai")
async def async_step(sequence: int) -> Usage:
    """The async form of `step`; it yields to the event loop once, as an LLM call would."""
    await anyio.lowlevel.checkpoint()
    return Usage(input_tokens=sequence, output_tokens=1)


class Caller:
    """Meters numbered turns the way an agent would, and times each call by phase.

    Sequence numbers start at 1 and come from one counter, so threads may share a caller.
    """

    def __init__(self, first: int = 1) -> None:
        self._numbers = itertools.count(first)
        self.times_ns: dict[str, list[int]] = defaultdict(list)

    def number(self) -> int:
        """Return the next sequence number, for a turn metered by other means."""
        return next(self._numbers)

    def turns(self, count: int, phase: str = NO_FAULT) -> None:
        """Meter `count` turns, each timed on its own with `perf_counter_ns`."""
        times = self.times_ns[phase]
        numbers = self._numbers
        clock = time.perf_counter_ns
        for _ in range(count):
            sequence = next(numbers)
            started = clock()
            step(sequence)
            times.append(clock() - started)

    @property
    def produced(self) -> int:
        return sum(len(times) for times in self.times_ns.values())


def median_call_ns(times: Sequence[int]) -> float:
    return float(statistics.median(times))


def assert_call_time_within(times_ns: dict[str, list[int]], factor: float = 2.0) -> None:
    """Assert that the median call during the fault is at most `factor` times the baseline."""
    baseline = median_call_ns(times_ns[NO_FAULT])
    faulty = median_call_ns(times_ns[FAULT])
    assert faulty <= factor * baseline, (
        f"median call took {faulty:.0f} ns during the fault against {baseline:.0f} ns "
        f"without it ({len(times_ns[FAULT])} and {len(times_ns[NO_FAULT])} calls)"
    )


def configure_fast(spool_dir: Path, sink: Any, **settings: Any) -> None:
    """Configure `sink` with millisecond retries and a spool in `spool_dir`."""
    options: dict[str, Any] = {
        "spool_dir": spool_dir,
        "retry_initial_s": 0.001,
        "retry_max_s": 0.01,
        "flush_interval_s": 0.05,
    }
    options.update(settings)
    tokenmeter.configure(sink=sink, **options)


def only_sink_stats() -> SinkStats:
    """The counters of the one configured sink; all zero before the engine opened it."""
    sinks = list(tokenmeter.stats().sinks.values())
    if not sinks:
        return SinkStats()
    [sink_stats] = sinks
    return sink_stats


def assert_settled(produced: int) -> SinkStats:
    """Assert that each of `produced` turns was delivered or spooled, none dropped or pending."""
    stats = tokenmeter.stats()
    assert stats.produced == produced
    assert stats.queued == 0
    assert stats.build_errors == 0
    [sink_stats] = stats.sinks.values()
    assert sink_stats.pending == 0
    assert sink_stats.dropped == {}
    assert sink_stats.delivered + sink_stats.spooled == produced
    return sink_stats


def assert_each_once(records: Iterable[UsageRecord], sequences: Iterable[int]) -> None:
    """Assert that `records` hold each of `sequences` (their input token count) exactly once."""
    records = list(records)
    ids = [record.id for record in records]
    assert len(set(ids)) == len(ids), f"{len(ids) - len(set(ids))} records stored twice"
    stored = sorted(record.input_tokens or 0 for record in records)
    expected = sorted(sequences)
    missing = sorted(set(expected) - set(stored))
    assert not missing, f"{len(missing)} records missing, first {missing[:5]}"
    unexpected = sorted(set(stored) - set(expected))
    assert not unexpected, f"{len(unexpected)} records not expected, first {unexpected[:5]}"
    assert stored == expected


def spool_files(spool_dir: Path) -> list[Path]:
    """Spooled batch files under `spool_dir`, with those a replay has claimed for now."""
    return sorted(
        path for path in spool_dir.rglob("batch-*.jsonl*") if not path.name.endswith(".partial")
    )


def spooled_records(spool_dir: Path) -> list[UsageRecord]:
    """Read every record waiting in the spool under `spool_dir`, in file order.

    Call it while no engine runs on the spool: a running engine renames files to claim them.
    Files claimed by a process that died are read too, as the next replay takes them over.
    """
    return [
        record_from_json(line)
        for path in spool_files(spool_dir)
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


def recover(sink: Any, spool_dir: Path, caller: Caller, **settings: Any) -> None:
    """Start a new engine on `sink`, which replays the spool first, and wait for it.

    A new engine's sink worker replays the spool before it writes anything else, so once
    flush() has seen one new turn delivered, the replay is over.
    """
    configure_fast(spool_dir, sink, **settings)
    caller.turns(1, phase="recovery")
    assert tokenmeter.flush(timeout=30)


def replay_in_running_engine(caller: Caller) -> None:
    """Wait until the running engine has replayed its spool to a sink that is back up.

    After a successful write the sink worker replays the spool before it takes the next
    batch. So the second of two flushed turns is written only after that replay ended.
    """
    for _ in range(2):
        caller.turns(1, phase="recovery")
        assert tokenmeter.flush(timeout=30)


class SwitchableSink:
    """A memory sink that raises `ConnectionError` while it is down.

    `down()` and `up()` switch it for as long as a test wants. `fail_next(n)` takes it down
    for its next `n` write attempts only, as a server restarting would.
    """

    spool_key = "tests.faults.switchable"

    def __init__(self) -> None:
        self.records: list[UsageRecord] = []
        self.attempts = 0
        self.failed_attempts = 0
        self.fail_every = 0
        """When above zero, every `fail_every`-th attempt fails even while the sink is up."""
        self._down = threading.Event()
        self._failures_left = 0

    def down(self) -> None:
        self._down.set()

    def up(self) -> None:
        self._down.clear()

    def fail_next(self, attempts: int) -> None:
        self._failures_left = attempts

    async def write(self, records: Sequence[UsageRecord]) -> None:
        self.attempts += 1
        failing = self._down.is_set() or self._failures_left > 0
        if self.fail_every and self.attempts % self.fail_every == 0:
            failing = True
        if failing:
            self._failures_left = max(0, self._failures_left - 1)
            self.failed_attempts += 1
            raise ConnectionError(f"sink is down (attempt {self.attempts})")
        self.records.extend(records)

    async def aclose(self) -> None:
        pass


class HangingSink:
    """A memory sink whose writes hang until `release` is set.

    With `cancellable=True` a hanging write ends when tokenmeter cancels it, like an async
    client. With `cancellable=False` it ignores cancellation, like a blocking client library
    called in a worker thread.
    """

    spool_key = "tests.faults.hanging"

    def __init__(self, *, cancellable: bool) -> None:
        self.cancellable = cancellable
        self.records: list[UsageRecord] = []
        self.release = threading.Event()
        self.entered = threading.Event()
        """Set when the first write starts."""

    async def write(self, records: Sequence[UsageRecord]) -> None:
        self.entered.set()
        await anyio.to_thread.run_sync(self.release.wait, abandon_on_cancel=self.cancellable)
        self.records.extend(records)

    async def aclose(self) -> None:
        pass


class SlowSink:
    """A memory sink that takes `delay_s` seconds for every batch."""

    spool_key = "tests.faults.slow"

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.records: list[UsageRecord] = []
        self.batches = 0

    async def write(self, records: Sequence[UsageRecord]) -> None:
        if self.delay_s:
            await anyio.sleep(self.delay_s)
        self.records.extend(records)
        self.batches += 1

    async def aclose(self) -> None:
        pass


# --- subprocesses --------------------------------------------------------------------------


def child_env(**variables: str) -> dict[str, str]:
    """The environment of a Python child that imports tokenmeter and this test package."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
    env.update(variables)
    return env


def start_python(
    code: str, *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """Start `python -c code ARGS...` in `cwd`, with pipes for stdin, stdout and stderr.

    The working directory matters: a misconfigured tokenmeter writes `./tokenmeter.jsonl`.
    """
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=env or child_env(),
        cwd=cwd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_python(
    code: str, *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run `python -c code ARGS...` in `cwd` to the end and capture its output."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=env or child_env(),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_replay(sink_url: str, spool_dir: Path) -> subprocess.CompletedProcess[str]:
    """Run `python -m tokenmeter replay SINK_URL --spool-dir SPOOL_DIR` in the spool's parent."""
    return subprocess.run(
        [sys.executable, "-m", "tokenmeter", "replay", sink_url, "--spool-dir", str(spool_dir)],
        env=child_env(),
        cwd=spool_dir.parent,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# --- multiprocessing workers: module-level, so that spawned children can import them --------


def meter_range(first: int, count: int) -> int:
    """Meter turns numbered `first` to `first + count - 1`; return `count`. Flushes nothing."""
    for sequence in range(first, first + count):
        step(sequence)
    return count


def meter_range_tuple(arguments: tuple[int, int]) -> int:
    return meter_range(*arguments)
