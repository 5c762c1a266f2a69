"""Reading records back: JSONL, SQLite and PostgreSQL, filters, damaged files, data frames."""

from __future__ import annotations

import logging
import sys
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pandas as pd
import pytest

from tests.postgres_server import postgres_dsn, with_query
from tokenmeter.reading import (
    iter_jsonl,
    read,
    read_jsonl,
    read_jsonl_df,
    read_postgres,
    read_sqlite,
    to_pandas,
    to_polars,
)
from tokenmeter.records import SCHEMA_VERSION, UsageRecord, record_to_json
from tokenmeter.sinks import JsonlSink, SqliteSink, open_sink

__all__ = ["postgres_dsn"]

START = datetime(2026, 5, 1, 9, 30, tzinfo=UTC)


def make_record(index: int, **overrides: Any) -> UsageRecord:
    fields: dict[str, Any] = {
        "id": uuid.uuid4(),
        "timestamp": START + timedelta(hours=index),
        "run_id": uuid.uuid4(),
        "agent": ("planner", "coder", "reviewer")[index % 3],
        "model": ("gpt-4o", "claude-sonnet-4-5")[index % 2],
        "provider": ("openai", "anthropic")[index % 2],
        "rounds": 1,
        "input_tokens": 100 * (index + 1),
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "output_tokens": 10 * (index + 1),
        "reasoning_tokens": 0,
        "cost_usd": Decimal("0.00123456789012345678") * (index + 1),
        "price_status": "priced",
        "tags": ["nightly"] if index % 2 else ["nightly", "eval"],
    }
    fields.update(overrides)
    return UsageRecord(**fields)


RECORDS = [make_record(index) for index in range(6)]


def write_lines(path: Path, lines: list[str], *, final_newline: bool = True) -> None:
    text = "\n".join(lines) + ("\n" if final_newline else "")
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def jsonl_path(tmp_path: Path) -> Path:
    path = tmp_path / "usage.jsonl"
    write_lines(path, [record_to_json(record) for record in RECORDS])
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'usage.db'}"

    async def fill() -> None:
        sink = open_sink(url)
        await sink.write(RECORDS)
        await sink.aclose()

    anyio.run(fill)
    return url


@pytest.fixture
def postgres_url(postgres_dsn: str) -> str:
    url = with_query(postgres_dsn, table=f"reading_{uuid.uuid4().hex}")

    async def fill() -> None:
        sink = open_sink(url)
        await sink.write(RECORDS)
        await sink.aclose()

    anyio.run(fill)
    return url


# --- JSONL ---------------------------------------------------------------------------------


def test_read_jsonl_returns_records_in_order(jsonl_path: Path) -> None:
    assert read_jsonl(jsonl_path) == RECORDS


def test_read_jsonl_keeps_exact_costs(jsonl_path: Path) -> None:
    costs = [str(record.cost_usd) for record in read_jsonl(jsonl_path)]

    assert costs == [str(record.cost_usd) for record in RECORDS]


def test_read_jsonl_accepts_url(jsonl_path: Path) -> None:
    assert read_jsonl(f"jsonl:{jsonl_path}") == RECORDS


def test_read_jsonl_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as raised:
        read_jsonl(tmp_path / "missing.jsonl")

    assert str(raised.value) == (
        f"no JSONL file of usage records at {str(tmp_path / 'missing.jsonl')!r}"
    )


@pytest.mark.parametrize(
    ("filters", "indexes"),
    [
        ({"agent": "coder"}, [1, 4]),
        ({"model": "gpt-4o"}, [0, 2, 4]),
        ({"agent": "planner", "model": "claude-sonnet-4-5"}, [3]),
        ({"tags": "eval"}, [0, 2, 4]),
        ({"tags": ["nightly", "eval"]}, [0, 2, 4]),
        ({"tags": ["nightly", "missing"]}, []),
        ({"since": START + timedelta(hours=2)}, [2, 3, 4, 5]),
        ({"until": START + timedelta(hours=2)}, [0, 1]),
        (
            {"since": START + timedelta(hours=1), "until": START + timedelta(hours=3)},
            [1, 2],
        ),
        ({"since": "2026-05-01T11:30:00+00:00"}, [2, 3, 4, 5]),
        ({"since": "2026-05-01T13:30:00+02:00"}, [2, 3, 4, 5]),
        ({"since": datetime(2026, 5, 1, 11, 30)}, [2, 3, 4, 5]),
        ({"until": date(2026, 5, 1)}, []),
        ({"since": date(2026, 5, 1), "until": "2026-05-02"}, [0, 1, 2, 3, 4, 5]),
    ],
)
def test_read_jsonl_filters(jsonl_path: Path, filters: dict[str, Any], indexes: list[int]) -> None:
    assert read_jsonl(jsonl_path, **filters) == [RECORDS[index] for index in indexes]


