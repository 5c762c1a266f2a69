"""Record factories and the per-sink harnesses that the contract suite runs over."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.postgres_server import postgres_dsn, with_query
from tokenmeter.reading import read_jsonl, read_sqlite
from tokenmeter.records import ModelUsage, RoundUsage, UsageRecord, record_from_json
from tokenmeter.sinks.postgres import record_from_row as postgres_record_from_row

__all__ = ["postgres_dsn"]

BASE_TIME = datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def build_record(index: int = 0, **overrides: Any) -> UsageRecord:
    """Build a valid record; `index` varies the id, time, agent and cost between records."""
    fields: dict[str, Any] = {
        "id": uuid.uuid4(),
        "timestamp": BASE_TIME + timedelta(minutes=index),
        "duration_ms": 812.5,
        "run_id": uuid.UUID(int=1),
        "agent": "researcher" if index % 2 == 0 else "writer",
        "name": "plan_step",
        "model": "gpt-4o",
        "provider": "openai",
        "rounds": 1,
        "input_tokens": 1200 + index,
        "cache_read_tokens": 1000,
        "cache_write_tokens": 0,
        "output_tokens": 350,
        "reasoning_tokens": 0,
        # More digits than a float keeps, so a float anywhere on the way shows up.
        "cost_usd": Decimal("0.014820000000000000000123") + index,
        "input_cost_usd": Decimal("0.003000000000000000000123") + index,
        "cache_read_cost_usd": Decimal("0.00125"),
        "cache_write_cost_usd": Decimal(0),
        "output_cost_usd": Decimal("0.01057"),
        "other_cost_usd": Decimal(0),
        "price_status": "priced",
        "price_source": "genai-prices 0.2.3",
        "priced_at": BASE_TIME + timedelta(minutes=index),
        "reported_cost_usd": Decimal("0.0148200000000000001"),
        "rounds_usage": [
            RoundUsage(
                model="gpt-4o",
                provider="openai",
                input_tokens=1200 + index,
                cache_read_tokens=1000,
                output_tokens=350,
                details={"web_search_requests": 1},
                price_context={"processing": "batch", "service_tier": "flex"},
            )
        ],
        "tags": ["prod", f"batch-{index % 3}"],
        "metadata": {"user": "ünïcødé", "nested": {"depth": [1, 2, 3]}},
    }
    fields.update(overrides)
    return UsageRecord(**fields)


def build_batch(size: int = 6) -> list[UsageRecord]:
    """Build `size` records covering priced, unpriced, unmeasured, failed and multi-model turns."""
    records = [build_record(index) for index in range(size)]
    variants: list[dict[str, Any]] = [
        {
            "cost_usd": None,
            "input_cost_usd": None,
            "cache_read_cost_usd": None,
            "cache_write_cost_usd": None,
            "output_cost_usd": None,
            "other_cost_usd": None,
            "reported_cost_usd": None,
            "price_status": "unpriced",
            "model": "in-house-llm",
            "repriced_cost_usd": Decimal("0.0421000000000000000007"),
            "repriced_at": BASE_TIME + timedelta(days=3),
            "repriced_source": "overrides prices.toml sha256:7b3048e2d18299ba",
        },
        {
            "input_tokens": None,
            "cache_read_tokens": None,
            "cache_write_tokens": None,
            "output_tokens": None,
            "reasoning_tokens": None,
            "cost_usd": None,
            "input_cost_usd": None,
            "cache_read_cost_usd": None,
            "cache_write_cost_usd": None,
            "output_cost_usd": None,
            "other_cost_usd": None,
            "priced_at": None,
            "reported_cost_usd": None,
            "rounds_usage": [],
            "price_status": "unmeasured",
            "unmeasured_rounds": 1,
            "duration_ms": None,
            "tags": [],
            "metadata": {},
        },
        {
            "status": "error",
            "error_type": "TimeoutError",
            "agent": None,
            "parent_id": uuid.uuid4(),
            # As a record of schema version 1 reads back: none of the version 2 fields.
            "input_cost_usd": None,
            "cache_read_cost_usd": None,
            "cache_write_cost_usd": None,
            "output_cost_usd": None,
            "other_cost_usd": None,
            "priced_at": None,
            "reported_cost_usd": None,
            "rounds_usage": None,
            "schema_version": 1,
        },
        {
            "rounds": 2,
            "details": {"web_search_requests": 2},
            "by_model": [
                ModelUsage(
                    model="gpt-4o",
                    provider="openai",
                    rounds=1,
                    input_tokens=1200,
                    cache_read_tokens=1000,
                    cache_write_tokens=0,
                    output_tokens=300,
                    reasoning_tokens=0,
                    cost_usd=Decimal("0.0100000000000000000001"),
                ),
                ModelUsage(
                    model="claude-sonnet-4-5",
                    provider="anthropic",
                    rounds=1,
                    input_tokens=5,
                    cache_read_tokens=0,
                    cache_write_tokens=0,
                    output_tokens=50,
                    reasoning_tokens=0,
                    cost_usd=None,
                ),
            ],
        },
    ]
    for position, changes in enumerate(variants):
        if position < size:
            records[position] = records[position].model_copy(update=changes)
    return records


RecordFactory = Callable[..., UsageRecord]
BatchFactory = Callable[[int], list[UsageRecord]]


@pytest.fixture
def make_record() -> RecordFactory:
    """`build_record(index=0, **overrides)`: one valid record."""
    return build_record


@pytest.fixture
def make_batch() -> BatchFactory:
    """`build_batch(size)`: records covering the shapes a sink must store."""
    return build_batch


@pytest.fixture
def batch() -> list[UsageRecord]:
    """Six records covering the shapes a sink must store."""
    return build_batch()


@dataclass
class SinkHarness:
    """How the contract suite opens one kind of sink and reads back what it stored.

    `url` opens a sink on the same storage each time, so a reopened sink finds earlier records.
    `read_back` returns every stored copy, duplicates included, in any order.
    `stores_once` is true for sinks that must store a retried record once (SQL sinks).
    """

    kind: str
    url: str
    stores_once: bool
    read_back: Callable[[], Awaitable[list[UsageRecord]]]


# The sink kinds of the contract suite and the event loops each runs under. A sink joins the
# suite with an entry here and a `harness_<kind>` fixture that returns a SinkHarness.
SINK_KINDS: dict[str, tuple[str, ...]] = {
    "jsonl": ("asyncio", "trio"),
    "stdout_json": ("asyncio", "trio"),
    # aiosqlite and asyncpg run on asyncio only, and so does tokenmeter's delivery thread.
    "sqlite": ("asyncio",),
    "postgres": ("asyncio",),
}


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Pairs each sink kind with its event loops; parametrizing `anyio_backend` here overrides
    # the fixture of that name for these tests only.
    if "sink_kind" in metafunc.fixturenames:
        pairs = [(kind, backend) for kind, backends in SINK_KINDS.items() for backend in backends]
        metafunc.parametrize(
            ("sink_kind", "anyio_backend"),
            pairs,
            ids=[f"{kind}-{backend}" for kind, backend in pairs],
        )


@pytest.fixture
def sink_harness(request: pytest.FixtureRequest, sink_kind: str) -> SinkHarness:
    harness = request.getfixturevalue(f"harness_{sink_kind}")
    assert isinstance(harness, SinkHarness)
    return harness


@pytest.fixture
def harness_jsonl(tmp_path: Path) -> SinkHarness:
    path = tmp_path / "usage.jsonl"

    async def read_back() -> list[UsageRecord]:
        return read_jsonl(path, dedupe=False)

    return SinkHarness("jsonl", f"jsonl:{path}", stores_once=False, read_back=read_back)


@pytest.fixture
def harness_sqlite(tmp_path: Path) -> SinkHarness:
    url = f"sqlite:///{tmp_path / 'usage.db'}"

    async def read_back() -> list[UsageRecord]:
        return read_sqlite(url)

    return SinkHarness("sqlite", url, stores_once=True, read_back=read_back)


@pytest.fixture
def harness_stdout_json(capsys: pytest.CaptureFixture[str]) -> SinkHarness:
    printed: list[str] = []

    async def read_back() -> list[UsageRecord]:
        printed.extend(capsys.readouterr().out.splitlines())
        return [record_from_json(line) for line in printed]

    return SinkHarness("stdout_json", "stdout:json", stores_once=False, read_back=read_back)


@pytest.fixture
def harness_postgres(postgres_dsn: str) -> SinkHarness:
    table = f"contract_{uuid.uuid4().hex}"
    url = with_query(postgres_dsn, table=table)

    async def read_back() -> list[UsageRecord]:
        connection = await asyncpg.connect(postgres_dsn)
        try:
            rows = await connection.fetch(f'SELECT * FROM "{table}"')
        finally:
            await connection.close()
        return [postgres_record_from_row(dict(row)) for row in rows]

    return SinkHarness("postgres", url, stores_once=True, read_back=read_back)
