"""`SqliteSink`: inserts records into a SQLite table, once per record id."""

from __future__ import annotations

import asyncio
import json
import logging
import operator
import os
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite
from pydantic_core import SchemaSerializer, core_schema

from tokenmeter.records import SCHEMA_VERSION, Repricing, UsageRecord
from tokenmeter.sinks.jsonl import check_writable_path
from tokenmeter.sinks.urls import DEFAULT_TABLE, parse_sqlite_url, validate_identifier

__all__ = [
    "COLUMNS",
    "DECIMAL_COLUMNS",
    "JSON_COLUMNS",
    "SCHEMA_TABLE",
    "TIME_COLUMNS",
    "SqliteSink",
    "format_timestamp",
    "record_to_row",
    "row_to_record",
]

logger = logging.getLogger(__name__)

SCHEMA_TABLE = "tokenmeter_schema"
"""The table that stores, per usage table, the `SCHEMA_VERSION` its layout follows."""

COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "TEXT PRIMARY KEY NOT NULL"),
    ("timestamp", "TEXT NOT NULL"),
    ("duration_ms", "REAL"),
    ("run_id", "TEXT NOT NULL"),
    ("parent_id", "TEXT"),
    ("agent", "TEXT"),
    ("name", "TEXT"),
    ("model", "TEXT"),
    ("provider", "TEXT"),
    ("status", "TEXT NOT NULL"),
    ("error_type", "TEXT"),
    ("rounds", "INTEGER NOT NULL"),
    ("unmeasured_rounds", "INTEGER NOT NULL"),
    ("input_tokens", "INTEGER"),
    ("cache_read_tokens", "INTEGER"),
    ("cache_write_tokens", "INTEGER"),
    ("output_tokens", "INTEGER"),
    ("reasoning_tokens", "INTEGER"),
    ("cost_usd", "TEXT"),
    ("price_status", "TEXT NOT NULL"),
    ("price_source", "TEXT"),
    ("schema_version", "INTEGER NOT NULL"),
    ("details", "TEXT NOT NULL"),
    ("by_model", "TEXT NOT NULL"),
    ("tags", "TEXT NOT NULL"),
    ("metadata", "TEXT NOT NULL"),
    # Schema version 2. A table of version 1 gets these columns added, NULL in its old rows.
    ("input_cost_usd", "TEXT"),
    ("cache_read_cost_usd", "TEXT"),
    ("cache_write_cost_usd", "TEXT"),
    ("output_cost_usd", "TEXT"),
    ("other_cost_usd", "TEXT"),
    ("priced_at", "TEXT"),
    ("reported_cost_usd", "TEXT"),
    ("rounds_usage", "TEXT"),
    ("repriced_cost_usd", "TEXT"),
    ("repriced_at", "TEXT"),
    ("repriced_source", "TEXT"),
)
"""The columns of the usage table and their SQLite types, one per `UsageRecord` field.

Costs are TEXT holding the exact decimal digits, because SQLite's REAL is a binary float.
Times are ISO 8601 in UTC with microseconds (`2026-05-01T12:00:00.000000+00:00`), so text
order is time order and SQLite's date functions read them.
"""

JSON_COLUMNS = frozenset({"details", "by_model", "tags", "metadata", "rounds_usage"})
"""Columns holding JSON text. Costs inside `by_model` are JSON strings, to stay exact.
`rounds_usage` is NULL, not JSON `null`, in records without it."""

DECIMAL_COLUMNS = frozenset(
    {
        "cost_usd",
        "input_cost_usd",
        "cache_read_cost_usd",
        "cache_write_cost_usd",
        "output_cost_usd",
        "other_cost_usd",
        "reported_cost_usd",
        "repriced_cost_usd",
    }
)
"""Columns holding a cost as TEXT with its exact decimal digits, or NULL."""

TIME_COLUMNS = frozenset({"timestamp", "priced_at", "repriced_at"})
"""Columns holding a time as ISO 8601 TEXT in UTC, as `format_timestamp` writes it."""

_COLUMN_NAMES = tuple(name for name, _ in COLUMNS)
_OPTIONAL_TIME_COLUMNS = tuple(sorted(TIME_COLUMNS - {"timestamp"}))

_INDEXES = (
    ("timestamp_idx", "timestamp"),
    ("agent_timestamp_idx", "agent, timestamp"),
    ("model_timestamp_idx", "model, timestamp"),
)


