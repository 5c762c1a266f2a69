"""`tokenmeter report`: tokens and cost grouped by agent, model, provider, tag, day or status."""

from __future__ import annotations

import argparse
import csv
import json
import re
import sqlite3
import sys
import textwrap
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

from tokenmeter.records import ModelUsage, UsageRecord
from tokenmeter.sinks.urls import ACCEPTED_FORMS, is_jsonl_url, mask_url, sink_scheme

if TYPE_CHECKING:
    from tokenmeter.charts import CostOverTime

__all__ = [
    "FORMATS",
    "GROUP_KEYS",
    "ReportRow",
    "Summary",
    "format_table",
    "iter_source",
    "parse_group_keys",
    "parse_time",
    "run_report",
    "summarize",
    "write_report",
]

GROUP_KEYS = ("agent", "model", "provider", "tag", "day", "status")
"""The grouping keys that `--by` accepts. `day` is the UTC date of the turn's start."""

FORMATS = ("table", "json", "csv")

TABLE_WIDTH = 80
"""Columns of the terminal the text table is laid out for."""

EXIT_OK = 0

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_SQLITE_HEADER = b"SQLite format 3\x00"
_MAX_UNPRICED_MODELS = 20
_NO_VALUE = "(none)"
_UNTAGGED = "(untagged)"

PriceState = Literal["priced", "unpriced", "unmeasured"]


def parse_time(value: str, *, now: datetime | None = None) -> datetime:
    """Parse `7d`, `12h`, `30m`, `90s`, `2w` (that long before now) or an ISO 8601 date or time.

    A date or time without a time zone is taken as UTC. The result is in UTC.

    Raises:
        ValueError: naming the value and the accepted forms.
    """
    now = now or datetime.now(UTC)
    match = _RELATIVE.match(value)
    if match:
        amount, unit = float(match.group(1)), match.group(2).lower()
        return now - timedelta(**{_UNITS[unit]: amount})

    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(
            f"invalid time {value!r}: expected a duration before now such as 7d, 12h, 30m, "
            "90s or 2w, or an ISO 8601 date or time such as 2026-05-01 or "
            "2026-05-01T12:00:00+00:00"
        ) from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_group_keys(value: str) -> tuple[str, ...]:
    """Parse a comma-separated `--by` value such as `agent,model`.

    Raises:
        ValueError: if a key is unknown, repeated, or none is given.
    """
    keys = tuple(part.strip().lower() for part in value.split(",") if part.strip())
    accepted = ", ".join(GROUP_KEYS)
    if not keys:
        raise ValueError(f"invalid --by value {value!r}: expected one or more of {accepted}")
    for key in keys:
        if key not in GROUP_KEYS:
            raise ValueError(f"invalid --by value {value!r}: {key!r} is not one of {accepted}")
    if len(set(keys)) != len(keys):
        raise ValueError(f"invalid --by value {value!r}: a key appears twice")
    return keys


