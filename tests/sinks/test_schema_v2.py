"""Schema version 2 in the SQL sinks: forward migration of version 1 tables, re-priced costs."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import pytest

from tests.postgres_server import with_query
from tokenmeter.reading import read_postgres, read_sqlite
from tokenmeter.records import SCHEMA_VERSION, Repricing, UsageRecord
from tokenmeter.reprice import reprice
from tokenmeter.sinks import SqliteSink
from tokenmeter.sinks.postgres import SCHEMA_VERSION_TABLE, PostgresSink, _migration_1
from tokenmeter.sinks.sqlite import COLUMNS, SCHEMA_TABLE

if TYPE_CHECKING:
    from tests.sinks.conftest import RecordFactory

pytestmark = pytest.mark.anyio

VERSION_2_FIELDS = (
    "input_cost_usd",
    "cache_read_cost_usd",
    "cache_write_cost_usd",
    "output_cost_usd",
    "other_cost_usd",
    "priced_at",
    "reported_cost_usd",
    "rounds_usage",
    "repriced_cost_usd",
    "repriced_at",
    "repriced_source",
)
OLD_ID = uuid.UUID("6f1c2c8e-8f4e-4a8e-9a39-1d4c7b9e2f10")
REPRICED_AT = datetime(2026, 12, 4, 9, 30, tzinfo=UTC)


@pytest.fixture
def anyio_backend() -> str:
    # aiosqlite and asyncpg run on asyncio only, as does tokenmeter's delivery thread.
    return "asyncio"


def old_row_values() -> dict[str, object]:
    """The values of one row as tokenmeter wrote it at schema version 1."""
    return {
        "id": str(OLD_ID),
        "timestamp": "2026-05-01T12:00:00.000000+00:00",
        "duration_ms": 12.5,
        "run_id": str(OLD_ID),
        "parent_id": None,
        "agent": "bot",
        "name": "step",
        "model": "gpt-4o",
        "provider": "openai",
        "status": "ok",
        "error_type": None,
        "rounds": 2,
        "unmeasured_rounds": 0,
        "input_tokens": 2000,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "output_tokens": 100,
        "reasoning_tokens": 0,
        "cost_usd": "0.006",
        "price_status": "priced",
        "price_source": "genai-prices 0.2.3",
        "schema_version": 1,
        "details": "{}",
        "by_model": (
            '[{"model":"gpt-4o","provider":"openai","rounds":2,"input_tokens":2000,'
            '"cache_read_tokens":0,"cache_write_tokens":0,"output_tokens":100,'
            '"reasoning_tokens":0,"details":{},"cost_usd":"0.006"}]'
        ),
        "tags": "[]",
        "metadata": "{}",
    }


def assert_old_record(record: UsageRecord) -> None:
    assert record.id == OLD_ID
    assert record.schema_version == 1
    assert record.cost_usd == Decimal("0.006")
    assert record.by_model[0].rounds == 2
    for name in VERSION_2_FIELDS:
        assert getattr(record, name) is None, name


# --- SQLite ----------------------------------------------------------------------------------


def create_version_1_sqlite(path: Path) -> None:
    old_columns = [(name, kind) for name, kind in COLUMNS if name not in VERSION_2_FIELDS]
    values = old_row_values()
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute(
            f'CREATE TABLE "{SCHEMA_TABLE}" (table_name TEXT PRIMARY KEY NOT NULL, '
            "version INTEGER NOT NULL, updated_at TEXT NOT NULL)"
        )
        connection.execute(
            f"INSERT INTO \"{SCHEMA_TABLE}\" VALUES ('llm_usage', 1, '2026-05-01T00:00:00+00:00')"
        )
        connection.execute(
            "CREATE TABLE llm_usage ("
            + ", ".join(f'"{name}" {kind}' for name, kind in old_columns)
            + ")"
        )
        names = [name for name, _ in old_columns]
        connection.execute(
            f"INSERT INTO llm_usage ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})",
            [values[name] for name in names],
        )
    finally:
        connection.close()


async def test_sqlite_version_1_table_migrated(tmp_path: Path, make_record: RecordFactory) -> None:
    path = tmp_path / "usage.db"
    create_version_1_sqlite(path)
    new = make_record(1)

    sink = SqliteSink(path)
    await sink.write([new])
    await sink.aclose()

    with sqlite3.connect(path) as connection:
        columns = [row[1] for row in connection.execute('PRAGMA table_info("llm_usage")')]
        (version,) = connection.execute(f'SELECT version FROM "{SCHEMA_TABLE}"').fetchone()
    assert set(VERSION_2_FIELDS) <= set(columns)
    assert version == SCHEMA_VERSION == 2
    old, stored = read_sqlite(path)
    assert_old_record(old)
    assert stored == new


async def test_sqlite_repricing_updates_columns(tmp_path: Path, make_record: RecordFactory) -> None:
    path = tmp_path / "usage.db"
    records = [make_record(0), make_record(1)]
    sink = SqliteSink(path)
    await sink.write(records)

    updated = await sink.store_repricing(
        [
            Repricing(records[0].id, Decimal("0.0123000000000000000001"), REPRICED_AT, "mine"),
            Repricing(uuid.uuid4(), Decimal(1), REPRICED_AT, "not stored"),
        ]
    )
    await sink.aclose()

    first, second = read_sqlite(path)
    assert updated == 1
    assert str(first.repriced_cost_usd) == "0.0123000000000000000001"
    assert first.repriced_at == REPRICED_AT
    assert first.repriced_source == "mine"
    assert first.model_copy(
        update={"repriced_cost_usd": None, "repriced_at": None, "repriced_source": None}
    ) == records[0].model_copy(
        update={"repriced_cost_usd": None, "repriced_at": None, "repriced_source": None}
    )
    assert second == records[1]


async def test_sqlite_reprice_migrates_version_1(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    create_version_1_sqlite(path)

    summary = reprice(f"sqlite:///{path}", now=REPRICED_AT)

    [record] = read_sqlite(path)
    # gpt-4o at $2.50/$10 (OpenAI pricing page, as of 2024-10-01), its two rounds priced as
    # one from the per-model totals: 2,000 * 2.5 + 100 * 10 millionths.
    assert record.repriced_cost_usd == Decimal("0.006")
    assert record.repriced_source is not None
    assert record.repriced_source.endswith(", approximated from per-model totals")
    assert record.cost_usd == Decimal("0.006")
    assert summary.records == 1
    assert summary.approximated == 1


# --- PostgreSQL ------------------------------------------------------------------------------


async def execute(postgres_dsn: str, *statements: str, args: tuple[object, ...] = ()) -> None:
    connection = await asyncpg.connect(postgres_dsn)
    try:
        for statement in statements:
            await connection.execute(statement, *args)
    finally:
        await connection.close()


async def fetch(postgres_dsn: str, query: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(postgres_dsn)
    try:
        rows: list[asyncpg.Record] = await connection.fetch(query)
    finally:
        await connection.close()
    return rows


@pytest.fixture
async def version_1_schema(postgres_dsn: str) -> object:
    """A schema holding a table of version 1 with one row, as an older tokenmeter left it."""
    schema = f"tm_v1_{uuid.uuid4().hex[:12]}"
    values = old_row_values()
    await execute(
        postgres_dsn,
        f'CREATE SCHEMA "{schema}"',
        *_migration_1(schema, "llm_usage"),
        f'CREATE TABLE "{schema}".{SCHEMA_VERSION_TABLE} (table_name text NOT NULL, '
        "version integer NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(), "
        "PRIMARY KEY (table_name, version))",
        f'INSERT INTO "{schema}".{SCHEMA_VERSION_TABLE} (table_name, version) '
        "VALUES ('llm_usage', 1)",
    )
    await execute(
        postgres_dsn,
        f'INSERT INTO "{schema}".llm_usage (id, "timestamp", duration_ms, run_id, agent, name, '
        "model, provider, status, rounds, unmeasured_rounds, input_tokens, cache_read_tokens, "
        "cache_write_tokens, output_tokens, reasoning_tokens, cost_usd, price_status, "
        "price_source, details, by_model, tags, metadata, schema_version) VALUES ($1, $2, 12.5, "
        "$1, 'bot', 'step', 'gpt-4o', 'openai', 'ok', 2, 0, 2000, 0, 0, 100, 0, 0.006, "
        "'priced', 'genai-prices 0.2.3', '{}', $3, '[]', '{}', 1)",
        args=(OLD_ID, datetime(2026, 5, 1, 12, tzinfo=UTC), values["by_model"]),
    )
    yield schema
    await execute(postgres_dsn, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def test_postgres_version_1_table_migrated(
    postgres_dsn: str, version_1_schema: str, make_record: RecordFactory
) -> None:
    new = make_record(1)

    sink = PostgresSink(with_query(postgres_dsn, schema=version_1_schema))
    await sink.write([new])
    await sink.aclose()

    versions = await fetch(
        postgres_dsn,
        f'SELECT version FROM "{version_1_schema}".{SCHEMA_VERSION_TABLE} ORDER BY version',
    )
    assert [row["version"] for row in versions] == [1, 2]
    old, stored = read_postgres(with_query(postgres_dsn, schema=version_1_schema))
    assert_old_record(old)
    assert stored == new
    assert str(stored.input_cost_usd) == str(new.input_cost_usd)


async def test_postgres_reprice_updates_by_id(
    postgres_dsn: str, version_1_schema: str, make_record: RecordFactory
) -> None:
    url = with_query(postgres_dsn, schema=version_1_schema)
    new = make_record(1)
    sink = PostgresSink(url)
    await sink.write([new])
    await sink.aclose()

    summary = reprice(url, now=REPRICED_AT)

    old, stored = read_postgres(url)
    assert summary.records == 2
    assert old.repriced_cost_usd == Decimal("0.006")
    assert old.repriced_at == REPRICED_AT
    assert old.repriced_source is not None
    assert old.repriced_source.endswith(", approximated from per-model totals")
    assert stored.repriced_at == REPRICED_AT
    assert stored.cost_usd == new.cost_usd
    # The record's one round: gpt-4o, 1,201 prompt tokens (1,000 cached), 350 output tokens
    # and a web search, as a batch at the flex tier on 2026-05-01, before the table lists
    # batch or flex prices. OpenAI's list prices are $2.50, $1.25 cached, $10 output and $10
    # per 1,000 searches (pricing page as of 2024-10-01). Its published batch discount halves
    # the token prices: 201 * 1.25 + 1,000 * 0.625 + 350 * 5 + 10,000 millionths.
    assert stored.repriced_cost_usd == Decimal("0.01262625")
    assert stored.repriced_source is not None
    assert ", batch at 50% off tokens per OpenAI's Batch API pricing" in stored.repriced_source
    assert stored.repriced_source.endswith(", no service tier flex price known, so standard prices")


async def test_postgres_repricing_skips_unknown_ids(
    postgres_dsn: str, version_1_schema: str
) -> None:
    sink = PostgresSink(with_query(postgres_dsn, schema=version_1_schema))

    updated = await sink.store_repricing(
        [
            Repricing(OLD_ID, Decimal("0.0050000000000000000001"), REPRICED_AT, "mine"),
            Repricing(uuid.uuid4(), Decimal(1), REPRICED_AT, "not stored"),
        ]
    )
    await sink.aclose()

    [old] = read_postgres(with_query(postgres_dsn, schema=version_1_schema))
    assert updated == 1
    assert str(old.repriced_cost_usd) == "0.0050000000000000000001"
    assert old.repriced_source == "mine"
