"""Read usage records back from JSONL, SQLite and PostgreSQL sinks, as lists or data frames."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import os
import sqlite3
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from pydantic_core import to_jsonable_python

from tokenmeter.records import SCHEMA_VERSION, UsageRecord
from tokenmeter.sinks.sqlite import format_timestamp, row_to_record
from tokenmeter.sinks.urls import (
    ACCEPTED_FORMS,
    DEFAULT_JSONL_PATH,
    DEFAULT_TABLE,
    is_jsonl_url,
    mask_url,
    parse_jsonl_url,
    parse_sqlite_url,
    parse_table_options,
    sink_scheme,
    validate_identifier,
)

if TYPE_CHECKING:
    import pandas as pd
    import polars as pl

__all__ = [
    "iter_jsonl",
    "read",
    "read_jsonl",
    "read_jsonl_df",
    "read_postgres",
    "read_sqlite",
    "to_pandas",
    "to_polars",
]

logger = logging.getLogger(__name__)

TimeBound = datetime | date | str
"""A time filter: an aware or naive `datetime` (naive means UTC), a `date` (its midnight
in UTC), or an ISO 8601 string of either."""

_MAX_LINE_NUMBERS = 20
_INTEGER_FIELDS = (
    "rounds",
    "unmeasured_rounds",
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "schema_version",
)
_UUID_FIELDS = ("id", "run_id", "parent_id")
_COST_FIELDS = frozenset(
    name for name in UsageRecord.model_fields if name == "cost_usd" or name.endswith("_cost_usd")
)
_TIME_FIELDS = ("timestamp", "priced_at", "repriced_at")
_PANDAS_EXTRA = "pip install 'tokenmeter[pandas]'"
_POSTGRES_EXTRA = "pip install 'tokenmeter[postgres]'"
_POLARS_EXTRA = "pip install 'tokenmeter[polars]'"
# polars' Decimal is a 128-bit type of 38 digits at most (polars.datatypes.Decimal docs).
_POLARS_DECIMAL_PRECISION = 38


def _to_utc(name: str, value: TimeBound) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"invalid {name}={value!r}: expected a datetime, a date, or an ISO 8601 string "
                "such as '2026-05-01' or '2026-05-01T12:00:00+00:00'"
            ) from None
    if not isinstance(value, datetime):
        value = datetime.combine(value, time(), tzinfo=UTC)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


@dataclass(frozen=True)
class _Filter:
    since: datetime | None = None
    until: datetime | None = None
    agent: str | None = None
    model: str | None = None
    tags: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def build(
        cls,
        since: TimeBound | None,
        until: TimeBound | None,
        agent: str | None,
        model: str | None,
        tags: str | Iterable[str] | None,
    ) -> _Filter:
        # A lone string is one tag, not an iterable of one-letter tags.
        tag_set = frozenset([tags] if isinstance(tags, str) else tags or ())
        return cls(
            since=None if since is None else _to_utc("since", since),
            until=None if until is None else _to_utc("until", until),
            agent=agent,
            model=model,
            tags=tag_set,
        )

    def may_match(self, data: Mapping[str, Any]) -> bool:
        """Cheap test on the raw JSON object, to skip validating records that cannot match."""
        if self.agent is not None and data.get("agent") != self.agent:
            return False
        return self.model is None or data.get("model") == self.model

    def matches(self, record: UsageRecord) -> bool:
        if self.since is not None and record.timestamp < self.since:
            return False
        if self.until is not None and record.timestamp >= self.until:
            return False
        if self.agent is not None and record.agent != self.agent:
            return False
        if self.model is not None and record.model != self.model:
            return False
        return self.tags.issubset(record.tags)


@dataclass
class _SkippedLines:
    """Lines of one JSONL file that were skipped, reported in one warning per reason."""

    path: Path
    invalid: list[int] = field(default_factory=list)
    newer: list[int] = field(default_factory=list)
    truncated_last: int | None = None
    duplicates: int = 0

    def log(self) -> None:
        if self.truncated_last is not None:
            logger.warning(
                "skipped the incomplete last line %d of %s: a writer is still appending "
                "or stopped in the middle of a line",
                self.truncated_last,
                self.path,
            )
        if self.invalid:
            logger.warning(
                "skipped %d lines of %s that are not tokenmeter records: lines %s",
                len(self.invalid),
                self.path,
                _describe_line_numbers(self.invalid),
            )
        if self.newer:
            logger.warning(
                "skipped %d records of %s written with a newer record schema than version "
                "%d: upgrade tokenmeter to read them; lines %s",
                len(self.newer),
                self.path,
                SCHEMA_VERSION,
                _describe_line_numbers(self.newer),
            )
        if self.duplicates:
            logger.debug(
                "skipped %d records of %s whose id appeared earlier in the file "
                "(written again by a retried batch)",
                self.duplicates,
                self.path,
            )


def _describe_line_numbers(numbers: list[int]) -> str:
    shown = ", ".join(str(number) for number in numbers[:_MAX_LINE_NUMBERS])
    if len(numbers) > _MAX_LINE_NUMBERS:
        shown += f" and {len(numbers) - _MAX_LINE_NUMBERS} more"
    return shown


def _jsonl_path(path: str | os.PathLike[str]) -> Path:
    if isinstance(path, str) and (path.strip().lower() == "jsonl" or sink_scheme(path) == "jsonl"):
        return parse_jsonl_url(path).path
    return Path(path).expanduser()


def iter_jsonl(
    path: str | os.PathLike[str] = DEFAULT_JSONL_PATH,
    *,
    since: TimeBound | None = None,
    until: TimeBound | None = None,
    agent: str | None = None,
    model: str | None = None,
    tags: str | Iterable[str] | None = None,
    dedupe: bool = True,
) -> Generator[UsageRecord, None, None]:
    """Stream the records of a JSONL file written by the JSONL sink, in file order.

    Lines that are not records are skipped and logged as one warning per reason on the
    `tokenmeter.reading` logger, with their line numbers, when the iteration ends or the
    generator is closed. A last
    line without its newline is taken as still being written: when it does not parse, it is
    skipped with its own warning.

    Args:
        path: The file, or a `jsonl:PATH` URL.
        since: Keep records whose `timestamp` is at or after this time.
        until: Keep records whose `timestamp` is before this time.
        agent: Keep records of this agent.
        model: Keep records of this model.
        tags: Keep records that carry every one of these tags. A string is one tag.
        dedupe: Yield each record id once. A batch that the delivery thread retried after a
            partial write appears twice in the file. Deduping keeps a set of the ids seen.

    Raises:
        FileNotFoundError: at the call, if the file does not exist.
        ValueError: at the call, if a time bound is not a valid time.
    """
    file_path = _jsonl_path(path)
    where = _Filter.build(since, until, agent, model, tags)
    if not file_path.exists():
        raise FileNotFoundError(f"no JSONL file of usage records at {str(file_path)!r}")
    return _iter_jsonl_lines(file_path, where, dedupe)


def _iter_jsonl_lines(
    path: Path, where: _Filter, dedupe: bool
) -> Generator[UsageRecord, None, None]:
    skipped = _SkippedLines(path)
    seen: set[object] = set()

    with path.open("rb") as file:
        try:
            for number, line in enumerate(file, start=1):
                if not line.strip():
                    continue
                record = _parse_line(line, number, where, skipped)
                if record is None or not where.matches(record):
                    continue
                if dedupe:
                    if record.id in seen:
                        skipped.duplicates += 1
                        continue
                    seen.add(record.id)
                yield record
        finally:
            skipped.log()


def _parse_line(
    line: bytes, number: int, where: _Filter, skipped: _SkippedLines
) -> UsageRecord | None:
    try:
        data = json.loads(line, parse_float=Decimal)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        # Only the last line can lack its newline, because the file iterator splits on it.
        if line.endswith(b"\n"):
            skipped.invalid.append(number)
        else:
            skipped.truncated_last = number
        return None

    if not where.may_match(data):
        return None
    version = data.get("schema_version")
    if isinstance(version, int) and version > SCHEMA_VERSION:
        skipped.newer.append(number)
        return None

    try:
        return UsageRecord.model_validate(data)
    except ValidationError:
        skipped.invalid.append(number)
        return None


def read_jsonl(
    path: str | os.PathLike[str] = DEFAULT_JSONL_PATH,
    *,
    since: TimeBound | None = None,
    until: TimeBound | None = None,
    agent: str | None = None,
    model: str | None = None,
    tags: str | Iterable[str] | None = None,
    dedupe: bool = True,
) -> list[UsageRecord]:
    """Read the records of a JSONL file into a list, with the arguments of `iter_jsonl`.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if a time bound is not a valid time.
    """
    records = iter_jsonl(
        path, since=since, until=until, agent=agent, model=model, tags=tags, dedupe=dedupe
    )
    return list(records)


def read_sqlite(
    path_or_url: str | os.PathLike[str],
    *,
    table: str | None = None,
    since: TimeBound | None = None,
    until: TimeBound | None = None,
    agent: str | None = None,
    model: str | None = None,
    tags: str | Iterable[str] | None = None,
) -> list[UsageRecord]:
    """Read the records of a SQLite database written by the SQLite sink, oldest first.

    The database is opened read-only. Rows that are not valid records are skipped with one
    warning that names their ids.

    Args:
        path_or_url: The database file, or a `sqlite:///PATH[?table=NAME]` URL.
        table: The usage table, in place of the URL's `table`. Default `llm_usage`.
        since, until, agent, model, tags: Filters, as for `iter_jsonl`.

    Raises:
        FileNotFoundError: if the database file does not exist.
        ValueError: if the URL or `table` is invalid, the table does not exist, or a time
            bound is not a valid time.
    """
    text = os.fspath(path_or_url)
    if sink_scheme(text) == "sqlite":
        target = parse_sqlite_url(text)
        if target.path is None:
            raise ValueError(
                f"invalid path_or_url={text!r}: an in-memory database cannot be read back; "
                "expected sqlite:///PATH or a file path"
            )
        db_path, table_name = target.path, table or target.table
    else:
        db_path, table_name = Path(text).expanduser().absolute(), table or DEFAULT_TABLE
    validate_identifier("table", table_name)
    where = _Filter.build(since, until, agent, model, tags)

    if not db_path.is_file():
        raise FileNotFoundError(f"no SQLite database at {str(db_path)!r}")

    connection = sqlite3.connect(db_path.as_uri() + "?mode=ro", uri=True)
    with contextlib.closing(connection):
        connection.row_factory = sqlite3.Row
        _require_table(connection, table_name, db_path)
        sql, params = _select_sql(table_name, where)
        rows = connection.execute(sql, params).fetchall()

    return _records_from_rows(rows, where, f"table {table_name!r} of {db_path}")


def _require_table(connection: sqlite3.Connection, table: str, db_path: Path) -> None:
    names = [
        row[0]
        for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        )
    ]
    if table not in names:
        raise ValueError(
            f"no table {table!r} in SQLite database {str(db_path)!r}; "
            f"its tables are {names!r}. Pass table=NAME or ?table=NAME"
        )


def _select_sql(table: str, where: _Filter) -> tuple[str, list[Any]]:
    conditions: list[str] = []
    params: list[Any] = []
    if where.since is not None:
        conditions.append("timestamp >= ?")
        params.append(format_timestamp(where.since))
    if where.until is not None:
        conditions.append("timestamp < ?")
        params.append(format_timestamp(where.until))
    if where.agent is not None:
        conditions.append("agent = ?")
        params.append(where.agent)
    if where.model is not None:
        conditions.append("model = ?")
        params.append(where.model)

    sql = f'SELECT * FROM "{table}"'
    if conditions:
        sql += " WHERE " + " AND ".join(conditions)
    return sql + " ORDER BY timestamp, id", params


def _records_from_rows(
    rows: Iterable[Mapping[str, Any]],
    where: _Filter,
    source: str,
    convert: Callable[[Mapping[str, Any]], UsageRecord] = row_to_record,
) -> list[UsageRecord]:
    records: list[UsageRecord] = []
    invalid: list[str] = []
    for row in rows:
        data = dict(row)
        try:
            record = convert(data)
        except ValueError:
            invalid.append(str(data.get("id")))
            continue
        # Tags are matched here rather than in SQL, the same way for every source.
        if where.matches(record):
            records.append(record)

    if invalid:
        shown = ", ".join(invalid[:_MAX_LINE_NUMBERS])
        more = len(invalid) - _MAX_LINE_NUMBERS
        logger.warning(
            "skipped %d rows of %s that are not valid tokenmeter records: ids %s%s",
            len(invalid),
            source,
            shown,
            f" and {more} more" if more > 0 else "",
        )
    return records


def read(
    url: str | os.PathLike[str],
    *,
    since: TimeBound | None = None,
    until: TimeBound | None = None,
    agent: str | None = None,
    model: str | None = None,
    tags: str | Iterable[str] | None = None,
) -> list[UsageRecord]:
    """Read the records that the sink at `url` stored, filtered as `iter_jsonl` filters.

    Accepts the sink URLs that can be read back: `jsonl:PATH`, a path ending in `.jsonl`,
    `sqlite:///PATH` and `postgresql://...`.

    Raises:
        ValueError: if the URL names a sink that stores nothing readable (`stdout`, `none`)
            or has an unknown form. The message masks credentials.
        FileNotFoundError: if the file does not exist.
        ImportError: for a PostgreSQL URL when asyncpg is not installed.
    """
    text = os.fspath(url).strip()
    lowered = text.lower()
    scheme = sink_scheme(text)
    filters: dict[str, Any] = {
        "since": since,
        "until": until,
        "agent": agent,
        "model": model,
        "tags": tags,
    }

    if is_jsonl_url(text):
        return read_jsonl(text, **filters)
    if scheme == "sqlite":
        return read_sqlite(text, **filters)
    if lowered in ("none", "stdout", "stdout:text", "stdout:json"):
        raise ValueError(
            f"sink URL {text!r} keeps no records to read back; expected jsonl:PATH, "
            "PATH.jsonl, sqlite:///PATH or postgresql://..."
        )
    if scheme in ("postgresql", "postgres"):
        return read_postgres(text, **filters)
    raise ValueError(
        f"unsupported sink URL {mask_url(text)!r}; expected one of: {', '.join(ACCEPTED_FORMS)}"
    )


def read_postgres(
    url: str,
    *,
    since: TimeBound | None = None,
    until: TimeBound | None = None,
    agent: str | None = None,
    model: str | None = None,
    tags: str | Iterable[str] | None = None,
) -> list[UsageRecord]:
    """Read the records of a PostgreSQL table written by the PostgreSQL sink, oldest first.

    The query runs on a fresh event loop in a worker thread, so this also works where an
    event loop is already running, as in Jupyter.

    Args:
        url: `postgresql://USER:PASSWORD@HOST:PORT/DATABASE`, with the sink's `table` and
            `schema` query parameters when it used them.
        since, until, agent, model, tags: Filters, as for `iter_jsonl`.

    Raises:
        ImportError: if asyncpg is not installed; the message names
            `pip install 'tokenmeter[postgres]'`.
        ValueError: if `table` or `schema` is invalid, the table does not exist, or a time
            bound is not a valid time.
        OSError, asyncpg.PostgresError: if the database cannot be reached or read.
    """
    options = parse_table_options(url)
    where = _Filter.build(since, until, agent, model, tags)
    try:
        import asyncpg
    except ImportError as exc:
        raise ImportError(f"reading PostgreSQL needs asyncpg: {_POSTGRES_EXTRA}") from exc
    from tokenmeter.sinks.postgres import record_from_row

    table = f'"{options.table}"'
    if options.schema is not None:
        table = f'"{options.schema}".{table}'
    sql, params = _select_postgres_sql(table, where)

    async def fetch() -> list[Any]:
        connection = await asyncpg.connect(options.url)
        try:
            return list(await connection.fetch(sql, *params))
        finally:
            await connection.close()

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="tokenmeter-read") as pool:
        try:
            rows = pool.submit(asyncio.run, fetch()).result()
        except asyncpg.UndefinedTableError:
            raise ValueError(
                f"no table {table} in the PostgreSQL database {mask_url(options.url)!r}; "
                "pass the sink's ?table=NAME and ?schema=NAME"
            ) from None

    return _records_from_rows(
        (dict(row) for row in rows), where, f"table {table}", convert=record_from_row
    )


def _select_postgres_sql(table: str, where: _Filter) -> tuple[str, list[Any]]:
    conditions: list[str] = []
    params: list[Any] = []
    for condition, value in (
        ('"timestamp" >= $', where.since),
        ('"timestamp" < $', where.until),
        ("agent = $", where.agent),
        ("model = $", where.model),
    ):
        if value is not None:
            params.append(value)
            conditions.append(f"{condition}{len(params)}")

    sql = f"SELECT * FROM {table}"
    if conditions:
        sql += " WHERE " + " AND ".join(conditions)
    return sql + ' ORDER BY "timestamp", id', params


def _import_pandas(caller: str) -> ModuleType:
    try:
        import pandas
    except ImportError as exc:
        raise ImportError(f"{caller} needs pandas: {_PANDAS_EXTRA}") from exc
    return pandas


def to_pandas(records: Iterable[UsageRecord]) -> pd.DataFrame:
    """Build a DataFrame with one row per record and one column per `UsageRecord` field.

    Column types:

    - `timestamp`, `priced_at`, `repriced_at`: `datetime64[..., UTC]`, NaT when unknown.
    - counts: `int64`, or the nullable `Int64` when some value is `None`.
    - costs (`cost_usd`, the `*_cost_usd` components, `reported_cost_usd`,
      `repriced_cost_usd`): `object` columns of the exact `Decimal` objects, or `None`.
    - ids: strings. `duration_ms`: `float64`, NaN when unknown.
    - `tags`, `metadata`, `details`, `by_model` and `rounds_usage`: Python lists and dicts
      (`rounds_usage` is `None` in records of schema version 1).

    Raises:
        ImportError: if pandas is not installed; the message names
            `pip install 'tokenmeter[pandas]'`.
    """
    pandas = _import_pandas("to_pandas")
    rows = list(records)

    columns: dict[str, Any] = {}
    for name in UsageRecord.model_fields:
        values = [getattr(record, name) for record in rows]
        columns[name] = _pandas_column(pandas, name, values)
    frame: pd.DataFrame = pandas.DataFrame(columns, index=pandas.RangeIndex(len(rows)))
    return frame


def _pandas_column(pandas: ModuleType, name: str, values: list[Any]) -> Any:
    if name in _TIME_FIELDS:
        return pandas.Series(pandas.to_datetime(values, utc=True))
    if name in _INTEGER_FIELDS:
        dtype = "Int64" if any(value is None for value in values) else "int64"
        return pandas.array(values, dtype=dtype)
    if name in _UUID_FIELDS:
        return pandas.Series([None if value is None else str(value) for value in values])
    if name == "duration_ms":
        return pandas.Series(values, dtype="float64")
    if name in _COST_FIELDS:
        return pandas.Series(values, dtype=object)
    if name in ("by_model", "rounds_usage"):
        dumped = [
            None if value is None else [usage.model_dump() for usage in value] for value in values
        ]
        return pandas.Series(dumped, dtype=object)
    if name in ("tags", "metadata", "details"):
        return pandas.Series(values, dtype=object)
    return pandas.Series(values)


def to_polars(records: Iterable[UsageRecord]) -> pl.DataFrame:
    """Build a polars DataFrame with one row per record and one column per `UsageRecord` field.

    Column types:

    - `timestamp`, `priced_at`, `repriced_at`: `Datetime("us", "UTC")`.
    - counts: `Int64`, null when unknown. `duration_ms`: `Float64`.
    - costs (`cost_usd`, the `*_cost_usd` components, `reported_cost_usd`,
      `repriced_cost_usd`): `Decimal(38, scale)`, where `scale` is the largest number of
      decimal places among the column's costs, so every cost keeps its exact value. Costs
      that need more than 38 digits together go into an `Object` column of `Decimal`s.
    - ids and other text fields: `String`. `tags`: `List(String)`.
    - `details`, `by_model`, `rounds_usage` and `metadata`: JSON text (`String`), as the SQL
      sinks store them, for `pl.col(...).str.json_decode()`. Costs inside `by_model` are JSON
      strings. `rounds_usage` is null in records of schema version 1.

    Raises:
        ImportError: if polars is not installed; the message names
            `pip install 'tokenmeter[polars]'`.
    """
    try:
        import polars
    except ImportError as exc:
        raise ImportError(f"to_polars needs polars: {_POLARS_EXTRA}") from exc
    rows = list(records)

    columns: list[Any] = []
    for name in UsageRecord.model_fields:
        values = [getattr(record, name) for record in rows]
        columns.append(_polars_column(polars, name, values))
    frame: pl.DataFrame = polars.DataFrame(columns)
    return frame


def _polars_column(polars: ModuleType, name: str, values: list[Any]) -> Any:
    if name in _TIME_FIELDS:
        return polars.Series(name, values, dtype=polars.Datetime("us", "UTC"))
    if name in _INTEGER_FIELDS:
        return polars.Series(name, values, dtype=polars.Int64)
    if name in _UUID_FIELDS:
        return polars.Series(name, [_str_or_none(value) for value in values], dtype=polars.String)
    if name == "duration_ms":
        return polars.Series(name, values, dtype=polars.Float64)
    if name in _COST_FIELDS:
        return polars.Series(name, values, dtype=_polars_decimal_type(polars, values))
    if name == "tags":
        return polars.Series(name, values, dtype=polars.List(polars.String))
    if name in ("details", "metadata", "by_model", "rounds_usage"):
        texts = [None if value is None else _json_text(value) for value in values]
        return polars.Series(name, texts, dtype=polars.String)
    return polars.Series(name, values, dtype=polars.String)


def _polars_decimal_type(polars: ModuleType, costs: list[Decimal | None]) -> Any:
    known = [cost for cost in costs if cost is not None]
    scale = max((max(0, -int(cost.as_tuple().exponent)) for cost in known), default=0)
    integer_digits = max((max(0, cost.adjusted() + 1) for cost in known), default=1)
    if scale + integer_digits > _POLARS_DECIMAL_PRECISION:
        return polars.Object
    return polars.Decimal(_POLARS_DECIMAL_PRECISION, scale)


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def _json_text(value: Any) -> str:
    # The same JSON as the SQL sinks store: pydantic's JSON mode, with Decimals as strings.
    return json.dumps(to_jsonable_python(value), separators=(",", ":"), ensure_ascii=False)


def read_jsonl_df(
    path: str | os.PathLike[str] = DEFAULT_JSONL_PATH,
    *,
    since: TimeBound | None = None,
    until: TimeBound | None = None,
    agent: str | None = None,
    model: str | None = None,
    tags: str | Iterable[str] | None = None,
    dedupe: bool = True,
) -> pd.DataFrame:
    """Read a JSONL file into a DataFrame, as `iter_jsonl` and then `to_pandas` would.

    Raises:
        ImportError: if pandas is not installed.
        FileNotFoundError: if the file does not exist.
    """
    _import_pandas("read_jsonl_df")
    records = iter_jsonl(
        path, since=since, until=until, agent=agent, model=model, tags=tags, dedupe=dedupe
    )
    return to_pandas(records)