@dataclass
class ReportRow:
    """Totals of one group of turns.

    A turn is a record with at least one LLM call (round). Token counts include every turn.
    `cost_usd` sums the costs that are known, and the per-turn figures cover only the turns
    whose whole cost is known, so a turn without a price never counts as free.
    """

    key: tuple[str, ...]
    turns: int = 0
    rounds: int = 0
    input_tokens: int = 0
    """Every prompt-side token, cache reads and writes included."""
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    """Every completion-side token, reasoning included."""
    reasoning_tokens: int = 0
    known_cost_usd: Decimal = field(default_factory=Decimal)
    """Sum of every known cost, including the priced models of partly priced turns."""
    has_known_cost: bool = False
    priced_turns: int = 0
    """Turns whose whole cost is known."""
    priced_turns_cost_usd: Decimal = field(default_factory=Decimal)
    unpriced_turns: int = 0
    """Turns with usage of a model that has no price: their cost is unknown, not 0."""
    unmeasured_turns: int = 0
    """Turns whose LLM calls reported no usage at all."""
    errors: int = 0
    """Turns whose code raised (`status="error"`)."""

    @property
    def cost_usd(self) -> Decimal | None:
        """The known cost, or `None` when no cost of the group is known."""
        return self.known_cost_usd if self.has_known_cost else None

    @property
    def cost_per_turn_usd(self) -> Decimal | None:
        """Mean cost of the turns whose whole cost is known, or `None` if there are none."""
        if not self.priced_turns:
            return None
        return self.priced_turns_cost_usd / self.priced_turns

    @property
    def cost_per_1k_turns_usd(self) -> Decimal | None:
        """`cost_per_turn_usd` times 1,000."""
        per_turn = self.cost_per_turn_usd
        return None if per_turn is None else per_turn * 1000

    @property
    def cost_unknown_turns(self) -> int:
        """Turns whose cost is not wholly known: unpriced plus unmeasured."""
        return self.unpriced_turns + self.unmeasured_turns

    def add(
        self, part: UsageRecord | ModelUsage, status: str, price: PriceState, known: Decimal | None
    ) -> None:
        """Count one turn, or the part of a turn that one model served.

        Args:
            part: The turn, or one model's part of it.
            status: The turn's `status`.
            price: Whether the part's whole cost is known.
            known: The part's known cost, whole or not; `None` when nothing of it is priced.
        """
        self.turns += 1
        self.rounds += part.rounds
        self.input_tokens += part.input_tokens or 0
        self.cache_read_tokens += part.cache_read_tokens or 0
        self.cache_write_tokens += part.cache_write_tokens or 0
        self.output_tokens += part.output_tokens or 0
        self.reasoning_tokens += part.reasoning_tokens or 0
        if status == "error":
            self.errors += 1

        if known is not None:
            self.known_cost_usd += known
            self.has_known_cost = True
        if price == "priced" and known is not None:
            self.priced_turns += 1
            self.priced_turns_cost_usd += known
        elif price == "unmeasured":
            self.unmeasured_turns += 1
        else:
            self.unpriced_turns += 1


def _record_price(record: UsageRecord) -> tuple[PriceState, Decimal | None]:
    if record.cost_usd is not None:
        return "priced", record.cost_usd
    known = [part.cost_usd for part in record.by_model if part.cost_usd is not None]
    partial = sum(known, Decimal(0)) if known else None
    if record.price_status == "unmeasured" or record.input_tokens is None:
        return "unmeasured", partial
    return "unpriced", partial


def _part_price(part: ModelUsage) -> PriceState:
    if part.cost_usd is not None:
        return "priced"
    # A model's rounds that reported no usage are stored with zero tokens and no cost.
    if part.input_tokens == 0 and part.output_tokens == 0:
        return "unmeasured"
    return "unpriced"


