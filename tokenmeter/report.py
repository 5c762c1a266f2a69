"""`tokenmeter report`: tokens and cost grouped by agent, model, provider, tag or day."""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TextIO

from tokenmeter.records import UsageRecord

__all__ = ["GROUP_KEYS", "ReportRow", "parse_time", "run_report", "summarize"]

GROUP_KEYS = ("agent", "model", "provider", "tag", "day", "status")
_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(value: str, *, now: datetime | None = None) -> datetime:
    """Parse `7d`, `12h`, `30m` (that long before now) or an ISO 8601 date or time, in UTC.

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
            f"invalid time {value!r}: expected a duration before now such as 7d, 12h, 30m, 90s, "
            "2w, or an ISO 8601 date or time such as 2026-05-01 or 2026-05-01T12:00:00+00:00"
        ) from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


@dataclass
class ReportRow:
    """Totals of one group of turns."""

    key: tuple[str, ...]
    turns: int = 0
    rounds: int = 0
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: Decimal = field(default_factory=Decimal)
    """Cost of the priced turns only."""
    priced_turns: int = 0
    unpriced_turns: int = 0
    """Turns with tokens but no price: their cost is unknown, never counted as zero."""
    errors: int = 0

    @property
    def cost_per_turn(self) -> Decimal | None:
        if not self.priced_turns:
            return None
        return self.cost_usd / self.priced_turns

    def add(self, record: UsageRecord, *, tokens: Any, cost: Decimal | None, rounds: int) -> None:
        self.turns += 1
        self.rounds += rounds
        self.input_tokens += tokens.input_tokens or 0
        self.cache_read_tokens += tokens.cache_read_tokens or 0
        self.cache_write_tokens += tokens.cache_write_tokens or 0
        self.output_tokens += tokens.output_tokens or 0
        self.reasoning_tokens += tokens.reasoning_tokens or 0
        if record.status == "error":
            self.errors += 1
        if cost is not None:
            self.cost_usd += cost
            self.priced_turns += 1
        elif tokens.input_tokens is not None:
            self.unpriced_turns += 1


def _record_keys(
    record: UsageRecord, by: Sequence[str], model: str | None, provider: str | None
) -> Iterator[tuple[str, ...]]:
    tags = record.tags or ["(untagged)"]
    keys: list[list[str]] = []
    for name in by:
        if name == "agent":
            keys.append([record.agent or "(none)"])
        elif name == "model":
            keys.append([model or "(none)"])
        elif name == "provider":
            keys.append([provider or "(none)"])
        elif name == "tag":
            keys.append(list(tags))
        elif name == "day":
            keys.append([record.timestamp.date().isoformat()])
        elif name == "status":
            keys.append([record.status])
    combos: list[tuple[str, ...]] = [()]
    for options in keys:
        combos = [(*combo, option) for combo in combos for option in options]
    yield from combos


def summarize(
    records: Iterable[UsageRecord], by: Sequence[str]
) -> tuple[list[ReportRow], ReportRow]:
    """Group records and total them; returns the rows, sorted by cost, and the grand total.

    Grouping by model or provider splits a turn that used several models into its per-model
    parts, so each model carries only its own tokens and cost. Grouping by tag counts a turn
    once under each of its tags, so those rows can add up to more than the total.
    """
    for name in by:
        if name not in GROUP_KEYS:
            raise ValueError(
                f"invalid --by value {name!r}: expected some of {', '.join(GROUP_KEYS)}"
            )
    split_models = "model" in by or "provider" in by
    rows: dict[tuple[str, ...], ReportRow] = {}
    total = ReportRow(key=("total",))

    for record in records:
        total.add(record, tokens=record, cost=record.cost_usd, rounds=record.rounds)
        parts: list[tuple[Any, Decimal | None, str | None, str | None, int]]
        if split_models and record.by_model:
            parts = [
                (
                    part,
                    part.cost_usd
                    if part.input_tokens or part.output_tokens or part.cost_usd is not None
                    else None,
                    part.model,
                    part.provider,
                    part.rounds,
                )
                for part in record.by_model
            ]
        else:
            parts = [(record, record.cost_usd, record.model, record.provider, record.rounds)]
        for tokens, cost, model, provider, rounds in parts:
            for key in _record_keys(record, by, model, provider):
                row = rows.get(key)
                if row is None:
                    row = rows[key] = ReportRow(key=key)
                row.add(record, tokens=tokens, cost=cost, rounds=rounds)

    ordered = sorted(rows.values(), key=lambda row: (-row.cost_usd, row.key))
    return ordered, total


def _money(value: Decimal | None, places: int = 4) -> str:
    if value is None:
        return "-"
    return f"${value:,.{places}f}"


def _tokens(value: int) -> str:
    for limit, suffix in ((1_000_000_000, "G"), (1_000_000, "M"), (10_000, "k")):
        if value >= limit:
            return f"{value / limit:.1f}{suffix}"
    return str(value)


def format_table(rows: Sequence[ReportRow], total: ReportRow, by: Sequence[str]) -> str:
    """Render the rows as an aligned text table that fits in 80 columns."""
    label = "/".join(by)
    header = (label, "turns", "input", "output", "cost", "per turn", "per 1k", "unpriced")
    body = []
    for row in [*rows, total]:
        per_turn = row.cost_per_turn
        body.append(
            (
                " / ".join(row.key),
                str(row.turns),
                _tokens(row.input_tokens),
                _tokens(row.output_tokens),
                _money(row.cost_usd if row.priced_turns else None),
                _money(per_turn, 5),
                _money(None if per_turn is None else per_turn * 1000, 2),
                str(row.unpriced_turns) if row.unpriced_turns else "",
            )
        )
    numeric_width = [max(len(header[i]), *(len(line[i]) for line in body)) for i in range(1, 8)]
    room = 80 - sum(numeric_width) - 2 * 7
    label_width = max(8, min(room, max(len(header[0]), *(len(line[0]) for line in body))))

    def fit(text: str) -> str:
        return text if len(text) <= label_width else text[: label_width - 1] + "…"

    def line(cells: Sequence[str]) -> str:
        parts = [fit(cells[0]).ljust(label_width)]
        parts += [cell.rjust(width) for cell, width in zip(cells[1:], numeric_width, strict=True)]
        return "  ".join(parts).rstrip()

    out = [line(header), "-" * len(line(header))]
    out += [line(cells) for cells in body[:-1]]
    out += ["-" * len(line(header)), line(body[-1])]
    return "\n".join(out)


def _row_dict(row: ReportRow, by: Sequence[str]) -> dict[str, Any]:
    data: dict[str, Any] = (
        dict(zip(by, row.key, strict=False)) if row.key != ("total",) else {"total": True}
    )
    data.update(
        turns=row.turns,
        rounds=row.rounds,
        input_tokens=row.input_tokens,
        cache_read_tokens=row.cache_read_tokens,
        cache_write_tokens=row.cache_write_tokens,
        output_tokens=row.output_tokens,
        reasoning_tokens=row.reasoning_tokens,
        cost_usd=str(row.cost_usd) if row.priced_turns else None,
        cost_per_turn_usd=None if row.cost_per_turn is None else str(row.cost_per_turn),
        priced_turns=row.priced_turns,
        unpriced_turns=row.unpriced_turns,
        errors=row.errors,
    )
    return data


def write_report(
    rows: Sequence[ReportRow], total: ReportRow, by: Sequence[str], fmt: str, out: TextIO
) -> None:
    if fmt == "json":
        json.dump(
            {
                "by": list(by),
                "rows": [_row_dict(r, by) for r in rows],
                "total": _row_dict(total, by),
            },
            out,
            indent=2,
        )
        out.write("\n")
    elif fmt == "csv":
        buffer = io.StringIO()
        dicts = [_row_dict(r, by) for r in rows]
        columns = [*by, *[k for k in _row_dict(total, by) if k != "total"]]
        writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(dicts)
        out.write(buffer.getvalue())
    else:
        out.write(format_table(rows, total, by) + "\n")


def run_report(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from tokenmeter.config import settings_from_env
    from tokenmeter.reading import read

    out = out or sys.stdout
    source = args.source
    if source is None:
        urls = [spec for spec in settings_from_env().sink if isinstance(spec, str)]
        readable = [
            u
            for u in urls
            if u.startswith(("jsonl:", "sqlite:", "postgres")) or u.endswith(".jsonl")
        ]
        source = readable[0] if readable else "tokenmeter.jsonl"
    by = [part.strip() for part in args.by.split(",") if part.strip()]
    since = parse_time(args.since) if args.since else None
    until = parse_time(args.until) if args.until else None

    if not (
        source.startswith(("jsonl:", "sqlite:", "postgres"))
        or os.path.exists(source)
        or source.endswith(".jsonl")
    ):
        raise ValueError(
            f"cannot read {source!r}: expected a JSONL path, jsonl:PATH, sqlite:///PATH or postgresql://..."
        )
    records = read(
        source, since=since, until=until, agent=args.agent, model=args.model, tags=args.tag
    )
    if not records:
        print(
            f"no records in {source}"
            + (
                " for these filters"
                if any((since, until, args.agent, args.model, args.tag))
                else ""
            ),
            file=out,
        )
        return 0

    rows, total = summarize(records, by)
    write_report(rows, total, by, args.format, out)
    if args.chart is not None:
        from tokenmeter.charts import write_chart

        write_chart(
            records, args.chart, by="model" if "model" in by and "agent" not in by else "agent"
        )
        print(f"chart written to {args.chart}", file=sys.stderr)
    return 0