def test_invalid_time_bound_raises(jsonl_path: Path) -> None:
    with pytest.raises(ValueError, match="invalid since=") as raised:
        read_jsonl(jsonl_path, since="yesterday")

    assert str(raised.value) == (
        "invalid since='yesterday': expected a datetime, a date, or an ISO 8601 string such "
        "as '2026-05-01' or '2026-05-01T12:00:00+00:00'"
    )


def test_truncated_last_line_skipped_with_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "usage.jsonl"
    lines = [record_to_json(record) for record in RECORDS[:3]]
    write_lines(path, [*lines, record_to_json(RECORDS[3])[:50]], final_newline=False)

    with caplog.at_level(logging.WARNING, logger="tokenmeter.reading"):
        records = read_jsonl(path)

    assert records == RECORDS[:3]
    assert [entry.message for entry in caplog.records] == [
        f"skipped the incomplete last line 4 of {path}: a writer is still appending or "
        "stopped in the middle of a line"
    ]


def test_complete_last_line_without_newline_read(tmp_path: Path) -> None:
    path = tmp_path / "usage.jsonl"
    write_lines(path, [record_to_json(record) for record in RECORDS], final_newline=False)

    assert read_jsonl(path) == RECORDS


def test_invalid_lines_counted_in_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "usage.jsonl"
    good = [record_to_json(record) for record in RECORDS[:3]]
    write_lines(
        path,
        [
            good[0],
            "not json at all",
            good[1],
            '["a", "list"]',
            '{"id": "not-a-uuid"}',
            "",
            good[2],
            '{"truncated": ',
        ],
    )

    with caplog.at_level(logging.WARNING, logger="tokenmeter.reading"):
        records = read_jsonl(path)

    assert records == RECORDS[:3]
    assert [entry.message for entry in caplog.records] == [
        f"skipped 4 lines of {path} that are not tokenmeter records: lines 2, 4, 5, 8"
    ]
    assert all(entry.exc_info is None for entry in caplog.records)


def test_many_invalid_lines_listed_briefly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "usage.jsonl"
    write_lines(path, ["garbage"] * 25)

    with caplog.at_level(logging.WARNING, logger="tokenmeter.reading"):
        assert read_jsonl(path) == []

    assert caplog.records[0].message.endswith(
        "lines 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20 and 5 more"
    )


def test_newer_schema_records_skipped_with_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "usage.jsonl"
    newer = RECORDS[1].model_copy(update={"schema_version": SCHEMA_VERSION + 1})
    write_lines(path, [record_to_json(RECORDS[0]), record_to_json(newer)])

    with caplog.at_level(logging.WARNING, logger="tokenmeter.reading"):
        records = read_jsonl(path)

    assert records == [RECORDS[0]]
    assert [entry.message for entry in caplog.records] == [
        f"skipped 1 records of {path} written with a newer record schema than version "
        f"{SCHEMA_VERSION}: upgrade tokenmeter to read them; lines 2"
    ]


def test_duplicate_ids_read_once(tmp_path: Path) -> None:
    path = tmp_path / "usage.jsonl"
    lines = [record_to_json(record) for record in RECORDS]
    write_lines(path, [*lines, *lines[2:4]])

    assert read_jsonl(path) == RECORDS
    assert len(read_jsonl(path, dedupe=False)) == len(RECORDS) + 2


def test_iter_jsonl_streams_lines(jsonl_path: Path) -> None:
    records = iter_jsonl(jsonl_path)

    assert next(records) == RECORDS[0]
    with jsonl_path.open("a", encoding="utf-8") as file:
        file.write(record_to_json(make_record(9)) + "\n")
    assert len(list(records)) == len(RECORDS)