class Summary:
    """Totals of a stream of records grouped by `by`, built one record at a time.

    Memory grows with the number of groups, not of records.
    """

    def __init__(self, by: Sequence[str]) -> None:
        self.by = tuple(by)
        for key in self.by:
            if key not in GROUP_KEYS:
                raise ValueError(
                    f"invalid group key {key!r}: expected one of {', '.join(GROUP_KEYS)}"
                )
        self.total = ReportRow(key=("total",))
        self.records = 0
        """Every record added, turns and records without rounds alike."""
        self.records_without_rounds = 0
        """Records of meters that made no LLM call of their own, such as a meter that only
        grouped its steps; they are not turns."""
        self.multi_model_turns = 0
        """Turns split across several rows because several models served them."""
        self.unpriced_models: set[str] = set()
        """Up to 20 names of models that had usage but no price."""
        self.first: datetime | None = None
        self.last: datetime | None = None
        self._rows: dict[tuple[str, ...], ReportRow] = {}
        self._split_models = "model" in self.by or "provider" in self.by

    def add(self, record: UsageRecord) -> None:
        """Count one record in the total and in each of its groups."""
        self.records += 1
        if self.first is None or record.timestamp < self.first:
            self.first = record.timestamp
        if self.last is None or record.timestamp > self.last:
            self.last = record.timestamp
        if record.rounds == 0:
            self.records_without_rounds += 1
            return

        price, known = _record_price(record)
        self.total.add(record, record.status, price, known)
        if self._split_models and record.by_model:
            if len(record.by_model) > 1:
                self.multi_model_turns += 1
            for part in record.by_model:
                part_price = _part_price(part)
                if part_price == "unpriced":
                    self._note_unpriced(part.model)
                self._add_to_groups(
                    record, part, part.model, part.provider, part_price, part.cost_usd
                )
            return

        if price == "unpriced":
            models = [part.model for part in record.by_model if part.cost_usd is None]
            for model in models or [record.model]:
                self._note_unpriced(model)
        self._add_to_groups(record, record, record.model, record.provider, price, known)

    def _note_unpriced(self, model: str | None) -> None:
        if len(self.unpriced_models) < _MAX_UNPRICED_MODELS:
            self.unpriced_models.add(model or _NO_VALUE)

    def _add_to_groups(
        self,
        record: UsageRecord,
        part: UsageRecord | ModelUsage,
        model: str | None,
        provider: str | None,
        price: PriceState,
        known: Decimal | None,
    ) -> None:
        for key in self._keys(record, model, provider):
            row = self._rows.get(key)
            if row is None:
                row = self._rows[key] = ReportRow(key=key)
            row.add(part, record.status, price, known)

    def _keys(
        self, record: UsageRecord, model: str | None, provider: str | None
    ) -> list[tuple[str, ...]]:
        keys: list[tuple[str, ...]] = [()]
        for name in self.by:
            if name == "tag":
                # A turn with several tags counts once under each of them.
                values = record.tags or [_UNTAGGED]
                keys = [(*key, value) for key in keys for value in values]
                continue
            if name == "agent":
                value = record.agent or _NO_VALUE
            elif name == "model":
                value = model or _NO_VALUE
            elif name == "provider":
                value = provider or _NO_VALUE
            elif name == "day":
                value = record.timestamp.date().isoformat()
            else:
                value = record.status
            keys = [(*key, value) for key in keys]
        return keys

    @property
    def rows(self) -> list[ReportRow]:
        """The groups, by date when grouped by day first, else by cost, highest first."""
        rows = list(self._rows.values())
        if self.by and self.by[0] == "day":
            return sorted(rows, key=lambda row: row.key)
        return sorted(rows, key=lambda row: (-row.known_cost_usd, -row.turns, row.key))


def summarize(records: Iterable[UsageRecord], by: Sequence[str]) -> Summary:
    """Group and total `records`, reading them one at a time.

    Grouping by model or provider splits a turn that several models served into one part per
    model, so each row carries only its own model's tokens and cost. Grouping by tag counts a
    turn once under each of its tags. In both cases the rows can add up to more turns than
    the total, and the total counts each turn once.

    Raises:
        ValueError: if a key of `by` is not one of `GROUP_KEYS`.
    """
    summary = Summary(by)
    for record in records:
        summary.add(record)
    return summary


# --- output ---------------------------------------------------------------------------------------


def _decimal_text(value: Decimal | None) -> str | None:
    # Fixed-point text: str() would write small costs as 1.2E-7.
    return None if value is None else format(value, "f")


_SUFFIXES = ((10**12, "T"), (10**9, "B"), (10**6, "M"))


def _compact(value: Decimal | int) -> str | None:
    """Return `value` as 1.23M, 45.6B or 789T when it is a million or more, else `None`."""
    for limit, suffix in _SUFFIXES:
        if value >= limit:
            scaled = Decimal(value) / limit
            text = f"{scaled:,.0f}" if scaled >= 1000 else f"{scaled:.3g}"
            return text + suffix
    return None


def format_usd(value: Decimal | None) -> str:
    """Format a cost for the table: three significant digits and at least two decimals.

    A million dollars or more is written as $1.23M.
    """
    if value is None:
        return "-"
    if value == 0:
        return "$0.00"
    compact = _compact(value)
    if compact is not None:
        return "$" + compact
    places = max(2, 2 - value.adjusted())
    return f"${value:,.{min(places, 10)}f}"


def format_tokens(value: int) -> str:
    """Format a count: with thousands separators below a million, else as 12.3M or 4.56B."""
    return _compact(value) or f"{value:,}"


