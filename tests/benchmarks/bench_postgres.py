"""PostgreSQL sink throughput against a bare asyncpg COPY of the same rows into the same table.

Both paths write the same records in batches of the same size into tables created by the same
migration (primary key and three indexes), in one process, alternating rounds, with both
tables emptied before each round. The sink's time includes turning records into rows; the
bare COPY gets rows made in advance and no deduplication. The server is the one of
TOKENMETER_TEST_POSTGRES_DSN, or a throwaway local one with `fsync=off` (see
tests/postgres_server.py).

Run: python -m tests.benchmarks bench_postgres
  or python tests/benchmarks/bench_postgres.py --records 200000 --batch-size 200 1000 5000
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.postgres_server import shared_postgres_dsn, with_query
from tokenmeter.records import ModelUsage, UsageRecord
from tokenmeter.sinks.postgres import (
    _COLUMN_NAMES,
    PostgresSink,
    _migration_1,
    _record_row,
)

DEFAULT_RECORDS = 200_000
DEFAULT_BATCH_SIZES = (200, 5_000)
ROUNDS = 3


def make_records(count: int) -> list[UsageRecord]:
    """Records shaped like real turns: one model, tags, a little metadata, exact costs."""
    start = datetime(2025, 1, 1, tzinfo=UTC)
    run_id = uuid.uuid4()
    records = []
    for index in range(count):
        cost = Decimal(index % 997) / Decimal(1_000_000) + Decimal("0.000125")
        records.append(
            UsageRecord(
                id=uuid.uuid4(),
                timestamp=start + timedelta(milliseconds=index),
                duration_ms=812.5,
                run_id=run_id,
                agent=f"agent-{index % 7}",
                name="research_step",
                model="gpt-4o-mini",
                provider="openai",
                rounds=2,
                input_tokens=1200 + index % 300,
                cache_read_tokens=1024,
                cache_write_tokens=0,
                output_tokens=350,
                reasoning_tokens=0,
                cost_usd=cost,
                price_status="priced",
                price_source="genai-prices 0.2.3",
                by_model=[
                    ModelUsage(
                        model="gpt-4o-mini",
                        provider="openai",
                        rounds=2,
                        input_tokens=1200 + index % 300,
                        cache_read_tokens=1024,
                        cache_write_tokens=0,
                        output_tokens=350,
                        reasoning_tokens=0,
                        cost_usd=cost,
                    )
                ],
                tags=["bench", "eu"],
                metadata={"tenant": "acme", "attempt": 1},
            )
        )
    return records


def batches(items: list[Any], size: int) -> list[list[Any]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


async def time_sink(sink: PostgresSink, record_batches: list[list[UsageRecord]]) -> float:
    started = time.perf_counter()
    for batch in record_batches:
        await sink.write(batch)
    return time.perf_counter() - started


async def time_bare_copy(
    connection: asyncpg.Connection, schema: str, row_batches: list[list[tuple[Any, ...]]]
) -> float:
    started = time.perf_counter()
    for batch in row_batches:
        await connection.copy_records_to_table(
            "llm_usage", schema_name=schema, records=batch, columns=_COLUMN_NAMES
        )
    return time.perf_counter() - started


async def run(record_count: int, batch_sizes: tuple[int, ...], rounds: int) -> None:
    dsn = shared_postgres_dsn()
    suffix = uuid.uuid4().hex[:8]
    sink_schema = f"bench_sink_{suffix}"
    staging_schema = f"bench_staging_{suffix}"
    bare_schema = f"bench_bare_{suffix}"
    records = make_records(record_count)
    rows = [_record_row(record) for record in records]

    connection = await asyncpg.connect(dsn)
    sink = PostgresSink(with_query(dsn, schema=sink_schema))
    # The same sink with its COPY-first path off: every batch goes through the temporary
    # table and INSERT ... ON CONFLICT, as it does after a batch with duplicate ids.
    staging_sink = PostgresSink(with_query(dsn, schema=staging_schema))
    staging_sink._copy_first_disabled = True
    staging_sink._expect_duplicates = True
    try:
        await connection.execute(f'CREATE SCHEMA "{bare_schema}"')
        for statement in _migration_1(bare_schema, "llm_usage"):
            await connection.execute(statement)
        await sink.write(records[:1])  # creates the pool and the table
        await staging_sink.write(records[:1])

        server = await connection.fetchval("SHOW server_version")
        print(
            f"PostgreSQL {server}, {record_count:,} records, batches written one after another; "
            f"median (best) of {rounds} rounds, records/s"
        )
        print("batch | sink | sink via temp table only | bare COPY | sink / bare COPY")
        for size in batch_sizes:
            record_batches, row_batches = batches(records, size), batches(rows, size)
            times: dict[str, list[float]] = {"sink": [], "staging": [], "bare": []}
            for _ in range(rounds):
                for schema in (sink_schema, staging_schema, bare_schema):
                    await connection.execute(f'TRUNCATE "{schema}"."llm_usage"')
                await connection.execute("CHECKPOINT")
                times["sink"].append(await time_sink(sink, record_batches))
                times["staging"].append(await time_sink(staging_sink, record_batches))
                times["bare"].append(await time_bare_copy(connection, bare_schema, row_batches))

            for schema in (sink_schema, staging_schema):
                stored = await connection.fetchval(f'SELECT count(*) FROM "{schema}"."llm_usage"')
                if stored != record_count:
                    raise RuntimeError(f"a sink stored {stored} of {record_count} records")
            median = {name: record_count / statistics.median(t) for name, t in times.items()}
            best = {name: record_count / min(t) for name, t in times.items()}
            print(
                f"{size:>5} | {median['sink']:,.0f} ({best['sink']:,.0f}) "
                f"| {median['staging']:,.0f} ({best['staging']:,.0f}) "
                f"| {median['bare']:,.0f} ({best['bare']:,.0f}) "
                f"| {median['sink'] / median['bare']:.0%}"
            )
    finally:
        await sink.aclose()
        await staging_sink.aclose()
        for schema in (sink_schema, staging_schema, bare_schema):
            await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await connection.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=DEFAULT_RECORDS)
    parser.add_argument("--batch-size", type=int, nargs="+", default=list(DEFAULT_BATCH_SIZES))
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args([] if argv is None and __name__ != "__main__" else argv)
    asyncio.run(run(args.records, tuple(args.batch_size), args.rounds))


if __name__ == "__main__":
    main()
