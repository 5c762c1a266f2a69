"""SqliteSink: table layout, schema versions, transactions, locking and `check()`."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
import pytest

from tokenmeter.reading import read_sqlite
from tokenmeter.records import SCHEMA_VERSION, UsageRecord
from tokenmeter.sinks import SqliteSink, open_sink
from tokenmeter.sinks.sqlite import COLUMNS, SCHEMA_TABLE

if TYPE_CHECKING:
    from tests.sinks.conftest import RecordFactory

pytestmark = pytest.mark.anyio


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


async def test_locked_database_fails_after_busy_timeout(
    db_path: Path, make_record: RecordFactory
) -> None:
    record = make_record(0)
    await write_and_close(SqliteSink(db_path), [make_record(1)])
    sink = SqliteSink(db_path, busy_timeout_s=0.05)

    with connect(db_path) as other:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            await sink.write([record])
        other.execute("ROLLBACK")

    await write_and_close(sink, [record])
    assert record.id in {stored.id for stored in read_sqlite(db_path)}


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


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
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
