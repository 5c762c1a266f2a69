"""The delivery engine: batching, retries, spooling, replay, flush, shutdown, exit and fork."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Sequence
from pathlib import Path

import anyio
import pytest

import tokenmeter
from tokenmeter import Usage, UsageRecord, meter, metered_turn
from tokenmeter.testing import MemorySink


class FlakySink:
    """Fails its first `failures` writes, then stores records."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts = 0
        self.records: list[UsageRecord] = []

    async def write(self, records: Sequence[UsageRecord]) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise ConnectionError(f"sink down (attempt {self.attempts})")
        self.records.extend(records)

    async def aclose(self) -> None:
        pass


class HangingSink:
    """Blocks every write until `release` is set from another thread."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.records: list[UsageRecord] = []

    async def write(self, records: Sequence[UsageRecord]) -> None:
        await anyio.to_thread.run_sync(self.release.wait, abandon_on_cancel=True)
        self.records.extend(records)

    async def aclose(self) -> None:
        pass


@metered_turn(agent="bot", model="gpt-4o", provider="openai")
def step() -> Usage:
    return Usage(7, 1)


def fast_config(tmp_path: Path, sink: object, **extra: object) -> None:
    settings: dict[str, object] = {
        "spool_dir": tmp_path / "spool",
        "retry_initial_s": 0.001,
        "retry_max_s": 0.005,
        "flush_interval_s": 0.02,
    }
    settings.update(extra)
    tokenmeter.configure(sink=sink, **settings)  # type: ignore[arg-type]


def test_batches_are_delivered(memory_sink: MemorySink) -> None:
    for _ in range(1000):
        step()

    assert tokenmeter.flush(timeout=10)
    assert len(memory_sink.records) == 1000
    assert memory_sink.batches < 1000
    assert tokenmeter.stats().delivered == 1000


def test_failed_writes_are_retried(tmp_path: Path) -> None:
    sink = FlakySink(failures=2)
    fast_config(tmp_path, sink)

    step()

    assert tokenmeter.flush(timeout=10)
    assert len(sink.records) == 1
    stats = tokenmeter.stats()
    [sink_stats] = stats.sinks.values()
    assert sink_stats.retried_batches == 2
    assert sink_stats.spooled == 0


def test_exhausted_retries_spool_then_replay(tmp_path: Path) -> None:
    sink = FlakySink(failures=3)
    fast_config(tmp_path, sink, retry_attempts=3)

    step()
    assert tokenmeter.flush(timeout=10)

    [sink_stats] = tokenmeter.stats().sinks.values()
    assert sink_stats.spooled == 1
    assert sink_stats.failed_batches == 1
    assert sink.records == []
    assert list((tmp_path / "spool").rglob("batch-*.jsonl"))

    step()
    assert tokenmeter.flush(timeout=10)
    tokenmeter.shutdown()

    assert len(sink.records) == 2
    assert len({r.id for r in sink.records}) == 2
    assert not list((tmp_path / "spool").rglob("batch-*.jsonl"))


def test_hanging_sink_never_blocks_caller(tmp_path: Path) -> None:
    sink = HangingSink()
    fast_config(tmp_path, sink, batch_size=10)

    # The sink blocks every write; the caller must still finish all its turns.
    for _ in range(500):
        step()

    assert not tokenmeter.flush(timeout=0.2)
    sink.release.set()
    assert tokenmeter.flush(timeout=10)
    assert len(sink.records) == 500


def test_hanging_sink_times_out_to_spool(tmp_path: Path) -> None:
    sink = HangingSink()
    fast_config(tmp_path, sink, write_timeout_s=0.05, retry_attempts=2)

    step()

    assert tokenmeter.flush(timeout=10)
    [sink_stats] = tokenmeter.stats().sinks.values()
    assert sink_stats.spooled == 1
    assert "TimeoutError" in (sink_stats.last_error or "")


def test_fan_out_to_every_sink(tmp_path: Path) -> None:
    first, second = MemorySink(), MemorySink()
    fast_config(tmp_path, [first, f"jsonl:{tmp_path / 'out.jsonl'}", second])

    step()
    step()

    assert tokenmeter.flush(timeout=10)
    assert len(first.records) == len(second.records) == 2
    assert len(tokenmeter.read_jsonl(tmp_path / "out.jsonl")) == 2


def test_failing_sink_does_not_delay_others(tmp_path: Path) -> None:
    hanging, healthy = HangingSink(), MemorySink()
    fast_config(tmp_path, [hanging, healthy])

    step()

    # flush() waits for every sink, so wait for the healthy one through its own records.
    assert not tokenmeter.flush(timeout=0.3)
    assert len(healthy.records) == 1
    hanging.release.set()


def test_shutdown_is_idempotent(memory_sink: MemorySink) -> None:
    step()

    assert tokenmeter.shutdown(timeout=5)
    assert tokenmeter.shutdown(timeout=5)
    assert len(memory_sink.records) == 1
    assert memory_sink.closed


def test_metering_after_shutdown_restarts(memory_sink: MemorySink) -> None:
    tokenmeter.shutdown(timeout=5)

    step()

    assert tokenmeter.flush(timeout=10)
    assert len(memory_sink.records) == 1


def test_configure_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="invalid sink URL 'ftp://x'"):
        tokenmeter.configure(sink="ftp://x")
    with pytest.raises(
        ValueError, match=r"configure\(batch_size=...\) got 0; expected an int greater than zero"
    ):
        tokenmeter.configure(batch_size=0)
    with pytest.raises(ValueError, match=r"configure\(sink=...\) got 42"):
        tokenmeter.configure(sink=42)
    with pytest.raises(ValueError, match=r"configure\(flush_timeout_s=...\) got -1"):
        tokenmeter.configure(flush_timeout_s=-1)


def test_configure_masks_password_in_errors() -> None:
    with pytest.raises(ValueError, match="invalid sink URL") as caught:
        tokenmeter.configure(sink="ftp://user:hunter2@example.invalid/db")

    assert "hunter2" not in str(caught.value)


def test_disabled_meters_nothing(memory_sink: MemorySink) -> None:
    tokenmeter.configure(enabled=False)

    assert step() == Usage(7, 1)
    assert tokenmeter.flush(timeout=5)
    assert memory_sink.records == []


def run_script(
    code: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_exit_flushes_pending_records(tmp_path: Path) -> None:
    out = tmp_path / "exit.jsonl"
    result = run_script(
        """
        from tokenmeter import Usage, meter
        for _ in range(300):
            with meter(agent="exit", model="gpt-4o") as m:
                m.add(Usage(7, 1))
        """,
        {"TOKENMETER_SINK": f"jsonl:{out}", "TOKENMETER_SPOOL_DIR": str(tmp_path / "spool")},
    )

    assert result.returncode == 0, result.stderr
    assert len(tokenmeter.read_jsonl(out)) == 300


def test_exit_with_hanging_sink_spools_within_timeout(tmp_path: Path) -> None:
    result = run_script(
        """
        import anyio, tokenmeter
        from tokenmeter import Usage, meter

        class Hang:
            spool_key = "hang-test"
            async def write(self, records):
                await anyio.sleep_forever()
            async def aclose(self):
                pass

        tokenmeter.configure(sink=Hang(), flush_timeout_s=0.5)
        for _ in range(5):
            with meter(agent="exit", model="gpt-4o") as m:
                m.add(Usage(7, 1))
        """,
        {"TOKENMETER_SPOOL_DIR": str(tmp_path / "spool")},
    )

    assert result.returncode == 0, result.stderr
    spooled = list((tmp_path / "spool").rglob("batch-*.jsonl"))
    lines = [line for path in spooled for line in path.read_text().splitlines()]
    assert len(lines) == 5
    assert {json.loads(line)["agent"] for line in lines} == {"exit"}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_does_not_resend_parent_records(tmp_path: Path) -> None:
    out = tmp_path / "fork.jsonl"
    tokenmeter.configure(sink=f"jsonl:{out}", spool_dir=tmp_path / "spool", flush_interval_s=60)
    with meter(agent="parent", model="gpt-4o") as m:
        m.add(Usage(1, 1))

    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 0
        try:
            with meter(agent="child", model="gpt-4o") as m:
                m.add(Usage(2, 2))
            code = 0 if tokenmeter.flush(timeout=10) else 3
        except BaseException:
            code = 4
        os._exit(code)
    _, status = os.waitpid(pid, 0)

    assert os.waitstatus_to_exitcode(status) == 0
    assert tokenmeter.flush(timeout=10)
    agents = sorted(r.agent or "" for r in tokenmeter.read_jsonl(out))
    assert agents == ["child", "parent"]


def test_invalid_env_sink_falls_back_to_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = run_script(
        """
        from tokenmeter import Usage, meter
        with meter(agent="fallback", model="gpt-4o") as m:
            m.add(Usage(7, 1))
        """,
        {
            "TOKENMETER_SINK": "bogus://user:s3cret@host/x",
            "TOKENMETER_SPOOL_DIR": str(tmp_path / "spool"),
        },
    )

    assert result.returncode == 0, result.stderr
    assert "TOKENMETER_SINK" in result.stderr
    assert "s3cret" not in result.stderr
    [record] = tokenmeter.read_jsonl(tmp_path / "tokenmeter.jsonl")
    assert record.agent == "fallback"


def test_stats_count_produced(memory_sink: MemorySink) -> None:
    for _ in range(10):
        step()
    tokenmeter.flush(timeout=10)

    stats = tokenmeter.stats()
    assert stats.produced == 10
    assert stats.delivered == 10
    assert stats.dropped == 0


def test_unwritable_env_sink_falls_back_to_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.chdir(tmp_path)
    result = run_script(
        """
        from tokenmeter import Usage, meter
        with meter(agent="fallback", model="gpt-4o") as m:
            m.add(Usage(7, 1))
        """,
        {
            "TOKENMETER_SINK": f"jsonl:{blocker}/usage.jsonl",
            "TOKENMETER_SPOOL_DIR": str(tmp_path / "spool"),
        },
    )

    assert result.returncode == 0, result.stderr
    assert "TOKENMETER_SINK" in result.stderr
    assert "jsonl:./tokenmeter.jsonl" in result.stderr
    [record] = tokenmeter.read_jsonl(tmp_path / "tokenmeter.jsonl")
    assert record.agent == "fallback"


def test_configure_rejects_unwritable_path(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")

    with pytest.raises(ValueError, match="invalid sink URL"):
        tokenmeter.configure(sink=f"jsonl:{blocker}/usage.jsonl")


class ExitingSink:
    """Raises SystemExit from its first write, as a careless client library might."""

    def __init__(self) -> None:
        self.calls = 0
        self.records: list[UsageRecord] = []

    async def write(self, records: Sequence[UsageRecord]) -> None:
        self.calls += 1
        if self.calls == 1:
            raise SystemExit(3)
        self.records.extend(records)

    async def aclose(self) -> None:
        pass


def test_sink_raising_system_exit_is_retried(tmp_path: Path) -> None:
    sink = ExitingSink()
    fast_config(tmp_path, sink)

    step()

    assert tokenmeter.flush(timeout=10)
    assert len(sink.records) == 1
    [sink_stats] = tokenmeter.stats().sinks.values()
    assert "SystemExit" in (sink_stats.last_error or "")


def test_password_with_comma_never_shown() -> None:
    with pytest.raises(ValueError, match="invalid sink URL") as caught:
        tokenmeter.configure(sink="ftp://alice:Sec,retPW@127.0.0.1/db")

    assert "Sec" not in str(caught.value)
    assert "retPW" not in str(caught.value)


def test_infinite_timeouts_rejected_or_unbounded(memory_sink: MemorySink) -> None:
    with pytest.raises(ValueError, match="flush_timeout_s"):
        tokenmeter.configure(flush_timeout_s=float("inf"))

    step()

    assert tokenmeter.flush(float("inf"))
    assert len(memory_sink.records) == 1


def test_invalid_env_entries_share_one_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = run_script(
        """
        import tokenmeter
        from tokenmeter import Usage, meter
        with meter(agent="fallback", model="gpt-4o") as m:
            m.add(Usage(7, 1))
        tokenmeter.flush()
        print(len(tokenmeter.stats().sinks))
        """,
        {"TOKENMETER_SINK": "foo://a,bar://b", "TOKENMETER_SPOOL_DIR": str(tmp_path / "spool")},
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"
    assert len(tokenmeter.read_jsonl(tmp_path / "tokenmeter.jsonl", dedupe=False)) == 1
