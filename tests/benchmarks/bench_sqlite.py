"""SQLite sink throughput against a bare `sqlite3.executemany` of the same rows.

Each round writes the same records into a new database file three ways, in one process:

- sink: `SqliteSink.write` in batches, one transaction each. The time includes turning
  records into rows, opening the connection and creating the table.
- bare, per batch: stdlib `sqlite3`, the same batches and one transaction each, with rows
  made before timing.
- bare, one transaction: stdlib `sqlite3`, one `executemany` of every row, with rows made
  before timing. This is the reference rate.

All three use the sink's table layout (primary key and three indexes), its `INSERT OR IGNORE`
statement and its settings: WAL mode, `synchronous=NORMAL` and a checkpoint every 10,000
WAL pages. The figures are medians over the rounds.

Run: python -m tests.benchmarks bench_sqlite
  or python tests/benchmarks/bench_sqlite.py --records 200000 --batch-size 1000 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import aiosqlite

from tokenmeter.records import ModelUsage, UsageRecord
from tokenmeter.sinks.sqlite import (
    _INDEXES,
    _WAL_AUTOCHECKPOINT_PAGES,
    COLUMNS,
    SqliteSink,
    record_to_row,
)

DEFAULT_RECORDS = 200_000
DEFAULT_BATCH_SIZE = 1_000
ROUNDS = 5


def make_records(count: int) -> list[UsageRecord]:
    """Build records shaped like real turns: one model, tags, a little metadata, exact costs."""
    start = datetime(2025, 1, 1, tzinfo=UTC)
    run_id = uuid.uuid4()
    records = []
    for index in range(count):
        cost = Decimal(index % 997) / Decimal(1_000_000) + Decimal("0.000125")
        usage = ModelUsage(
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
                input_tokens=usage.input_tokens,
                cache_read_tokens=1024,
                cache_write_tokens=0,
                output_tokens=350,
                reasoning_tokens=0,
                cost_usd=cost,
                price_status="priced",
                price_source="genai-prices 0.2.3",
                by_model=[usage],
                tags=["bench", "eu"],
                metadata={"tenant": "acme", "attempt": 1},
            )
        )
    return records


def split(items: list[Any], size: int) -> list[list[Any]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def open_bare(path: Path) -> tuple[sqlite3.Connection, str]:
    """Open `path` with the sink's settings and table; return the connection and INSERT."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = NORMAL")
    connection.execute(f"PRAGMA wal_autocheckpoint = {_WAL_AUTOCHECKPOINT_PAGES}")
    column_sql = ", ".join(f'"{name}" {kind}' for name, kind in COLUMNS)
    connection.execute(f"CREATE TABLE llm_usage ({column_sql})")
    for suffix, columns in _INDEXES:
        connection.execute(f'CREATE INDEX "llm_usage_{suffix}" ON llm_usage ({columns})')

    names = ", ".join(f'"{name}"' for name, _ in COLUMNS)
    placeholders = ", ".join("?" for _ in COLUMNS)
    return connection, f"INSERT OR IGNORE INTO llm_usage ({names}) VALUES ({placeholders})"


def time_bare(path: Path, row_batches: list[list[tuple[Any, ...]]]) -> float:
    connection, insert_sql = open_bare(path)
    try:
        started = time.perf_counter()
        for batch in row_batches:
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(insert_sql, batch)
            connection.execute("COMMIT")
        return time.perf_counter() - started
    finally:
        connection.close()


async def time_sink(path: Path, record_batches: list[list[UsageRecord]]) -> float:
    sink = SqliteSink(path)
    try:
        started = time.perf_counter()
        for batch in record_batches:
            await sink.write(batch)
        return time.perf_counter() - started
    finally:
        await sink.aclose()


def count_rows(path: Path) -> int:
    connection = sqlite3.connect(path)
    try:
        (count,) = connection.execute("SELECT count(*) FROM llm_usage").fetchone()
    finally:
        connection.close()
    return int(count)


def run(record_count: int, batch_size: int, rounds: int) -> None:
    records = make_records(record_count)
    started = time.perf_counter()
    rows = [record_to_row(record) for record in records]
    convert_s = time.perf_counter() - started

    record_batches, row_batches = split(records, batch_size), split(rows, batch_size)
    times: dict[str, list[float]] = {"sink": [], "bare_batches": [], "bare_one": []}
    with tempfile.TemporaryDirectory(prefix="bench_sqlite_") as directory:
        for round_index in range(rounds):
            paths = {name: Path(directory) / f"{name}_{round_index}.db" for name in times}
            times["sink"].append(asyncio.run(time_sink(paths["sink"], record_batches)))
            times["bare_batches"].append(time_bare(paths["bare_batches"], row_batches))
            times["bare_one"].append(time_bare(paths["bare_one"], [rows]))
            for name, path in paths.items():
                stored = count_rows(path)
                if stored != record_count:
                    raise RuntimeError(f"{name} stored {stored} of {record_count} records")
                # Deleting each round's files keeps later rounds' disk usage as low as the first's.
                for leftover in path.parent.glob(f"{path.name}*"):
                    leftover.unlink()

    rates = {name: record_count / statistics.median(samples) for name, samples in times.items()}
    best = {name: record_count / min(samples) for name, samples in times.items()}
    print(
        f"SQLite {sqlite3.sqlite_version}, aiosqlite {aiosqlite.__version__}, "
        f"{record_count:,} records, batches of {batch_size:,}; "
        f"median (best) of {rounds} rounds, records/s"
    )
    print(
        f"record_to_row alone: {record_count / convert_s:,.0f} records/s "
        f"({convert_s / record_count * 1e6:.1f} µs per record)"
    )
    labels = {
        "sink": "SqliteSink.write, one transaction per batch",
        "bare_batches": "bare executemany, one transaction per batch",
        "bare_one": "bare executemany, one transaction",
    }
    for name, label in labels.items():
        print(f"{label:<45} {rates[name]:>10,.0f} ({best[name]:,.0f})")
    print(f"sink / bare, one transaction: {rates['sink'] / rates['bare_one']:.0%}")
    print(f"sink / bare, per batch:       {rates['sink'] / rates['bare_batches']:.0%}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=DEFAULT_RECORDS)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args([] if argv is None and __name__ != "__main__" else argv)
    run(args.records, args.batch_size, args.rounds)


if __name__ == "__main__":
    main()
