"""A sink down for a while, or raising on every write: spooled, replayed, each record once."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import tokenmeter
from tests.faults.fault_support import (
    FAULT,
    NO_FAULT,
    Caller,
    SwitchableSink,
    assert_call_time_within,
    assert_each_once,
    assert_settled,
    configure_fast,
    only_sink_stats,
    recover,
    replay_in_running_engine,
    spool_files,
    spooled_records,
)

CHUNK = 1000
ROUNDS = 6


def test_repeated_outages_lose_nothing(
    spool_dir: Path, caller: Caller, caplog: pytest.LogCaptureFixture
) -> None:
    sink = SwitchableSink()
    configure_fast(spool_dir, sink, retry_attempts=3)
    caller.turns(CHUNK, phase="warm-up")
    assert tokenmeter.flush(timeout=30)

    # Outages alternate with healthy spells, so the machine's load changes hit both phases.
    with caplog.at_level(logging.WARNING, logger="tokenmeter"):
        for _ in range(ROUNDS):
            caller.turns(CHUNK, NO_FAULT)
            assert tokenmeter.flush(timeout=30)
            sink.down()
            caller.turns(CHUNK, FAULT)
            assert tokenmeter.flush(timeout=30)
            sink.up()

    sink_stats = assert_settled(caller.produced)
    assert sink_stats.spooled >= CHUNK
    assert sink_stats.failed_batches >= ROUNDS
    assert "sink is down" in caplog.text
    assert_call_time_within(caller.times_ns)

    replay_in_running_engine(caller)
    assert_each_once(sink.records, range(1, caller.produced + 1))
    assert spool_files(spool_dir) == []
    assert only_sink_stats().replayed == only_sink_stats().spooled


def test_outage_ending_mid_stream_loses_nothing(spool_dir: Path, caller: Caller) -> None:
    sink = SwitchableSink()
    configure_fast(spool_dir, sink, retry_attempts=3, batch_size=100)
    # Seven failed attempts: the first batch exhausts its three attempts and goes to the
    # spool. The sink then counts as down, so each next batch gets one attempt: four more
    # batches fail once each and are spooled, and the sixth is written, while no one switches
    # the sink back on.
    sink.fail_next(7)

    caller.turns(1000)
    assert tokenmeter.flush(timeout=30)

    sink_stats = assert_settled(caller.produced)
    assert sink_stats.spooled == 500
    assert sink_stats.failed_batches == 5
    assert sink.failed_attempts == 7

    replay_in_running_engine(caller)
    assert_each_once(sink.records, range(1, caller.produced + 1))
    assert spool_files(spool_dir) == []


def test_sink_raising_every_write_spools_all(spool_dir: Path, caller: Caller) -> None:
    sink = SwitchableSink()
    configure_fast(spool_dir, sink, retry_attempts=3)
    caller.turns(CHUNK, phase="warm-up")
    caller.turns(5 * CHUNK, NO_FAULT)
    assert tokenmeter.flush(timeout=30)
    healthy = caller.produced

    sink.down()
    caller.turns(5 * CHUNK, FAULT)
    assert tokenmeter.flush(timeout=30)

    sink_stats = assert_settled(caller.produced)
    assert sink_stats.delivered == healthy
    assert sink_stats.spooled == caller.produced - healthy
    assert_call_time_within(caller.times_ns)
    # A running engine renames spool files while it tries to replay them, so read the spool
    # after the engine stopped.
    assert tokenmeter.shutdown(timeout=10)
    assert_each_once(spooled_records(spool_dir), range(healthy + 1, caller.produced + 1))

    # A later process with the sink back replays the spool before anything else.
    sink.up()
    recover(sink, spool_dir, caller)
    assert_each_once(sink.records, range(1, caller.produced + 1))
    assert spool_files(spool_dir) == []


def test_sink_broken_before_start_spools_for_it(
    spool_dir: Path, caller: Caller, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "usage.jsonl"
    configure_fast(spool_dir, f"jsonl:{out}", retry_attempts=2)
    # The path breaks after configure() checked it and before the engine opens the sink.
    out.mkdir()

    caller.turns(10)
    assert tokenmeter.flush(timeout=30)

    # The records wait in the spool of the configured sink, where `tokenmeter replay` looks,
    # rather than going to another file.
    assert not (tmp_path / "tokenmeter.jsonl").exists()
    [label] = tokenmeter.stats().sinks
    assert label == f"jsonl:{out}"
    assert assert_settled(10).spooled == 10
