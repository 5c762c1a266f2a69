"""PostgresSink against a real PostgreSQL server: layout, round trips, idempotency, faults."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import anyio
import asyncpg
import pytest
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_fixed

import tokenmeter
from tests.postgres_server import LocalPostgres, shared_postgres_dsn, with_query
from tokenmeter.records import ModelUsage, RoundUsage, UsageRecord
from tokenmeter.sinks import Sink, open_sink
from tokenmeter.sinks.postgres import (
    SCHEMA_VERSION_TABLE,
    TABLE_VERSION,
    PostgresSink,
    record_from_row,
)
from tokenmeter.usage import Usage

if TYPE_CHECKING:
    from tests.sinks.conftest import RecordFactory

pytestmark = [pytest.mark.postgres, pytest.mark.anyio]

PASSWORD = "s3cret-Pa55"
T = TypeVar("T")


@pytest.fixture
def anyio_backend() -> str:
    # asyncpg runs on asyncio only.
    return "asyncio"


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    return shared_postgres_dsn()


@pytest.fixture
def dsn(postgres_dsn: str) -> str:
    """The server's DSN with a password in it, which the sink must never show."""
    if urlsplit(postgres_dsn).password or "password=" in postgres_dsn:
        return postgres_dsn
    # The throwaway server trusts local connections, so any password is accepted.
    return postgres_dsn.replace("://postgres@", f"://postgres:{PASSWORD}@", 1)


@pytest.fixture
def schema(postgres_dsn: str) -> Iterator[str]:
    """A schema name no other test uses; the schema is dropped afterwards."""
    name = f"tm_test_{uuid.uuid4().hex[:12]}"
    yield name
    run_in_new_loop(fetch(postgres_dsn, f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))


@pytest.fixture
async def sink(dsn: str, schema: str) -> AsyncIterator[PostgresSink]:
    opened = PostgresSink(with_query(dsn, schema=schema))
    yield opened
    await opened.aclose()


