"""SqliteSink: table layout, schema versions, transactions, locking and `check()`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import pytest

from tests.sinks.conftest import build_batch, build_record
from tokenmeter.reading import read_sqlite
from tokenmeter.records import SCHEMA_VERSION, UsageRecord, trusted_record
from tokenmeter.sinks import SqliteSink, open_sink
from tokenmeter.sinks.sqlite import (
    COLUMNS,
    JSON_COLUMNS,
    SCHEMA_TABLE,
    TIME_COLUMNS,
    format_timestamp,
    record_to_row,
)

if TYPE_CHECKING:
    from tests.sinks.conftest import RecordFactory

pytestmark = pytest.mark.anyio

COLUMN_NAMES = [name for name, _ in COLUMNS]


@pytest.fixture
def anyio_backend() -> str:
    # aiosqlite runs on asyncio only, as does tokenmeter's delivery thread.
    return "asyncio"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "usage.db"


@contextlib.contextmanager
def connect(path: Path) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        yield connection
    finally:
        connection.close()


async def write_and_close(sink: SqliteSink, records: list[UsageRecord]) -> None:
    try:
        await sink.write(records)
    finally:
        await sink.aclose()


async def test_creates_table_with_typed_columns(db_path: Path, batch: list[UsageRecord]) -> None:
    await write_and_close(SqliteSink(db_path), batch)

    with connect(db_path) as connection:
        info = connection.execute('PRAGMA table_info("llm_usage")').fetchall()
    declared = [(row[1], row[2], bool(row[3]), bool(row[5])) for row in info]
    assert declared == [
        (name, kind.split()[0], "NOT NULL" in kind, "PRIMARY KEY" in kind) for name, kind in COLUMNS
    ]


def test_every_record_field_has_column() -> None:
    assert {name for name, _ in COLUMNS} == set(UsageRecord.model_fields)


def test_row_matches_model_dump(batch: list[UsageRecord]) -> None:
    # The delivery thread builds records without validation, fields in any order.
    shuffled = trusted_record(dict(reversed(list(batch[3].__dict__.items()))))

    for record in [*batch, shuffled]:
        assert record_to_row(record) == row_through_model_dump(record)


def test_row_json_matches_model_dump(make_record: RecordFactory) -> None:
    record = make_record(
        0,
        parent_id=uuid.uuid4(),
        duration_ms=float("inf"),
        cost_usd=Decimal("1E-7"),
        details={"web_search_requests": 3},
        tags=["ünïcødé", 'quote " and \\ backslash', "line\nbreak\u2028"],
        metadata={
            "when": datetime(2026, 5, 1, 12, 0, tzinfo=UTC),
            "id": uuid.UUID(int=7),
            "amount": Decimal("1.50"),
            "floats": [0.1, 1e16, 1e-7, float("inf"), float("nan")],
            "pair": (1, "two"),
            "missing": None,
        },
    )

    row = dict(zip(COLUMN_NAMES, record_to_row(record), strict=True))
    expected = dict(zip(COLUMN_NAMES, row_through_model_dump(record), strict=True))

    # pydantic writes 1e-7 where json.dumps writes 1e-07: the same JSON number.
    for name in COLUMN_NAMES:
        if name in JSON_COLUMNS:
            assert json.loads(row[name]) == json.loads(expected[name])
        else:
            assert row[name] == expected[name]
    assert row["metadata"].endswith('[0.1,1e+16,1e-7,null,null],"pair":[1,"two"],"missing":null}')


def row_through_model_dump(record: UsageRecord) -> tuple[Any, ...]:
    data = record.model_dump(mode="json")
    for column in TIME_COLUMNS:
        moment = getattr(record, column)
        data[column] = None if moment is None else format_timestamp(moment)
    for column in JSON_COLUMNS:
        if data[column] is not None:
            data[column] = json.dumps(data[column], separators=(",", ":"), ensure_ascii=False)
    return tuple(data[name] for name in COLUMN_NAMES)


async def test_costs_stored_as_exact_text(db_path: Path, make_record: RecordFactory) -> None:
    record = make_record(0, cost_usd=Decimal("0.000012345678901234567890"))

    await write_and_close(SqliteSink(db_path), [record])

    with connect(db_path) as connection:
        row = connection.execute("SELECT cost_usd, typeof(cost_usd) FROM llm_usage").fetchone()
    assert row == ("0.000012345678901234567890", "text")


async def test_timestamps_stored_as_utc_iso_text(db_path: Path, make_record: RecordFactory) -> None:
    await write_and_close(SqliteSink(db_path), [make_record(0)])

    with connect(db_path) as connection:
        row = connection.execute("SELECT timestamp, datetime(timestamp) FROM llm_usage").fetchone()
    assert row == ("2026-05-01T12:00:00.123456+00:00", "2026-05-01 12:00:00")


async def test_json_columns_hold_json(db_path: Path, batch: list[UsageRecord]) -> None:
    await write_and_close(SqliteSink(db_path), batch)

    with connect(db_path) as connection:
        tags = connection.execute(
            "SELECT json_extract(tags, '$[0]'), json_extract(metadata, '$.user') "
            "FROM llm_usage WHERE id = ?",
            (str(batch[4].id),),
        ).fetchone()
        models = connection.execute(
            "SELECT json_extract(by_model, '$[1].model'), json_extract(by_model, '$[0].cost_usd') "
            "FROM llm_usage WHERE id = ?",
            (str(batch[3].id),),
        ).fetchone()
    assert tags == ("prod", "ünïcødé")
    assert models == ("claude-sonnet-4-5", "0.0100000000000000000001")


async def test_uses_wal_journal(db_path: Path, batch: list[UsageRecord]) -> None:
    await write_and_close(SqliteSink(db_path), batch)

    with connect(db_path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_creates_indexes(db_path: Path, batch: list[UsageRecord]) -> None:
    await write_and_close(SqliteSink(db_path), batch)

    with connect(db_path) as connection:
        indexes = {
            row[1]: [column[2] for column in connection.execute(f'PRAGMA index_info("{row[1]}")')]
            for row in connection.execute('PRAGMA index_list("llm_usage")')
            if row[3] == "c"
        }
    assert indexes == {
        "llm_usage_timestamp_idx": ["timestamp"],
        "llm_usage_agent_timestamp_idx": ["agent", "timestamp"],
        "llm_usage_model_timestamp_idx": ["model", "timestamp"],
    }


async def test_records_schema_version_once(db_path: Path, make_record: RecordFactory) -> None:
    await write_and_close(SqliteSink(db_path), [make_record(0)])
    await write_and_close(SqliteSink(db_path), [make_record(1)])

    with connect(db_path) as connection:
        rows = connection.execute(f"SELECT table_name, version FROM {SCHEMA_TABLE}").fetchall()
    assert rows == [("llm_usage", SCHEMA_VERSION)]


async def test_table_parameter_names_table(db_path: Path, batch: list[UsageRecord]) -> None:
    url = f"sqlite:///{db_path}?table=agent_costs"

    sink = open_sink(url)
    await sink.write(batch)
    await sink.aclose()

    assert read_sqlite(url) == sorted(batch, key=lambda record: (record.timestamp, str(record.id)))
    with connect(db_path) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert "agent_costs" in tables
    assert "llm_usage" not in tables


async def test_failed_batch_stores_nothing(db_path: Path, make_record: RecordFactory) -> None:
    records = [make_record(0), make_record(1), make_record(2, agent="boom"), make_record(3)]
    sink = SqliteSink(db_path)
    await sink.write(records[:1])
    with connect(db_path) as connection:
        connection.execute(
            "CREATE TRIGGER reject_boom BEFORE INSERT ON llm_usage WHEN NEW.agent = 'boom' "
            "BEGIN SELECT RAISE(ABORT, 'agent boom rejected'); END"
        )

    with pytest.raises(sqlite3.IntegrityError, match="agent boom rejected"):
        await sink.write(records)
    assert [record.id for record in read_sqlite(db_path)] == [records[0].id]

    with connect(db_path) as connection:
        connection.execute("DROP TRIGGER reject_boom")
    await write_and_close(sink, records)

    assert {record.id for record in read_sqlite(db_path)} == {record.id for record in records}


@pytest.mark.parametrize("table_exists", [True, False], ids=["existing-table", "new-file"])
async def test_locked_database_fails_after_busy_timeout(
    db_path: Path, make_record: RecordFactory, table_exists: bool
) -> None:
    busy_timeout_s = 0.2
    earlier, record = make_record(0), make_record(1)
    if table_exists:
        await write_and_close(SqliteSink(db_path), [earlier])
    sink = SqliteSink(db_path, busy_timeout_s=busy_timeout_s)

    with connect(db_path) as other:
        other.execute("BEGIN EXCLUSIVE")
        started = time.monotonic()
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            await sink.write([record])
        waited_s = time.monotonic() - started
        other.execute("ROLLBACK")

    await write_and_close(sink, [record])
    # SQLite's busy handler sleeps in steps that add up to the timeout. The 10 ms margin
    # allows for clock resolution.
    assert waited_s >= busy_timeout_s - 0.01
    stored = {stored.id for stored in read_sqlite(db_path)}
    assert stored == ({earlier.id, record.id} if table_exists else {record.id})


async def test_cancelled_write_rolls_back(db_path: Path, make_record: RecordFactory) -> None:
    first, cancelled, last = make_record(0), make_record(1), make_record(2)
    sink = SqliteSink(db_path, busy_timeout_s=30)
    await sink.write([first])

    with connect(db_path) as other:
        other.execute("BEGIN EXCLUSIVE")
        # The sink's BEGIN IMMEDIATE waits for the lock on aiosqlite's thread, and goes on
        # waiting after the cancellation.
        with anyio.move_on_after(0.1) as scope:
            await sink.write([cancelled])
        other.execute("ROLLBACK")

    await write_and_close(sink, [last])
    assert scope.cancelled_caught
    assert {record.id for record in read_sqlite(db_path)} == {first.id, last.id}


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_write_under_trio_raises(db_path: Path, make_record: RecordFactory) -> None:
    sink = SqliteSink(db_path)

    with pytest.raises(RuntimeError, match="needs a running asyncio event loop"):
        await sink.write([make_record(0)])
    await sink.aclose()

    assert not await anyio.Path(db_path).exists()


async def test_newer_schema_version_raises(db_path: Path, make_record: RecordFactory) -> None:
    await write_and_close(SqliteSink(db_path), [make_record(0)])
    with connect(db_path) as connection:
        connection.execute(f"UPDATE {SCHEMA_TABLE} SET version = ?", (SCHEMA_VERSION + 1,))
    sink = SqliteSink(db_path)

    with pytest.raises(RuntimeError) as raised:
        await sink.write([make_record(1)])
    await sink.aclose()

    assert str(raised.value) == (
        f"table 'llm_usage' in SqliteSink(url='sqlite:///{db_path}') has schema version "
        f"{SCHEMA_VERSION + 1}, written by a newer tokenmeter; this one writes version "
        f"{SCHEMA_VERSION}. Upgrade tokenmeter, or write to another table with ?table=NAME"
    )
    assert len(read_sqlite(db_path)) == 1


async def test_adds_missing_columns(db_path: Path, make_record: RecordFactory) -> None:
    with connect(db_path) as connection:
        connection.execute(
            "CREATE TABLE llm_usage (id TEXT PRIMARY KEY NOT NULL, timestamp TEXT NOT NULL, "
            "run_id TEXT NOT NULL, rounds INTEGER NOT NULL)"
        )
    record = make_record(0)

    await write_and_close(SqliteSink(db_path), [record])

    with connect(db_path) as connection:
        names = [row[1] for row in connection.execute('PRAGMA table_info("llm_usage")')]
    assert set(names) == {name for name, _ in COLUMNS}
    assert read_sqlite(db_path) == [record]


async def test_foreign_table_raises(db_path: Path, make_record: RecordFactory) -> None:
    with connect(db_path) as connection:
        connection.execute("CREATE TABLE llm_usage (name TEXT)")
    sink = SqliteSink(db_path)

    with pytest.raises(RuntimeError, match="has no 'id' column"):
        await sink.write([make_record(0)])
    await sink.aclose()


async def test_memory_database_keeps_records_per_sink(make_record: RecordFactory) -> None:
    sink = open_sink("sqlite:///:memory:")

    await sink.write([make_record(0)])
    await sink.write([make_record(0), make_record(1)])
    await sink.aclose()

    assert repr(sink) == "SqliteSink(url='sqlite:///:memory:')"


def test_open_sink_does_no_io(tmp_path: Path) -> None:
    path = tmp_path / "new" / "usage.db"

    open_sink(f"sqlite:///{path}")

    assert not path.parent.exists()


def test_check_rejects_file_as_parent(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("not a directory")

    with pytest.raises(NotADirectoryError, match="is a file, not a directory"):
        open_sink(f"sqlite:///{tmp_path / 'file.txt' / 'usage.db'}", check=True)


def test_check_passes_for_creatable_path(tmp_path: Path) -> None:
    sink = open_sink(f"sqlite:///{tmp_path / 'new' / 'usage.db'}", check=True)

    assert isinstance(sink, SqliteSink)
    assert not (tmp_path / "new").exists()


def test_invalid_table_argument_raises(db_path: Path) -> None:
    with pytest.raises(ValueError, match="invalid table=") as raised:
        SqliteSink(db_path, table="llm usage")

    assert str(raised.value) == (
        "invalid table='llm usage': expected an SQL identifier, a letter or underscore "
        "followed by up to 62 letters, digits or underscores"
    )


def test_repr_shows_url(db_path: Path) -> None:
    assert repr(SqliteSink(db_path, table="turns")) == (
        f"SqliteSink(url='sqlite:///{db_path}?table=turns')"
    )


# Python 3.12 and later warn that fork() in a process with threads may deadlock the child.
# The sink's aiosqlite thread is idle here, waiting on its queue and holding no SQLite lock.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
async def test_forked_child_opens_own_connection(db_path: Path, make_record: RecordFactory) -> None:
    parent_first, child_record, parent_second = make_record(0), make_record(1), make_record(2)
    sink = SqliteSink(db_path)
    await sink.write([parent_first])

    pid = os.fork()
    if pid == 0:
        # The child is still inside the parent's running event loop, so it writes from a new
        # thread with a loop of its own. os._exit skips pytest's teardown in the child.
        outcome: list[BaseException | None] = []
        child = threading.Thread(target=_write_in_new_loop, args=(sink, child_record, outcome))
        child.start()
        child.join()
        os._exit(0 if outcome == [None] else 1)
    _, status = await anyio.to_thread.run_sync(os.waitpid, pid, 0)

    await write_and_close(sink, [parent_second])
    assert os.waitstatus_to_exitcode(status) == 0
    stored = {record.id for record in read_sqlite(db_path)}
    assert stored == {parent_first.id, child_record.id, parent_second.id}


def _write_in_new_loop(
    sink: SqliteSink, record: UsageRecord, outcome: list[BaseException | None]
) -> None:
    try:
        anyio.run(write_and_close, sink, [record])
    except BaseException as error:
        outcome.append(error)
    else:
        outcome.append(None)


PROCESSES = 4
RECORDS_PER_PROCESS = 2_000
SHARED_RECORDS = 200


def test_processes_share_one_file(db_path: Path, make_record: RecordFactory) -> None:
    # Every process writes its own records, the same shared records as the others, and its
    # first batch twice, all into a file none of them has created yet.
    shared = [
        make_record(index, id=uuid.UUID(int=(PROCESSES << 32) | index))
        for index in range(SHARED_RECORDS)
    ]
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    processes = []
    for worker in range(PROCESSES):
        own = [
            make_record(index, id=uuid.UUID(int=(worker << 32) | index))
            for index in range(RECORDS_PER_PROCESS)
        ]
        batches = [own[:100], *_batches(own[: RECORDS_PER_PROCESS // 2] + shared, 100)]
        batches += _batches(own[RECORDS_PER_PROCESS // 2 :], 100)
        process = context.Process(target=_write_batches, args=(db_path, batches, barrier))
        process.start()
        processes.append(process)
    for process in processes:
        process.join(timeout=50)

    assert [process.exitcode for process in processes] == [0] * PROCESSES
    with connect(db_path) as connection:
        counted = connection.execute("SELECT count(*), count(DISTINCT id) FROM llm_usage")
        total, distinct = counted.fetchone()
    assert total == PROCESSES * RECORDS_PER_PROCESS + SHARED_RECORDS
    assert distinct == total


def _batches(records: list[UsageRecord], size: int) -> list[list[UsageRecord]]:
    return [records[start : start + size] for start in range(0, len(records), size)]


def _write_batches(path: Path, batches: list[list[UsageRecord]], barrier: Barrier) -> None:
    async def write_all() -> None:
        sink = SqliteSink(path)
        try:
            for batch in batches:
                await sink.write(batch)
        finally:
            await sink.aclose()

    # Start together, so the processes also race to create the table.
    barrier.wait(timeout=30)
    asyncio.run(write_all())


def test_unclosed_sink_lets_interpreter_exit(db_path: Path) -> None:
    # Python joins non-daemon threads before it runs atexit handlers. A sink written from the
    # main thread and never closed must not keep the process alive through aiosqlite's thread.
    code = """
        import asyncio, sys, uuid
        from datetime import UTC, datetime
        from tokenmeter.records import UsageRecord
        from tokenmeter.sinks import SqliteSink

        sink = SqliteSink(sys.argv[1])
        record = UsageRecord(id=uuid.uuid4(), timestamp=datetime.now(UTC), run_id=uuid.uuid4())
        asyncio.run(sink.write([record]))
    """

    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), str(db_path)],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert len(read_sqlite(db_path)) == 1


def test_deleted_database_file_is_reopened(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    sink = SqliteSink.from_url(f"sqlite:///{path}")
    first, second = build_batch(3), [build_record(10 + n) for n in range(3)]

    async def run() -> None:
        await sink.write(first)
        path.unlink()
        await sink.write(second)
        await sink.aclose()

    asyncio.run(run())

    with contextlib.closing(sqlite3.connect(path)) as connection:
        ids = {row[0] for row in connection.execute("SELECT id FROM llm_usage")}
    assert ids == {str(record.id) for record in second}