_select_columns = operator.itemgetter(*_COLUMN_NAMES)

# SQLite checkpoints the WAL into the database file every 1,000 pages by default. Random
# record ids spread each batch over the primary-key index: from 100,000 rows on, a batch of
# 1,000 records wrote 1,000 to 1,200 WAL pages, so nearly every commit ran a checkpoint.
# Every 10,000 pages (about 40 MiB at SQLite's default 4 KiB page) made
# tests/benchmarks/bench_sqlite.py about 1.8 times faster on a 2-core AMD EPYC virtual
# machine. The cost: the WAL file grows that large while a connection is open, and with
# synchronous=NORMAL a power loss may roll back more of the last transactions.
_WAL_AUTOCHECKPOINT_PAGES = 10_000


def _optional_str(value: object) -> str | None:
    return None if value is None else str(value)


# pydantic's serializer writes what model_dump(mode="json") followed by json.dumps with
# compact separators and ensure_ascii=False writes: non-ASCII characters as they are,
# Decimals and datetimes as strings, infinite and NaN floats as null. It takes about a third
# of the time. Float exponents differ in form only: 1e-7 where json.dumps writes 1e-07.
_JSON_SERIALIZER = SchemaSerializer(
    core_schema.any_schema(), core_schema.CoreConfig(ser_json_inf_nan="null")
)


def _json_text(value: object) -> str:
    return _JSON_SERIALIZER.to_json(value).decode()


def format_timestamp(value: datetime) -> str:
    """Format a datetime the way the `timestamp` column stores it; naive means UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def record_to_row(record: UsageRecord) -> tuple[Any, ...]:
    """Return the record's values in `COLUMNS` order, as SQLite stores them."""
    # Reading the fields directly gives the values that model_dump(mode="json") followed by
    # json.dumps gave (tests/sinks/test_sqlite.py compares them) in less than half the time:
    # about 9 against 22 µs per record of tests/benchmarks/bench_sqlite.py, on a 2-core
    # AMD EPYC virtual machine. UUIDs and Decimals become text, as in pydantic's JSON mode.
    values = dict(record.__dict__)
    values["id"] = str(values["id"])
    values["run_id"] = str(values["run_id"])
    values["parent_id"] = _optional_str(values["parent_id"])
    values["timestamp"] = format_timestamp(values["timestamp"])
    for column in _OPTIONAL_TIME_COLUMNS:
        moment = values[column]
        values[column] = None if moment is None else format_timestamp(moment)
    for column in DECIMAL_COLUMNS:
        values[column] = _optional_str(values[column])
    for column in JSON_COLUMNS:
        value = values[column]
        values[column] = None if value is None else _json_text(value)
    row: tuple[Any, ...] = _select_columns(values)
    return row


def row_to_record(row: Mapping[str, Any]) -> UsageRecord:
    """Build a record from a row of the usage table, keyed by column name.

    Raises:
        ValueError: if the row does not hold a valid record (pydantic's `ValidationError`
            is a `ValueError`).
    """
    data = dict(row)
    for column in JSON_COLUMNS:
        value = data.get(column)
        if isinstance(value, str | bytes):
            data[column] = json.loads(value)
        elif value is None:
            data.pop(column, None)
    return UsageRecord.model_validate(data)