def run_in_new_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a new event loop in a new thread.

    Sync tests and fixtures use it: the thread keeps it apart from the loop of an async test.
    """
    with ThreadPoolExecutor(max_workers=1) as executor:
        return executor.submit(asyncio.run, coroutine).result()


async def fetch(postgres_dsn: str, query: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(postgres_dsn)
    try:
        rows: list[asyncpg.Record] = await connection.fetch(query, *args)
    finally:
        await connection.close()
    return rows


async def stored_records(
    postgres_dsn: str, schema: str, table: str = "llm_usage"
) -> list[UsageRecord]:
    rows = await fetch(postgres_dsn, f'SELECT * FROM "{schema}"."{table}"')
    return [record_from_row(row) for row in rows]


def unused_local_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# --- round trips -----------------------------------------------------------------------------


async def test_batch_reads_back_equal(
    sink: PostgresSink, postgres_dsn: str, schema: str, batch: list[UsageRecord]
) -> None:
    await sink.write(batch)

    stored = {record.id: record for record in await stored_records(postgres_dsn, schema)}
    assert set(stored) == {record.id for record in batch}
    for record in batch:
        assert stored[record.id] == record


async def test_costs_keep_exact_digits(
    sink: PostgresSink, postgres_dsn: str, schema: str, make_record: RecordFactory
) -> None:
    cost = Decimal("0.000000123456789012345678901234500")
    model_cost = Decimal("1E-27")
    usage = ModelUsage(
        model="m",
        provider="p",
        rounds=1,
        input_tokens=1,
        cache_read_tokens=0,
        cache_write_tokens=0,
        output_tokens=1,
        reasoning_tokens=0,
        cost_usd=model_cost,
    )
    record = make_record(cost_usd=cost, by_model=[usage])

    await sink.write([record])

    (row,) = await fetch(postgres_dsn, f'SELECT cost_usd, by_model FROM "{schema}".llm_usage')
    assert isinstance(row["cost_usd"], Decimal)
    assert str(row["cost_usd"]) == str(cost)
    (stored,) = await stored_records(postgres_dsn, schema)
    assert str(stored.cost_usd) == str(cost)
    assert stored.by_model[0].cost_usd == model_cost


async def test_timestamps_come_back_utc(
    sink: PostgresSink, postgres_dsn: str, schema: str, make_record: RecordFactory
) -> None:
    local = datetime(2026, 3, 29, 1, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-7)))
    record = make_record(timestamp=local)

    await sink.write([record])

    (stored,) = await stored_records(postgres_dsn, schema)
    assert stored.timestamp == local
    assert stored.timestamp.utcoffset() == timedelta(0)
    assert stored.timestamp.hour == 8


async def test_ids_stored_as_uuid(
    sink: PostgresSink, postgres_dsn: str, schema: str, make_record: RecordFactory
) -> None:
    record = make_record(parent_id=uuid.uuid4())

    await sink.write([record])

    (row,) = await fetch(postgres_dsn, f'SELECT id, run_id, parent_id FROM "{schema}".llm_usage')
    assert row["id"] == record.id
    assert row["run_id"] == record.run_id
    assert row["parent_id"] == record.parent_id
    assert isinstance(row["id"], uuid.UUID)


async def test_unknown_counts_stored_as_null(
    sink: PostgresSink, postgres_dsn: str, schema: str, make_record: RecordFactory
) -> None:
    record = make_record(
        input_tokens=None, output_tokens=None, cost_usd=None, price_status="unmeasured"
    )

    await sink.write([record])

    (row,) = await fetch(
        postgres_dsn, f'SELECT input_tokens, output_tokens, cost_usd FROM "{schema}".llm_usage'
    )
    assert row["input_tokens"] is None
    assert row["output_tokens"] is None
    assert row["cost_usd"] is None


async def test_json_columns_are_queryable(
    sink: PostgresSink, postgres_dsn: str, schema: str, make_record: RecordFactory
) -> None:
    record = make_record(
        tags=["prod", 'quote"and\\slash'],
        details={"web_search_requests": 3},
        metadata={"budget": Decimal("12.345678901234567890123"), "nested": {"a": [1, None]}},
    )

    await sink.write([record])

    (row,) = await fetch(
        postgres_dsn,
        f"""SELECT tags ? 'prod' AS tagged,
                   (details->>'web_search_requests')::int AS searches,
                   metadata->>'budget' AS budget,
                   jsonb_typeof(metadata->'budget') AS budget_type
            FROM "{schema}".llm_usage""",
    )
    assert row["tagged"] is True
    assert row["searches"] == 3
    assert row["budget"] == "12.345678901234567890123"
    assert row["budget_type"] == "number"
    (stored,) = await stored_records(postgres_dsn, schema)
    assert stored.tags == record.tags


async def test_by_model_keeps_every_field(
    sink: PostgresSink, postgres_dsn: str, schema: str, batch: list[UsageRecord]
) -> None:
    await sink.write(batch)

    rows = await fetch(
        postgres_dsn,
        f"""SELECT DISTINCT jsonb_object_keys(usage) AS key
            FROM "{schema}".llm_usage, jsonb_array_elements(by_model) AS usage""",
    )
    assert {row["key"] for row in rows} == set(ModelUsage.model_fields)


async def test_rounds_usage_keeps_every_field(
    sink: PostgresSink, postgres_dsn: str, schema: str, batch: list[UsageRecord]
) -> None:
    await sink.write(batch)

    rows = await fetch(
        postgres_dsn,
        f"""SELECT DISTINCT jsonb_object_keys(usage) AS key
            FROM "{schema}".llm_usage, jsonb_array_elements(rounds_usage) AS usage""",
    )
    assert {row["key"] for row in rows} == set(RoundUsage.model_fields)


# --- table layout ----------------------------------------------------------------------------


async def test_columns_have_real_types(
    sink: PostgresSink, postgres_dsn: str, schema: str, batch: list[UsageRecord]
) -> None:
    await sink.write(batch)

    rows = await fetch(
        postgres_dsn,
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = $1 AND table_name = 'llm_usage'",
        schema,
    )
    column_types = {row["column_name"]: row["data_type"] for row in rows}
    assert set(column_types) == set(UsageRecord.model_fields)
    assert column_types["id"] == "uuid"
    assert column_types["run_id"] == "uuid"
    assert column_types["timestamp"] == "timestamp with time zone"
    assert column_types["cost_usd"] == "numeric"
    token_fields = [field for field in UsageRecord.model_fields if field.endswith("_tokens")]
    assert len(token_fields) == 5
    for field in token_fields:
        assert column_types[field] == "bigint", field
    for field in ("tags", "metadata", "details", "by_model", "rounds_usage"):
        assert column_types[field] == "jsonb", field
    for field in UsageRecord.model_fields:
        if field.endswith("cost_usd"):
            assert column_types[field] == "numeric", field
    for field in ("priced_at", "repriced_at"):
        assert column_types[field] == "timestamp with time zone", field


async def test_id_is_primary_key(
    sink: PostgresSink, postgres_dsn: str, schema: str, batch: list[UsageRecord]
) -> None:
    await sink.write(batch)

    rows = await fetch(
        postgres_dsn,
        """SELECT a.attname FROM pg_index i
           JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
           WHERE i.indrelid = to_regclass($1) AND i.indisprimary""",
        f'"{schema}".llm_usage',
    )
    assert [row["attname"] for row in rows] == ["id"]


async def test_indexes_cover_time_agent_model(
    sink: PostgresSink, postgres_dsn: str, schema: str, batch: list[UsageRecord]
) -> None:
    await sink.write(batch)

    rows = await fetch(
        postgres_dsn,
        "SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = 'llm_usage'",
        schema,
    )
    columns = {row["indexdef"].rsplit("(", 1)[1].rstrip(")") for row in rows}
    assert columns == {"id", '"timestamp"', 'agent, "timestamp"', 'model, "timestamp"'}


async def test_schema_version_recorded(
    sink: PostgresSink, postgres_dsn: str, schema: str, batch: list[UsageRecord]
) -> None:
    await sink.write(batch)

    rows = await fetch(
        postgres_dsn,
        f'SELECT table_name, version FROM "{schema}".{SCHEMA_VERSION_TABLE} ORDER BY version',
    )
    # One row per migration applied, the last at the version this tokenmeter writes.
    assert [(row["table_name"], row["version"]) for row in rows] == [
        ("llm_usage", version) for version in range(1, TABLE_VERSION + 1)
    ]
    assert TABLE_VERSION == 2


async def test_second_sink_skips_migration(
    dsn: str, postgres_dsn: str, schema: str, batch: list[UsageRecord]
) -> None:
    for half in (batch[:3], batch[3:]):
        sink = PostgresSink(with_query(dsn, schema=schema))
        await sink.write(half)
        await sink.aclose()

    rows = await fetch(
        postgres_dsn, f'SELECT version FROM "{schema}".{SCHEMA_VERSION_TABLE} ORDER BY version'
    )
    assert [row["version"] for row in rows] == list(range(1, TABLE_VERSION + 1))
    assert len(await stored_records(postgres_dsn, schema)) == len(batch)


async def test_newer_table_version_still_written(
    dsn: str,
    postgres_dsn: str,
    schema: str,
    batch: list[UsageRecord],
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = PostgresSink(with_query(dsn, schema=schema))
    await first.write(batch[:1])
    await first.aclose()
    await fetch(
        postgres_dsn,
        f'INSERT INTO "{schema}".{SCHEMA_VERSION_TABLE} (table_name, version) '
        f"VALUES ('llm_usage', {TABLE_VERSION + 1})",
    )

    second = PostgresSink(with_query(dsn, schema=schema))
    with caplog.at_level(logging.WARNING, logger="tokenmeter"):
        await second.write(batch[1:])
    await second.aclose()

    assert len(await stored_records(postgres_dsn, schema)) == len(batch)
    assert f"newer than the version {TABLE_VERSION}" in caplog.text


async def test_table_and_schema_from_url(
    dsn: str, postgres_dsn: str, schema: str, batch: list[UsageRecord]
) -> None:
    sink = open_sink(with_query(dsn, table="agent_costs", schema=schema))

    await sink.write(batch)
    await sink.aclose()

    assert len(await stored_records(postgres_dsn, schema, table="agent_costs")) == len(batch)


async def test_default_schema_from_search_path(
    dsn: str, postgres_dsn: str, batch: list[UsageRecord]
) -> None:
    table = f"tm_public_{uuid.uuid4().hex[:12]}"
    sink = PostgresSink(dsn, table=table)
    try:
        await sink.write(batch)
        await sink.aclose()

        (row,) = await fetch(postgres_dsn, f'SELECT count(*) AS stored FROM "{table}"')
        assert row["stored"] == len(batch)
        assert sink.schema is None
    finally:
        await fetch(postgres_dsn, f'DROP TABLE IF EXISTS "{table}"')
        await fetch(
            postgres_dsn, f"DELETE FROM {SCHEMA_VERSION_TABLE} WHERE table_name = $1", table
        )


# --- idempotency -----------------------------------------------------------------------------


async def test_retried_batch_stored_once(
    sink: PostgresSink, postgres_dsn: str, schema: str, batch: list[UsageRecord]
) -> None:
    await sink.write(batch)
    await sink.write(batch)

    stored = await stored_records(postgres_dsn, schema)
    assert sorted(record.id for record in stored) == sorted(record.id for record in batch)


async def test_partly_stored_batch_adds_rest(
    sink: PostgresSink, postgres_dsn: str, schema: str, batch: list[UsageRecord]
) -> None:
    await sink.write(batch[:2])
    await sink.write(batch)

    stored = await stored_records(postgres_dsn, schema)
    assert sorted(record.id for record in stored) == sorted(record.id for record in batch)


async def test_duplicates_within_batch_stored_once(
    sink: PostgresSink, postgres_dsn: str, schema: str, batch: list[UsageRecord]
) -> None:
    await sink.write([*batch, *batch[:3]])

    stored = await stored_records(postgres_dsn, schema)
    assert sorted(record.id for record in stored) == sorted(record.id for record in batch)


async def test_new_batch_after_duplicates_stored(
    sink: PostgresSink,
    postgres_dsn: str,
    schema: str,
    make_record: RecordFactory,
    batch: list[UsageRecord],
) -> None:
    await sink.write(batch)
    await sink.write(batch)
    fresh = [make_record(index) for index in range(3)]
    await sink.write(fresh)
    more = [make_record(index) for index in range(3)]
    await sink.write(more)

    stored = await stored_records(postgres_dsn, schema)
    assert len(stored) == len(batch) + len(fresh) + len(more)


async def test_concurrent_first_writes_share_pool(
    dsn: str, postgres_dsn: str, schema: str, make_record: RecordFactory
) -> None:
    application = f"tm_pool_{uuid.uuid4().hex[:8]}"
    sink = PostgresSink(with_query(dsn, schema=schema, application_name=application))
    batches = [[make_record(index) for index in range(start, start + 5)] for start in range(10)]

    async with anyio.create_task_group() as group:
        for records in batches:
            group.start_soon(sink.write, records)
    rows = await fetch(
        postgres_dsn,
        "SELECT count(*) AS connections FROM pg_stat_activity WHERE application_name = $1",
        application,
    )
    await sink.aclose()

    assert len(await stored_records(postgres_dsn, schema)) == 50
    assert 1 <= rows[0]["connections"] <= 4


# --- arguments and validation ----------------------------------------------------------------

INJECTIONS = [
    "llm_usage; drop table x",
    'llm_usage" cascade --',
    "usage-2026",
    "1usage",
    "",
    "a" * 64,
    "llm usage",
    "usägé",
]


@pytest.mark.parametrize("value", INJECTIONS)
@pytest.mark.parametrize("parameter", ["table", "schema"])
def test_invalid_identifier_in_url_rejected(parameter: str, value: str) -> None:
    url = with_query(f"postgresql://app:{PASSWORD}@127.0.0.1:5432/metrics", **{parameter: value})

    with pytest.raises(ValueError, match="letter or underscore") as raised:
        PostgresSink(url)

    message = str(raised.value)
    assert f"{parameter}={value!r}" in message
    assert PASSWORD not in message


@pytest.mark.parametrize("value", INJECTIONS)
@pytest.mark.parametrize("parameter", ["table", "schema"])
def test_invalid_identifier_argument_rejected(parameter: str, value: str) -> None:
    options: dict[str, Any] = {parameter: value}

    with pytest.raises(ValueError, match="letter or underscore") as raised:
        PostgresSink("postgresql://app@127.0.0.1/metrics", **options)

    assert f"{parameter}={value!r}" in str(raised.value)


def test_reserved_schema_rejected() -> None:
    with pytest.raises(ValueError, match=r"schema='pg_usage'.*reserves names starting with"):
        PostgresSink("postgresql://app@127.0.0.1/metrics?schema=pg_usage")


def test_version_table_name_rejected() -> None:
    with pytest.raises(ValueError, match=rf"table={SCHEMA_VERSION_TABLE!r}"):
        PostgresSink("postgresql://app@127.0.0.1/metrics", table=SCHEMA_VERSION_TABLE)


def test_conflicting_table_rejected() -> None:
    with pytest.raises(ValueError, match=r"table='mine' and table='theirs'.*give it once"):
        PostgresSink("postgresql://app@127.0.0.1/metrics?table=theirs", table="mine")


def test_repeated_url_parameter_rejected() -> None:
    with pytest.raises(ValueError, match="more than once"):
        PostgresSink("postgresql://app@127.0.0.1/metrics?table=a&table=b")


@pytest.mark.parametrize(
    "url", ["mysql://app:s3cret-Pa55@127.0.0.1/metrics", "127.0.0.1:5432/metrics"]
)
def test_other_scheme_rejected(url: str) -> None:
    with pytest.raises(ValueError, match=r"expected postgresql://USER:PASSWORD@HOST") as raised:
        PostgresSink(url)

    assert PASSWORD not in str(raised.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"pool_min": -1}, "invalid pool_min -1"),
        ({"pool_max": 0}, "invalid pool_max 0"),
        ({"pool_min": 5, "pool_max": 2}, r"invalid pool_max 2: expected .* >= pool_min \(5\)"),
    ],
)
def test_invalid_pool_size_rejected(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PostgresSink("postgresql://app@127.0.0.1/metrics", **options)


def test_postgres_scheme_accepted() -> None:
    sink = open_sink("postgres://app@127.0.0.1/metrics?table=usage&schema=billing")

    assert isinstance(sink, PostgresSink)
    assert isinstance(sink, Sink)
    assert (sink.table, sink.schema) == ("usage", "billing")


def test_missing_asyncpg_names_extra() -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["asyncpg"] = None  # makes `import asyncpg` raise ImportError
        from tokenmeter.sinks.postgres import PostgresSink
        try:
            PostgresSink("postgresql://app@127.0.0.1/metrics")
        except ImportError as error:
            print(error)
        """
    )

    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )

    assert "pip install 'tokenmeter[postgres]'" in completed.stdout


