"""SQLite file locked by another process: writes fail, batches spool, replay stores each once."""

from __future__ import annotations

from collections.abc import Iterator
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
    recover,
    replay_in_running_engine,
    spool_files,
    start_python,
)
from tokenmeter.sinks.sqlite import SqliteSink

CHUNK = 1000

# Takes and releases SQLite's write lock from another process, one stdin command a line.
LOCKER = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
for command in sys.stdin:
    if command.strip() == "lock":
        connection.execute("BEGIN EXCLUSIVE")
    else:
        connection.execute("COMMIT")
    print(command.strip(), flush=True)
"""


class Locker:
    """Another process that takes and releases the exclusive lock of one SQLite file."""

    def __init__(self, database: Path) -> None:
        self.process = start_python(LOCKER, str(database), cwd=database.parent)

    def _command(self, command: str) -> None:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline().strip()
        assert answer == command, self.process.stderr.read() if self.process.stderr else ""

    def lock(self) -> None:
        self._command("lock")

    def unlock(self) -> None:
        self._command("unlock")

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=30)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "usage.db"


@pytest.fixture
def locker(database: Path) -> Iterator[Locker]:
    process = Locker(database)
    yield process
    process.close()


def stored(database: Path) -> list[tokenmeter.UsageRecord]:
    return tokenmeter.read_sqlite(f"sqlite:///{database}")


def test_locked_database_spools_then_replays(
    spool_dir: Path, caller: Caller, database: Path, locker: Locker
) -> None:
    # A short busy timeout makes each locked attempt fail fast; the default waits 5 s.
    sink = SqliteSink(database, busy_timeout_s=0.05)
    configure_fast(spool_dir, sink, retry_attempts=3, batch_size=500)
    caller.turns(CHUNK, phase="warm-up")
    assert tokenmeter.flush(timeout=30)

    for _ in range(3):
        caller.turns(CHUNK, NO_FAULT)
        assert tokenmeter.flush(timeout=30)
        locker.lock()
        caller.turns(CHUNK, FAULT)
        assert tokenmeter.flush(timeout=30)
        locker.unlock()

    sink_stats = assert_settled(caller.produced)
    assert sink_stats.spooled >= CHUNK
    assert "database is locked" in (sink_stats.last_error or "")
    assert_call_time_within(caller.times_ns)

    replay_in_running_engine(caller)
    assert_each_once(stored(database), range(1, caller.produced + 1))
    assert spool_files(spool_dir) == []


def test_spooled_batches_stay_with_their_database(
    spool_dir: Path, caller: Caller, tmp_path: Path, database: Path, locker: Locker
) -> None:
    configure_fast(spool_dir, SqliteSink(database, busy_timeout_s=0.05), retry_attempts=2)
    locker.lock()
    caller.turns(300)
    assert tokenmeter.flush(timeout=30)
    locker.unlock()
    assert assert_settled(caller.produced).spooled == 300

    # A later process writes to another database. The batches spooled for the first one
    # are not its records, and replaying them there would take them from their own sink.
    other = tmp_path / "other.db"
    configure_fast(spool_dir, SqliteSink(other, busy_timeout_s=0.05))
    caller.turns(1, phase="other database")
    assert tokenmeter.flush(timeout=30)
    assert_each_once(stored(other), [301])

    recover(SqliteSink(database, busy_timeout_s=0.05), spool_dir, caller)
    assert_each_once(stored(database), [*range(1, 301), 302])
