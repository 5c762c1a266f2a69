"""Filters give the same records from every sink: JSONL, SQLite and PostgreSQL alike."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.postgres_server import postgres_dsn, with_query
from tokenmeter.reading import TimeBound, read
from tokenmeter.records import UsageRecord
from tokenmeter.sinks import open_sink

__all__ = ["postgres_dsn"]

BOUNDARY = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
TOKYO = timezone(timedelta(hours=9))


def _record(timestamp: datetime, **fields: Any) -> UsageRecord:
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "timestamp": timestamp,
        "run_id": uuid.uuid4(),
        "agent": "planner",
        "model": "gpt-4o",
        "rounds": 1,
        "input_tokens": 10,
        "output_tokens": 1,
        "cost_usd": Decimal("0.001"),
        "price_status": "priced",
    }
    values.update(fields)
    return UsageRecord(**values)


# Timestamps on and around the boundary, with and without microseconds, so that a source
# comparing timestamps as text of different lengths would disagree with the others.
RECORDS = [
    _record(BOUNDARY - timedelta(microseconds=1), agent="coder"),
    _record(BOUNDARY),
    _record(BOUNDARY + timedelta(microseconds=1), tags=["eval"]),
    _record(BOUNDARY + timedelta(seconds=1), model="claude-sonnet-4-5", tags=["eval", "ü-night"]),
    _record(BOUNDARY + timedelta(hours=9), agent=None, model=None, tags=["ü-night"]),
    _record(datetime(2026, 5, 2, 0, 0, tzinfo=UTC), agent="coder"),
]


def _matches(record: UsageRecord, filters: dict[str, Any]) -> bool:
    since, until = filters.get("since"), filters.get("until")
    tags = filters.get("tags")
    required = {tags} if isinstance(tags, str) else set(tags or ())
    return (
        (since is None or record.timestamp >= _as_utc(since))
        and (until is None or record.timestamp < _as_utc(until))
        and ("agent" not in filters or record.agent == filters["agent"])
        and ("model" not in filters or record.model == filters["model"])
        and required <= set(record.tags)
    )


def _as_utc(value: TimeBound) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


FILTERS: list[dict[str, Any]] = [
    {},
    {"since": BOUNDARY},
    {"until": BOUNDARY},
    {"since": BOUNDARY, "until": BOUNDARY + timedelta(microseconds=1)},
    {"since": BOUNDARY + timedelta(microseconds=1)},
    {"since": BOUNDARY.astimezone(TOKYO)},
    {"since": "2026-05-01T21:00:00+09:00"},
    {"since": BOUNDARY.replace(tzinfo=None)},
    {"since": date(2026, 5, 2)},
    {"until": "2026-05-02"},
    {"agent": "coder"},
    {"agent": "coder", "since": BOUNDARY},
    {"model": "claude-sonnet-4-5"},
    {"tags": "eval"},
    {"tags": ["eval", "ü-night"]},
    {"tags": "ü-night", "until": BOUNDARY + timedelta(hours=9)},
    {"agent": "nobody"},
]


def _fill(url: str) -> str:
    async def write() -> None:
        sink = open_sink(url)
        await sink.write(RECORDS)
        await sink.aclose()

    anyio.run(write)
    return url


@pytest.fixture
def jsonl_url(tmp_path: Path) -> str:
    return _fill(f"jsonl:{tmp_path / 'usage.jsonl'}")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return _fill(f"sqlite:///{tmp_path / 'usage.db'}")


@pytest.fixture
def postgres_url(postgres_dsn: str) -> str:
    return _fill(with_query(postgres_dsn, table=f"filters_{uuid.uuid4().hex}"))


def _ids(records: list[UsageRecord]) -> list[uuid.UUID]:
    return sorted(record.id for record in records)


def _check_every_filter(url: str, reader: Callable[..., list[UsageRecord]] = read) -> None:
    for filters in FILTERS:
        expected = [record for record in RECORDS if _matches(record, filters)]
        assert _ids(reader(url, **filters)) == _ids(expected), filters


def test_jsonl_filters_match_definition(jsonl_url: str) -> None:
    _check_every_filter(jsonl_url)


def test_sqlite_filters_match_definition(sqlite_url: str) -> None:
    _check_every_filter(sqlite_url)


def test_postgres_filters_match_definition(postgres_url: str) -> None:
    _check_every_filter(postgres_url)


def test_sources_return_equal_records(jsonl_url: str, sqlite_url: str, postgres_url: str) -> None:
    from_jsonl = read(jsonl_url, since=BOUNDARY)

    assert read(sqlite_url, since=BOUNDARY) == from_jsonl
    assert read(postgres_url, since=BOUNDARY) == from_jsonl


def test_sql_sources_return_oldest_first(sqlite_url: str, postgres_url: str) -> None:
    for url in (sqlite_url, postgres_url):
        timestamps = [record.timestamp for record in read(url)]

        assert timestamps == sorted(timestamps)