_HEADERS = ("turns", "input", "output", "cost", "per turn", "per 1k", "unpriced")


def _table_cells(row: ReportRow) -> tuple[str, ...]:
    return (
        format_tokens(row.turns),
        format_tokens(row.input_tokens),
        format_tokens(row.output_tokens),
        format_usd(row.cost_usd),
        format_usd(row.cost_per_turn_usd),
        format_usd(row.cost_per_1k_turns_usd),
        format_tokens(row.cost_unknown_turns) if row.cost_unknown_turns else "",
    )


def _group_header(by: Sequence[str]) -> str:
    return " / ".join("day (UTC)" if key == "day" else key for key in by)


def format_table(summary: Summary, width: int = TABLE_WIDTH) -> str:
    """Render the summary as aligned text of at most `width` columns, with notes below.

    A group name too long for its column gets a line of its own, with its figures on the
    next line, so that names are never cut.
    """
    labels = [" / ".join(row.key) for row in summary.rows]
    bodies = [_table_cells(row) for row in summary.rows]
    total_cells = _table_cells(summary.total)
    header = _group_header(summary.by)

    number_widths = [
        max(len(_HEADERS[column]), *(len(cells[column]) for cells in [*bodies, total_cells]))
        for column in range(len(_HEADERS))
    ]
    numbers_width = sum(number_widths) + 2 * len(number_widths)
    room = max(width - numbers_width, len("total"))
    label_width = min(room, max(len(header), len("total"), *(len(label) for label in labels)))
    label_width = max(label_width, min(len(header), room))

    def line(label: str, cells: Sequence[str]) -> str:
        numbers = "".join(
            "  " + cell.rjust(cell_width)
            for cell, cell_width in zip(cells, number_widths, strict=True)
        )
        return (label.ljust(label_width) + numbers).rstrip()

    def row_lines(label: str, cells: Sequence[str]) -> list[str]:
        if len(label) <= label_width:
            return [line(label, cells)]
        wrapped = textwrap.wrap(label, width, break_on_hyphens=False) or [label]
        return [*wrapped, line("", cells)]

    heading = line(header if len(header) <= label_width else "", _HEADERS)
    rule = "-" * min(width, label_width + numbers_width)
    out = [heading, rule]
    for label, cells in zip(labels, bodies, strict=True):
        out += row_lines(label, cells)
    if not labels:
        out.append("(no records match)")
    out += [rule, *row_lines("total", total_cells)]

    notes = _notes(summary)
    if notes:
        out.append("")
        for note in notes:
            out += textwrap.wrap(note, width, break_on_hyphens=False)
    return "\n".join(out)


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}" + ("" if number == 1 else "s")


def _notes(summary: Summary) -> list[str]:
    notes: list[str] = []
    total = summary.total
    if total.cost_unknown_turns:
        parts = []
        if total.unpriced_turns:
            models = ", ".join(sorted(summary.unpriced_models))
            used = "a model" if total.unpriced_turns == 1 else "models"
            parts.append(f"{total.unpriced_turns:,} used {used} without a price ({models})")
        if total.unmeasured_turns:
            parts.append(f"{total.unmeasured_turns:,} reported no usage")
        notes.append(
            f"unpriced: {_count(total.cost_unknown_turns, 'turn')} without a wholly known "
            f"cost: {' and '.join(parts)}. The cost column sums the known costs only; per "
            "turn and per 1k average the turns priced in full."
        )
    if summary.records_without_rounds:
        notes.append(
            f"{_count(summary.records_without_rounds, 'record')} without LLM calls of their "
            "own (meters that only grouped their steps) are not counted as turns."
        )
    if "tag" in summary.by:
        notes.append("A turn with several tags counts under each of them.")
    if summary.multi_model_turns:
        notes.append(
            "Turns that called several models count once under each model "
            f"({summary.multi_model_turns:,} here)."
        )
    return notes