def test_iter_jsonl_missing_file_raises_at_call(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        iter_jsonl(tmp_path / "missing.jsonl")


def test_iter_jsonl_warns_when_stopped_early(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "usage.jsonl"
    write_lines(path, ["garbage", record_to_json(RECORDS[0]), record_to_json(RECORDS[1])])
    records = iter_jsonl(path)

    with caplog.at_level(logging.WARNING, logger="tokenmeter.reading"):
        assert next(records) == RECORDS[0]
        records.close()

    assert len(caplog.records) == 1


@pytest.mark.anyio
async def test_reads_what_jsonl_sink_wrote(tmp_path: Path) -> None:
    sink = JsonlSink(tmp_path / "usage.jsonl")

    await sink.write(RECORDS[:2])
    await sink.write(RECORDS[2:])

    assert read_jsonl(tmp_path / "usage.jsonl") == RECORDS


# --- SQLite --------------------------------------------------------------------------------


def test_read_sqlite_returns_records_oldest_first(sqlite_url: str) -> None:
    assert read_sqlite(sqlite_url) == RECORDS


def test_read_sqlite_accepts_path(sqlite_url: str) -> None:
    path = sqlite_url.removeprefix("sqlite:///")

    assert read_sqlite(Path(path)) == RECORDS


@pytest.mark.parametrize(
    ("filters", "indexes"),
    [
        ({"agent": "coder"}, [1, 4]),
        ({"model": "claude-sonnet-4-5"}, [1, 3, 5]),
        ({"tags": "eval"}, [0, 2, 4]),
        ({"since": START + timedelta(hours=2), "until": "2026-05-01T13:30:00Z"}, [2, 3]),
        ({"since": datetime(2026, 5, 1, 11, 30)}, [2, 3, 4, 5]),
    ],
)
def test_read_sqlite_filters(sqlite_url: str, filters: dict[str, Any], indexes: list[int]) -> None:
    assert read_sqlite(sqlite_url, **filters) == [RECORDS[index] for index in indexes]


def test_read_sqlite_named_table(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'usage.db'}?table=turns"

    async def fill() -> None:
        sink = SqliteSink(tmp_path / "usage.db", table="turns")
        await sink.write(RECORDS)
        await sink.aclose()

    anyio.run(fill)

    assert read_sqlite(url) == RECORDS
    assert read_sqlite(tmp_path / "usage.db", table="turns") == RECORDS


def test_read_sqlite_missing_table_raises(sqlite_url: str) -> None:
    path = sqlite_url.removeprefix("sqlite:///")

    with pytest.raises(ValueError, match="no table 'turns'") as raised:
        read_sqlite(sqlite_url, table="turns")

    assert str(raised.value) == (
        f"no table 'turns' in SQLite database {path!r}; its tables are "
        "['llm_usage', 'tokenmeter_schema']. Pass table=NAME or ?table=NAME"
    )


def test_read_sqlite_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no SQLite database at"):
        read_sqlite(tmp_path / "missing.db")

    assert not (tmp_path / "missing.db").exists()


def test_read_sqlite_skips_invalid_rows(sqlite_url: str, caplog: pytest.LogCaptureFixture) -> None:
    import sqlite3

    path = sqlite_url.removeprefix("sqlite:///")
    connection = sqlite3.connect(path)
    with connection:
        connection.execute(
            "UPDATE llm_usage SET status = 'exploded' WHERE id = ?", (str(RECORDS[2].id),)
        )
    connection.close()

    with caplog.at_level(logging.WARNING, logger="tokenmeter.reading"):
        records = read_sqlite(sqlite_url)

    assert records == [record for index, record in enumerate(RECORDS) if index != 2]
    assert [entry.message for entry in caplog.records] == [
        f"skipped 1 rows of table 'llm_usage' of {path} that are not valid tokenmeter "
        f"records: ids {RECORDS[2].id}"
    ]


# --- PostgreSQL ------------------------------------------------------------------------------


def test_read_postgres_returns_records(postgres_url: str) -> None:
    records = read_postgres(postgres_url)

    assert records == RECORDS
    assert [str(record.cost_usd) for record in records] == [
        str(record.cost_usd) for record in RECORDS
    ]


def test_read_postgres_filters(postgres_url: str) -> None:
    records = read_postgres(
        postgres_url, agent="coder", since=START + timedelta(hours=2), tags="eval"
    )

    assert records == [RECORDS[4]]


def test_read_postgres_missing_table_raises(postgres_dsn: str) -> None:
    with pytest.raises(ValueError, match='no table "absent_table" in the PostgreSQL database'):
        read_postgres(with_query(postgres_dsn, table="absent_table"))


# --- read(url) -----------------------------------------------------------------------------


def test_read_dispatches_by_url(jsonl_path: Path, sqlite_url: str, postgres_url: str) -> None:
    assert read(f"jsonl:{jsonl_path}") == RECORDS
    assert read(str(jsonl_path)) == RECORDS
    assert read(sqlite_url) == RECORDS
    assert read(postgres_url, agent="coder") == [RECORDS[1], RECORDS[4]]


def test_read_default_jsonl(
    jsonl_path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    jsonl_path.rename(tmp_path / "tokenmeter.jsonl")
    monkeypatch.chdir(tmp_path)

    assert read("jsonl") == RECORDS
    assert read("jsonl:") == RECORDS
    assert read_jsonl() == RECORDS


@pytest.mark.parametrize("url", ["stdout", "stdout:json", "none"])
def test_read_unreadable_sink_raises(url: str) -> None:
    with pytest.raises(ValueError, match="keeps no records to read back"):
        read(url)


def test_read_unknown_url_masks_password() -> None:
    with pytest.raises(ValueError, match="unsupported sink URL") as raised:
        read("mysql://app:hunter2@db/usage")

    assert "hunter2" not in str(raised.value)
    assert "mysql://app:***@db/usage" in str(raised.value)


# --- pandas --------------------------------------------------------------------------------


def test_to_pandas_column_types() -> None:
    records = [
        RECORDS[0],
        make_record(1, input_tokens=None, output_tokens=None, cost_usd=None, duration_ms=3.5),
    ]

    frame = to_pandas(records)

    assert list(frame.columns) == list(UsageRecord.model_fields)
    assert str(frame["timestamp"].dtype).startswith("datetime64[")
    assert str(frame["timestamp"].dt.tz) == "UTC"
    assert frame["rounds"].dtype == "int64"
    assert frame["input_tokens"].dtype == "Int64"
    assert frame["cache_read_tokens"].dtype == "int64"
    assert frame["cost_usd"].dtype == object
    assert frame["duration_ms"].dtype == "float64"


def test_to_pandas_values() -> None:
    records = [RECORDS[0], make_record(1, input_tokens=None, cost_usd=None)]

    frame = to_pandas(records)

    assert frame["timestamp"].iloc[0] == pd.Timestamp(START)
    assert frame["id"].iloc[0] == str(RECORDS[0].id)
    assert frame["input_tokens"].iloc[0] == 100
    assert frame["input_tokens"].iloc[1] is pd.NA
    assert frame["cost_usd"].iloc[0] == RECORDS[0].cost_usd
    assert isinstance(frame["cost_usd"].iloc[0], Decimal)
    assert str(frame["cost_usd"].iloc[0]) == str(RECORDS[0].cost_usd)
    assert frame["cost_usd"].iloc[1] is None
    assert frame["tags"].iloc[0] == ["nightly", "eval"]


def test_to_pandas_sums_costs_exactly() -> None:
    frame = to_pandas(RECORDS)

    assert frame["cost_usd"].sum() == sum(record.cost_usd or 0 for record in RECORDS)


def test_to_pandas_empty() -> None:
    frame = to_pandas([])

    assert list(frame.columns) == list(UsageRecord.model_fields)
    assert len(frame) == 0
    assert frame["input_tokens"].dtype == "int64"
    assert str(frame["timestamp"].dt.tz) == "UTC"


def test_read_jsonl_df_filters(jsonl_path: Path) -> None:
    frame = read_jsonl_df(jsonl_path, agent="coder")

    assert list(frame["id"]) == [str(RECORDS[1].id), str(RECORDS[4].id)]


def test_to_pandas_without_pandas_names_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)

    with pytest.raises(ImportError) as raised:
        to_pandas(RECORDS)

    assert str(raised.value) == "to_pandas needs pandas: pip install 'tokenmeter[pandas]'"


# --- polars --------------------------------------------------------------------------------


@pytest.fixture
def pl() -> ModuleType:
    """polars, imported here so that without it only the polars tests fail."""
    import polars

    return polars


def test_to_polars_column_types(pl: ModuleType) -> None:
    records = [RECORDS[0], make_record(1, input_tokens=None, cost_usd=None)]

    frame = to_polars(records)

    assert frame.columns == list(UsageRecord.model_fields)
    assert frame.schema["timestamp"] == pl.Datetime("us", "UTC")
    assert frame.schema["input_tokens"] == pl.Int64
    assert frame.schema["id"] == pl.String
    assert frame.schema["tags"] == pl.List(pl.String)
    assert frame.schema["metadata"] == pl.String
    assert frame.schema["cost_usd"] == pl.Decimal(38, 20)


def test_to_polars_keeps_exact_costs() -> None:
    frame = to_polars(RECORDS)

    assert frame["cost_usd"].to_list() == [record.cost_usd for record in RECORDS]
    assert frame["cost_usd"].sum() == sum(record.cost_usd or 0 for record in RECORDS)


def test_to_polars_values() -> None:
    records = [RECORDS[0], make_record(1, input_tokens=None, metadata={"user": "ünï"})]

    frame = to_polars(records)

    assert frame["timestamp"][0] == START
    assert frame["input_tokens"].to_list() == [100, None]
    assert frame["tags"][0].to_list() == ["nightly", "eval"]
    assert frame["metadata"].to_list() == ["{}", '{"user":"ünï"}']


def test_to_polars_wide_costs_in_object_column(pl: ModuleType) -> None:
    records = [make_record(0, cost_usd=Decimal("123456789012345678901.123456789012345678"))]

    frame = to_polars(records)

    assert frame.schema["cost_usd"] == pl.Object
    assert frame["cost_usd"][0] == records[0].cost_usd


def test_to_polars_without_polars_names_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "polars", None)

    with pytest.raises(ImportError, match="needs polars") as raised:
        to_polars(RECORDS)

    assert str(raised.value) == "to_polars needs polars: pip install 'tokenmeter[polars]'"