class SqliteSink:
    """Insert each batch into a SQLite table in one transaction, skipping ids already stored.

    The table (default `llm_usage`), its indexes on `timestamp`, `(agent, timestamp)` and
    `(model, timestamp)`, and the `tokenmeter_schema` version table are created on the first
    write. A table created by an older tokenmeter gets its missing columns added. The
    database runs in WAL mode, where readers and the writer do not block each other
    (SQLite's "Write-Ahead Logging" documentation). The sink checkpoints the WAL every
    10,000 pages rather than SQLite's default 1,000, so the `-wal` file beside the database
    may reach about 40 MiB while the sink is open.

    `INSERT OR IGNORE` by `id` makes a retried batch harmless: records already stored stay
    as they are and are not duplicated.

    The sink uses one aiosqlite connection, opened on the first write. aiosqlite needs an
    asyncio event loop, which tokenmeter's delivery thread runs, so under trio `write`
    raises `RuntimeError`. aiosqlite runs every statement on the connection's own thread,
    which this sink makes a daemon thread, so that a sink never closed does not keep the
    interpreter from exiting: Python joins non-daemon threads at exit before it runs
    `atexit` handlers.

    Args:
        path: The database file, created with its parent directories if missing. `~` is
            expanded and a relative path is resolved now. `":memory:"` keeps the database in
            memory, for this sink only.
        table: The usage table, a plain SQL identifier.
        busy_timeout_s: How long a write waits for another connection's write lock before
            it fails with `sqlite3.OperationalError` ("database is locked").

    Raises:
        ValueError: if `table` is not a plain SQL identifier.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        table: str = DEFAULT_TABLE,
        busy_timeout_s: float = 5.0,
    ) -> None:
        raw_path = os.fspath(path)
        self._path: Path | None = (
            None if raw_path == ":memory:" else Path(os.path.abspath(os.path.expanduser(raw_path)))
        )
        self._table = validate_identifier("table", table)
        self._busy_timeout_s = busy_timeout_s

        self._connection: aiosqlite.Connection | None = None
        self._file_id: tuple[int, int] | None = None
        self._connection_pid = 0
        # Serializes transactions on the one connection. An asyncio.Lock belongs to one
        # event loop, and one inherited through fork() may be held by a task the child lacks,
        # so a new lock is made per process and loop.
        self._lock = asyncio.Lock()
        self._lock_owner: tuple[int, asyncio.AbstractEventLoop | None] = (os.getpid(), None)
        self._closed = False

        columns = ", ".join(f'"{name}"' for name in _COLUMN_NAMES)
        placeholders = ", ".join("?" for _ in _COLUMN_NAMES)
        self._insert_sql = (
            f'INSERT OR IGNORE INTO "{self._table}" ({columns}) VALUES ({placeholders})'
        )

    @classmethod
    def from_url(cls, url: str) -> SqliteSink:
        """Open the sink that a `sqlite:///PATH[?table=NAME]` URL names.

        Raises:
            ValueError: if the URL is malformed or its `table` or `schema` is invalid.
        """
        target = parse_sqlite_url(url)
        path: str | Path = ":memory:" if target.path is None else target.path
        return cls(path, table=target.table)

    @property
    def path(self) -> Path | None:
        """The absolute path of the database file; `None` for an in-memory database."""
        return self._path

    @property
    def table(self) -> str:
        """The name of the usage table."""
        return self._table

    @property
    def url(self) -> str:
        """A URL that opens a sink writing the same table of the same file."""
        url = f"sqlite:///{':memory:' if self._path is None else self._path}"
        if self._table != DEFAULT_TABLE:
            url += f"?table={self._table}"
        return url

    def __repr__(self) -> str:
        return f"SqliteSink(url={self.url!r})"

    def check(self) -> None:
        """Raise `OSError` if the database file obviously cannot be written. Write nothing.

        Raises:
            OSError: `IsADirectoryError`, `NotADirectoryError` or `PermissionError`, with a
                message naming the sink and the path.
        """
        if self._path is None:
            return
        check_writable_path(self._path, self.url)
        # WAL mode creates `-wal` and `-shm` files beside the database.
        if self._path.exists():
            check_writable_path(self._path.parent / f"{self._path.name}-wal", self.url)

    async def write(self, records: Sequence[UsageRecord]) -> None:
        """Insert the batch in one transaction, skipping records whose id is stored already.

        Raises:
            RuntimeError: if the sink was closed, if no asyncio event loop is running (under
                trio, for one), or if the table was created by a newer tokenmeter with a
                layout this version does not know.
            sqlite3.Error: if the database cannot be opened or written. Nothing of the batch
                is stored then.
        """
        if self._closed:
            raise RuntimeError(f"{self!r} is closed; open a new sink to write more records")
        lock = self._current_lock()
        if not records:
            return

        rows = [record_to_row(record) for record in records]
        async with lock:
            # aclose() may have run while this write waited for the lock.
            if self._closed:
                raise RuntimeError(f"{self!r} is closed; open a new sink to write more records")
            connection = await self._connect()
            inserted = await self._insert(connection, rows)
        logger.debug(
            "inserted %d of %d records into %s (%d were stored already)",
            inserted,
            len(rows),
            self,
            len(rows) - inserted,
        )

    async def store_repricing(self, repricings: Sequence[Repricing]) -> int:
        """Set the `repriced_*` columns of stored records, by id, in one transaction.

        Creates or migrates the table first, like `write`. Other columns stay as they are.

        Returns:
            How many rows were updated; ids not in the table are skipped.

        Raises:
            RuntimeError: as `write` raises it.
            sqlite3.Error: if the database cannot be written. Nothing is updated then.
        """
        if self._closed:
            raise RuntimeError(f"{self!r} is closed; open a new sink to update records")
        lock = self._current_lock()
        if not repricings:
            return 0

        rows = [
            (
                _optional_str(item.cost_usd),
                format_timestamp(item.repriced_at),
                item.source,
                str(item.id),
            )
            for item in repricings
        ]
        sql = (
            f'UPDATE "{self._table}" SET "repriced_cost_usd" = ?, "repriced_at" = ?, '
            '"repriced_source" = ? WHERE "id" = ?'
        )
        async with lock:
            connection = await self._connect()
            try:
                await connection.execute("BEGIN IMMEDIATE")
                cursor = await connection.executemany(sql, rows)
                updated = cursor.rowcount
                await cursor.close()
                await connection.commit()
            except BaseException:
                await self._roll_back(connection)
                raise
        logger.info("stored re-priced costs of %d records in %s", updated, self)
        return updated

    async def aclose(self) -> None:
        """Close the connection. Idempotent. Waits for a write in progress to finish."""
        if self._closed:
            return
        self._closed = True
        if self._connection is None and not self._lock.locked():
            return

        async with self._current_lock():
            connection, self._connection = self._connection, None
            if connection is not None and self._connection_pid == os.getpid():
                await connection.close()
                logger.info("closed %s", self)
            elif connection is not None:
                _keep_inherited(connection)

    def _current_lock(self) -> asyncio.Lock:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                f"{self!r} needs a running asyncio event loop (aiosqlite supports asyncio "
                "only); await it from asyncio, as tokenmeter's delivery thread does"
            ) from None

        owner = (os.getpid(), loop)
        if self._lock_owner != owner:
            self._lock = asyncio.Lock()
            self._lock_owner = owner
        return self._lock

    async def _insert(self, connection: aiosqlite.Connection, rows: list[tuple[Any, ...]]) -> int:
        # BEGIN IMMEDIATE takes the write lock up front, where busy_timeout applies. A
        # deferred transaction could fail at its first INSERT without waiting. BEGIN is
        # inside the try because a cancellation while it waits for the lock leaves it to run
        # on aiosqlite's thread, and its transaction must be rolled back too.
        try:
            await connection.execute("BEGIN IMMEDIATE")
            cursor = await connection.executemany(self._insert_sql, rows)
            # For executemany, rowcount sums the rows each execution changed; an ignored
            # duplicate changes none.
            inserted = cursor.rowcount
            await cursor.close()
            await connection.commit()
        except BaseException:
            await self._roll_back(connection)
            raise
        return inserted

    async def _roll_back(self, connection: aiosqlite.Connection) -> None:
        # aiosqlite runs calls in order on its thread, so this ROLLBACK runs after the
        # statement that failed or was cancelled, even one still running. The shield keeps a
        # second cancellation from dropping it. sqlite3's rollback() does nothing when SQLite
        # already ended the transaction itself.
        try:
            await asyncio.shield(connection.rollback())
        except Exception as error:
            logger.warning(
                "rolling back on %s failed (%r); reconnecting on the next write", self, error
            )
            if self._connection is connection:
                self._connection = None
                await _close_quietly(connection)

    async def _connect(self) -> aiosqlite.Connection:
        # A connection inherited through fork() must not be used in the child (SQLite's
        # documentation says so), and its aiosqlite thread does not exist there, so the
        # child opens its own and leaves the parent's alone.
        pid = os.getpid()
        if self._connection is not None and self._connection_pid == pid:
            if self._same_file():
                return self._connection
            # The database file was deleted or replaced: writing on would store records in
            # an unlinked file that no reader opens, so reconnect to what is at the path now.
            logger.warning("%s: the database file was deleted or replaced; reopening it", self)
            stale, self._connection = self._connection, None
            await _close_quietly(stale)
        if self._connection is not None:
            _keep_inherited(self._connection)
            self._connection = None

        if self._path is not None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
        database = ":memory:" if self._path is None else str(self._path)
        pending = aiosqlite.connect(database, timeout=self._busy_timeout_s, isolation_level=None)
        _make_daemon(pending)
        connection = await pending
        try:
            await self._prepare(connection)
        except BaseException:
            await _close_quietly(connection)
            raise

        self._connection = connection
        self._connection_pid = pid
        self._file_id = self._current_file_id()
        logger.info("opened %s", self)
        return connection

    def _current_file_id(self) -> tuple[int, int] | None:
        if self._path is None:
            return None
        try:
            status = os.stat(self._path)
        except OSError:
            return None
        return (status.st_dev, status.st_ino)

    def _same_file(self) -> bool:
        # One stat() per batch: cheap next to the transaction it guards.
        return self._path is None or self._current_file_id() == self._file_id

    async def _prepare(self, connection: aiosqlite.Connection) -> None:
        await connection.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")
        await connection.execute("PRAGMA journal_mode = WAL")
        # In WAL mode NORMAL survives a crash of the process but may lose the last
        # transactions on a power loss, like the JSONL sink without fsync.
        await connection.execute("PRAGMA synchronous = NORMAL")
        await connection.execute(f"PRAGMA wal_autocheckpoint = {_WAL_AUTOCHECKPOINT_PAGES}")

        try:
            await connection.execute("BEGIN IMMEDIATE")
            await self._migrate(connection)
            await connection.commit()
        except BaseException:
            await self._roll_back(connection)
            raise

    async def _migrate(self, connection: aiosqlite.Connection) -> None:
        table = self._table
        await connection.execute(
            f'CREATE TABLE IF NOT EXISTS "{SCHEMA_TABLE}" ('
            "table_name TEXT PRIMARY KEY NOT NULL, "
            "version INTEGER NOT NULL, "
            "updated_at TEXT NOT NULL)"
        )
        found = list(
            await connection.execute_fetchall(
                f'SELECT version FROM "{SCHEMA_TABLE}" WHERE table_name = ?', (table,)
            )
        )
        if found and found[0][0] > SCHEMA_VERSION:
            raise RuntimeError(
                f"table {table!r} in {self!r} has schema version {found[0][0]}, written by a "
                f"newer tokenmeter; this one writes version {SCHEMA_VERSION}. Upgrade "
                "tokenmeter, or write to another table with ?table=NAME"
            )

        column_sql = ", ".join(f'"{name}" {kind}' for name, kind in COLUMNS)
        await connection.execute(f'CREATE TABLE IF NOT EXISTS "{table}" ({column_sql})')

        table_info = await connection.execute_fetchall(f'PRAGMA table_info("{table}")')
        existing = {row[1] for row in table_info}
        if "id" not in existing:
            raise RuntimeError(
                f"table {table!r} in {self!r} exists but has no 'id' column, so it was not "
                "created by tokenmeter; write to another table with ?table=NAME"
            )
        for name, kind in COLUMNS:
            if name not in existing:
                # ALTER TABLE cannot add a NOT NULL column without a default to a table that
                # has rows, so added columns allow NULL.
                sql_type = kind.split()[0]
                await connection.execute(f'ALTER TABLE "{table}" ADD COLUMN "{name}" {sql_type}')
                logger.info("added column %r to table %r of %s", name, table, self)

        for suffix, columns in _INDEXES:
            await connection.execute(
                f'CREATE INDEX IF NOT EXISTS "{table}_{suffix}" ON "{table}" ({columns})'
            )

        await connection.execute(
            f'INSERT INTO "{SCHEMA_TABLE}" (table_name, version, updated_at) VALUES (?, ?, ?) '
            "ON CONFLICT (table_name) DO UPDATE SET "
            "version = excluded.version, updated_at = excluded.updated_at "
            "WHERE version <> excluded.version",
            (table, SCHEMA_VERSION, format_timestamp(datetime.now(UTC))),
        )


# Connections inherited through fork(), kept referenced so that the child never finalizes
# them: finalizing would close the parent's SQLite handle in the child, and aiosqlite's
# finalizer would warn about a connection that was never closed.
_inherited_connections: list[aiosqlite.Connection] = []


def _keep_inherited(connection: aiosqlite.Connection) -> None:
    _inherited_connections.append(connection)


def _make_daemon(connection: aiosqlite.Connection) -> None:
    # aiosqlite before 0.22 made Connection a Thread subclass; 0.22 moved the thread to
    # `_thread`. Either way the thread has not started yet, so `daemon` can still be set.
    worker = getattr(connection, "_thread", connection)
    if isinstance(worker, threading.Thread):
        worker.daemon = True


async def _close_quietly(connection: aiosqlite.Connection) -> None:
    try:
        await connection.close()
    except Exception as error:
        logger.debug("closing a failed SQLite connection raised %r", error)