def _row_dict(row: ReportRow) -> dict[str, Any]:
    return {
        "turns": row.turns,
        "rounds": row.rounds,
        "input_tokens": row.input_tokens,
        "cache_read_tokens": row.cache_read_tokens,
        "cache_write_tokens": row.cache_write_tokens,
        "output_tokens": row.output_tokens,
        "reasoning_tokens": row.reasoning_tokens,
        "cost_usd": _decimal_text(row.cost_usd),
        "cost_per_turn_usd": _decimal_text(row.cost_per_turn_usd),
        "cost_per_1k_turns_usd": _decimal_text(row.cost_per_1k_turns_usd),
        "priced_turns": row.priced_turns,
        "unpriced_turns": row.unpriced_turns,
        "unmeasured_turns": row.unmeasured_turns,
        "errors": row.errors,
    }


def _time_text(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def report_dict(
    summary: Summary,
    *,
    source: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    """Build the `--format json` document: costs as exact decimal strings, unknown as null."""
    return {
        "source": None if source is None else mask_url(source),
        "by": list(summary.by),
        "since": _time_text(since),
        "until": _time_text(until),
        "first_timestamp": _time_text(summary.first),
        "last_timestamp": _time_text(summary.last),
        "records": summary.records,
        "records_without_rounds": summary.records_without_rounds,
        "unpriced_models": sorted(summary.unpriced_models),
        "rows": [
            {**dict(zip(summary.by, row.key, strict=True)), **_row_dict(row)}
            for row in summary.rows
        ],
        "total": _row_dict(summary.total),
    }


def write_csv(summary: Summary, out: TextIO) -> None:
    """Write one CSV row per group, without a total row; unknown costs are empty cells."""
    columns = [*summary.by, *_row_dict(summary.total)]
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in summary.rows:
        writer.writerow({**dict(zip(summary.by, row.key, strict=True)), **_row_dict(row)})


def _period_line(summary: Summary, source: str) -> str:
    label = mask_url(source)
    if summary.first is None or summary.last is None:
        return f"{label}: no records"
    first, last = summary.first, summary.last
    return (
        f"{label}: {summary.total.turns:,} turns from "
        f"{first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC"
    )


def write_report(
    summary: Summary,
    fmt: str,
    out: TextIO,
    *,
    source: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> None:
    """Write the summary to `out` as a text table, JSON or CSV.

    Raises:
        ValueError: if `fmt` is not one of `FORMATS`.
    """
    if fmt == "json":
        document = report_dict(summary, source=source, since=since, until=until)
        json.dump(document, out, indent=2)
        out.write("\n")
    elif fmt == "csv":
        write_csv(summary, out)
    elif fmt == "table":
        if source is not None:
            out.write("\n".join(textwrap.wrap(_period_line(summary, source), TABLE_WIDTH)))
            out.write("\n\n")
        out.write(format_table(summary) + "\n")
    else:
        raise ValueError(f"invalid format {fmt!r}: expected one of {', '.join(FORMATS)}")


# --- sources --------------------------------------------------------------------------------------


def _is_sqlite_file(path: Path) -> bool:
    with path.open("rb") as file:
        return file.read(len(_SQLITE_HEADER)) == _SQLITE_HEADER


def iter_source(
    source: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    agent: str | None = None,
    model: str | None = None,
    tags: Sequence[str] | None = None,
) -> Iterator[UsageRecord]:
    """Iterate over the records of a sink URL or file, filtered as `tokenmeter.read` does.

    JSONL files are streamed a line at a time. A path without a scheme is read as SQLite
    when the file starts with SQLite's header, else as JSONL.

    NOTE: SQLite and PostgreSQL sources are read whole into memory by `tokenmeter.reading`
    before the first record is returned.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if `source` is not a readable sink URL or a table is missing.
    """
    from tokenmeter.reading import iter_jsonl, read, read_sqlite

    text = source.strip()
    filters: dict[str, Any] = {
        "since": since,
        "until": until,
        "agent": agent,
        "model": model,
        "tags": list(tags or ()),
    }
    if is_jsonl_url(text):
        return iter_jsonl(text, **filters)
    path = Path(text).expanduser()
    if sink_scheme(text) is None and not (text.lower() in ("none", "stdout") and not path.exists()):
        if not path.exists():
            raise FileNotFoundError(
                f"no file at {text!r}: expected a JSONL file, a SQLite database or a sink "
                f"URL ({', '.join(ACCEPTED_FORMS[:5])})"
            )
        if path.is_dir():
            raise IsADirectoryError(
                f"{text!r} is a directory: expected a JSONL file or a SQLite database"
            )
        if _is_sqlite_file(path):
            return iter(read_sqlite(path, **filters))
        return iter_jsonl(path, **filters)
    return iter(read(text, **filters))


def default_source() -> str:
    """Return the first readable sink of `TOKENMETER_SINK`, else `tokenmeter.jsonl`."""
    from tokenmeter.config import settings_from_env
    from tokenmeter.sinks.urls import DEFAULT_JSONL_PATH

    for spec in settings_from_env().sink:
        if not isinstance(spec, str):
            continue
        if is_jsonl_url(spec) or sink_scheme(spec) in ("sqlite", "postgresql", "postgres"):
            return spec
    return DEFAULT_JSONL_PATH


def _summarize_source(
    summary: Summary, chart: CostOverTime | None, source: str, **filters: Any
) -> None:
    # Driver errors become ValueError naming the source, so that the command prints one line
    # that names what it could not read, instead of a traceback or a bare errno message.
    is_postgres = sink_scheme(source.strip()) in ("postgresql", "postgres")
    driver_errors: tuple[type[BaseException], ...] = (OSError, *_postgres_errors())
    try:
        for record in iter_source(source, **filters):
            summary.add(record)
            if chart is not None:
                chart.add(record)
    except sqlite3.Error as error:
        raise ValueError(f"reading SQLite {mask_url(source)!r} failed: {error}") from None
    except driver_errors as error:
        if not is_postgres:
            raise
        raise ValueError(f"reading PostgreSQL {mask_url(source)!r} failed: {error}") from None


def _postgres_errors() -> tuple[type[BaseException], ...]:
    try:
        import asyncpg
    except ImportError:
        return ()
    return (asyncpg.PostgresError, asyncpg.InterfaceError)


# --- command --------------------------------------------------------------------------------------


def _chart_grouping(args: argparse.Namespace, by: Sequence[str]) -> str:
    chosen = getattr(args, "chart_by", None)
    if chosen:
        return str(chosen)
    return "model" if by[0] in ("model", "provider") else "agent"


def run_report(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run `tokenmeter report` with parsed arguments; returns the exit code.

    Raises:
        ValueError, OSError, ImportError: for invalid arguments or an unreadable source,
            with a one-line message that the command prints.
    """
    out = out or sys.stdout
    by = parse_group_keys(args.by)
    now = datetime.now(UTC)
    since = parse_time(args.since, now=now) if args.since else None
    until = parse_time(args.until, now=now) if args.until else None
    if since is not None and until is not None and since >= until:
        raise ValueError(
            f"invalid period: --since {args.since!r} ({since:%Y-%m-%d %H:%M} UTC) is not "
            f"before --until {args.until!r} ({until:%Y-%m-%d %H:%M} UTC)"
        )
    if args.format not in FORMATS:
        raise ValueError(f"invalid --format {args.format!r}: expected one of {', '.join(FORMATS)}")

    chart = None
    if args.chart is not None:
        from tokenmeter.charts import CostOverTime, check_chart_path

        check_chart_path(args.chart)
        chart = CostOverTime(_chart_grouping(args, by))

    source = args.source or default_source()
    tags = list(args.tag or ())
    summary = Summary(by)
    _summarize_source(
        summary,
        chart,
        source,
        since=since,
        until=until,
        agent=args.agent,
        model=args.model,
        tags=tags,
    )

    filtered = any((since, until, args.agent, args.model, tags))
    if summary.records == 0 and not filtered:
        raise ValueError(f"no usage records in {mask_url(source)!r}")

    write_report(summary, args.format, out, source=source, since=since, until=until)
    if chart is not None:
        path = chart.write(args.chart)
        print(f"chart written to {path}", file=sys.stderr)
    return EXIT_OK