# --- credentials -----------------------------------------------------------------------------


def test_repr_masks_password() -> None:
    sink = PostgresSink(f"postgresql://app:{PASSWORD}@db.internal:5432/metrics?sslmode=require")

    assert PASSWORD not in repr(sink)
    assert PASSWORD not in str(sink)
    assert "app:***@db.internal:5432/metrics" in repr(sink)


def test_repr_masks_password_parameter() -> None:
    sink = PostgresSink(f"postgresql://app@db.internal/metrics?password={PASSWORD}")

    assert PASSWORD not in repr(sink)


async def test_connection_error_hides_password(
    caplog: pytest.LogCaptureFixture, batch: list[UsageRecord]
) -> None:
    port = unused_local_port()
    sink = PostgresSink(
        f"postgresql://app:{PASSWORD}@127.0.0.1:{port}/metrics", connect_timeout_s=5
    )

    with (
        caplog.at_level(logging.DEBUG, logger="tokenmeter"),
        pytest.raises(OSError, match="Connect call failed") as raised,
    ):
        await sink.write(batch)
    await sink.aclose()

    assert PASSWORD not in str(raised.value)
    assert PASSWORD not in repr(raised.value)
    assert PASSWORD not in caplog.text
    assert "app:***@127.0.0.1" in caplog.text


async def test_password_in_server_error_masked(
    dsn: str, schema: str, batch: list[UsageRecord]
) -> None:
    # asyncpg sends unknown URL parameters as settings, and the server quotes an invalid
    # setting's value in its error: here the password, pasted into the wrong parameter.
    sink = PostgresSink(with_query(dsn, schema=schema, statement_timeout=PASSWORD))

    with pytest.raises(RuntimeError, match="statement_timeout") as raised:
        await sink.write(batch)
    await sink.aclose()

    assert PASSWORD not in str(raised.value)


# --- lifecycle -------------------------------------------------------------------------------


async def test_empty_batch_needs_no_server() -> None:
    sink = PostgresSink(f"postgresql://app@127.0.0.1:{unused_local_port()}/metrics")

    await sink.write([])
    await sink.aclose()


async def test_write_after_aclose_raises(sink: PostgresSink, batch: list[UsageRecord]) -> None:
    await sink.write(batch)
    await sink.aclose()
    await sink.aclose()

    with pytest.raises(RuntimeError, match=r"is closed; write\(\) is not allowed after aclose"):
        await sink.write(batch)


# The first loop's pool is left to the garbage collector, and asyncpg warns about each of its
# connections when it is collected.
@pytest.mark.filterwarnings("ignore:unclosed:ResourceWarning")
def test_new_event_loop_reconnects(
    dsn: str,
    postgres_dsn: str,
    schema: str,
    make_record: RecordFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = PostgresSink(with_query(dsn, schema=schema))
    first, second = make_record(0), make_record(1)

    async def write_and_close() -> None:
        await sink.write([second])
        await sink.aclose()

    run_in_new_loop(sink.write([first]))
    with caplog.at_level(logging.WARNING, logger="tokenmeter"):
        run_in_new_loop(write_and_close())
    gc.collect()

    assert len(run_in_new_loop(stored_records(postgres_dsn, schema))) == 2
    assert "event loop has stopped" in caplog.text


# --- many processes --------------------------------------------------------------------------

# Each process reports that it is ready, waits for one line on stdin, then writes one record,
# so that all of them create the table at the same moment.
WRITER_SCRIPT = """
import asyncio, logging, os, sys, uuid
from datetime import UTC, datetime
from tokenmeter.records import UsageRecord
from tokenmeter.sinks.postgres import PostgresSink

logging.basicConfig(level=logging.INFO, stream=sys.stderr)
sink = PostgresSink(os.environ["SINK_URL"])
record = UsageRecord(id=uuid.uuid4(), timestamp=datetime.now(UTC), run_id=uuid.uuid4())
print("ready", flush=True)
sys.stdin.readline()

async def main():
    await sink.write([record])
    await sink.aclose()

asyncio.run(main())
print("stored", flush=True)
"""


def test_processes_create_table_once(dsn: str, postgres_dsn: str, schema: str) -> None:
    environment = {**os.environ, "SINK_URL": with_query(dsn, schema=schema)}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER_SCRIPT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )
        for _ in range(4)
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            assert process.stdout.readline() == "ready\n"
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        results = [process.communicate(timeout=45) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    for process, (stdout, stderr) in zip(processes, results, strict=True):
        assert process.returncode == 0, stderr
        assert stdout == "stored\n", stderr
    migrations = sum(stderr.count("migrated from version 0") for _, stderr in results)
    assert migrations == 1
    assert PASSWORD not in "".join(stderr for _, stderr in results)
    assert len(run_in_new_loop(stored_records(postgres_dsn, schema))) == 4
    versions = run_in_new_loop(
        fetch(
            postgres_dsn,
            f'SELECT version FROM "{schema}".{SCHEMA_VERSION_TABLE} ORDER BY version',
        )
    )
    assert [row["version"] for row in versions] == list(range(1, TABLE_VERSION + 1))


# --- server restarts -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def restartable_server() -> Iterator[LocalPostgres]:
    """A server of this module's own, which tests stop and start."""
    with LocalPostgres() as server:
        yield server


@pytest.fixture
def restartable_url(restartable_server: LocalPostgres) -> Iterator[str]:
    if not restartable_server.is_running():
        restartable_server.start()
    dsn = restartable_server.dsn.replace("://postgres@", f"://postgres:{PASSWORD}@", 1)
    yield with_query(dsn, schema=f"tm_test_{uuid.uuid4().hex[:12]}")
    if not restartable_server.is_running():
        restartable_server.start()


async def test_write_reconnects_after_restart(
    restartable_server: LocalPostgres,
    restartable_url: str,
    make_record: RecordFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = PostgresSink(restartable_url)
    await sink.write([make_record(0)])

    await anyio.to_thread.run_sync(restartable_server.stop)
    with (
        caplog.at_level(logging.WARNING, logger="tokenmeter"),
        # A stopped server leaves no socket file behind.
        pytest.raises(OSError, match=r"No such file or directory|Connection refused"),
    ):
        await sink.write([make_record(1)])
    await anyio.to_thread.run_sync(restartable_server.start)
    await sink.write([make_record(2)])
    await sink.aclose()

    schema = restartable_url.rsplit("schema=", 1)[1]
    assert len(await stored_records(restartable_server.dsn, schema)) == 2
    assert "the pool is reset and the next write reconnects" in caplog.text
    assert PASSWORD not in caplog.text


async def test_idle_pool_survives_restart(
    restartable_server: LocalPostgres, restartable_url: str, make_record: RecordFactory
) -> None:
    sink = PostgresSink(restartable_url)
    await sink.write([make_record(0)])

    # The pool's idle connections die with the server: the first write after the restart
    # fails on one, and the write after it connects anew.
    await anyio.to_thread.run_sync(restartable_server.restart)
    outcomes = []
    for index in (1, 2):
        try:
            await sink.write([make_record(index)])
            outcomes.append("stored")
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            outcomes.append(type(error).__name__)
    await sink.aclose()

    assert outcomes[-1] == "stored"
    schema = restartable_url.rsplit("schema=", 1)[1]
    stored = len(await stored_records(restartable_server.dsn, schema))
    assert stored == 1 + outcomes.count("stored")


async def test_restart_mid_stream_stores_each_record_once(
    restartable_server: LocalPostgres, restartable_url: str, make_record: RecordFactory
) -> None:
    sink = PostgresSink(restartable_url)
    acknowledged: list[UsageRecord] = []
    failures = 0
    stop_server = anyio.Event()
    saw_failure = anyio.Event()
    restarted = anyio.Event()

    def count_failure(_: object) -> None:
        nonlocal failures
        failures += 1
        saw_failure.set()

    async def write_with_retries(records: list[UsageRecord]) -> None:
        # What tokenmeter's delivery thread does: retry the whole batch with tenacity.
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type((OSError, asyncpg.PostgresError, asyncpg.InterfaceError)),
            stop=stop_after_delay(40),
            wait=wait_fixed(0.02),
            before_sleep=count_failure,
            reraise=True,
        ):
            with attempt:
                await sink.write(records)

    async def writer() -> None:
        index = 0
        batches_after_restart = 0
        # Keeps writing while the server is down, so the outage hits writes in flight.
        while batches_after_restart < 5:
            records = [make_record(index + offset) for offset in range(200)]
            index += len(records)
            await write_with_retries(records)
            acknowledged.extend(records)
            if len(acknowledged) >= 1000:
                stop_server.set()
            if restarted.is_set():
                batches_after_restart += 1

    async def operator() -> None:
        await stop_server.wait()
        await anyio.to_thread.run_sync(restartable_server.stop, "immediate")
        await saw_failure.wait()
        await anyio.to_thread.run_sync(restartable_server.start)
        restarted.set()

    async with anyio.create_task_group() as group:
        group.start_soon(writer)
        group.start_soon(operator)
    await sink.aclose()

    schema = restartable_url.rsplit("schema=", 1)[1]
    stored = await stored_records(restartable_server.dsn, schema)
    assert failures >= 1
    assert len(stored) == len(acknowledged)
    assert {record.id for record in stored} == {record.id for record in acknowledged}


# --- through tokenmeter ----------------------------------------------------------------------


def test_metered_turns_reach_table(
    dsn: str, postgres_dsn: str, schema: str, tmp_path: Path
) -> None:
    tokenmeter.configure(sink=with_query(dsn, schema=schema), spool_dir=tmp_path / "spool")
    for agent in ("planner", "writer"):
        with tokenmeter.meter(agent=agent, tags=["e2e"]) as turn:
            turn.add(Usage(input_tokens=1200, output_tokens=300), model="gpt-4o", provider="openai")

    assert tokenmeter.flush(timeout=30)

    stored = run_in_new_loop(stored_records(postgres_dsn, schema))
    assert sorted(record.agent or "" for record in stored) == ["planner", "writer"]
    for record in stored:
        assert record.input_tokens == 1200
        assert record.output_tokens == 300
        assert record.tags == ["e2e"]
        assert record.cost_usd is not None
        assert record.cost_usd > 0
    assert tokenmeter.stats().spooled == 0
