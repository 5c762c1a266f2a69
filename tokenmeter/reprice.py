"""`tokenmeter reprice`: price stored records again with today's prices, beside the original cost.

Each record keeps `cost_usd` as it was metered; re-pricing sets `repriced_cost_usd`,
`repriced_at` and `repriced_source`. Records of schema version 2 carry the token counts of
each round (`rounds_usage`), so they are priced again round by round, exactly as the delivery
thread priced them. Records of version 1 only have per-model totals: each model's totals are
priced as one round, which is exact when the model served one round and may differ otherwise
(see `docs/pricing.md`).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import logging
import os
import stat
import sys
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Literal, TextIO, TypeVar

from pydantic import ValidationError

from tokenmeter.pricing import PriceSnapshot, current_prices
from tokenmeter.records import SCHEMA_VERSION, Repricing, UsageRecord, json_line
from tokenmeter.sinks.jsonl import lock_file
from tokenmeter.sinks.urls import (
    ACCEPTED_FORMS,
    DEFAULT_TABLE,
    is_jsonl_url,
    mask_url,
    parse_jsonl_url,
    parse_sqlite_url,
    sink_scheme,
)
from tokenmeter.usage import Usage

__all__ = ["RepriceSummary", "reprice", "reprice_record", "run_reprice"]

logger = logging.getLogger(__name__)

RepriceAt = Literal["request", "now"]
"""The moment that time-dependent prices are taken for: each record's request time, or now."""

APPROXIMATED = "approximated from per-model totals"
"""Ends `repriced_source` when a record had no per-round usage (schema version 1)."""

_SQLITE_HEADER = b"SQLite format 3\x00"
T = TypeVar("T")


@dataclass
class RepriceSummary:
    """Counts and cost totals of one `reprice` run."""

    source: str
    """The sink re-priced, with credentials masked."""
    records: int = 0
    """Records in the time range, all of which got the `repriced_*` fields."""
    priced: int = 0
    """Records with a re-priced cost."""
    unmeasured: int = 0
    """Records without a measured round, which have no cost to re-price."""
    approximated: int = 0
    """Records priced from per-model totals, because they carry no per-round usage."""
    changed: int = 0
    """Records whose re-priced cost differs from the original `cost_usd`, unknown included."""
    cost_before_usd: Decimal = Decimal(0)
    """Sum of `cost_usd` over the records whose original and re-priced costs are both known."""
    cost_after_usd: Decimal = Decimal(0)
    """Sum of `repriced_cost_usd` over the same records."""

    def add(self, record: UsageRecord, repricing: Repricing, approximated: bool) -> None:
        self.records += 1
        self.approximated += approximated
        if record.price_status == "unmeasured":
            self.unmeasured += 1
        if repricing.cost_usd is not None:
            self.priced += 1
        if repricing.cost_usd != record.cost_usd:
            self.changed += 1
        if repricing.cost_usd is not None and record.cost_usd is not None:
            self.cost_before_usd += record.cost_usd
            self.cost_after_usd += repricing.cost_usd


def reprice_record(
    record: UsageRecord,
    prices: PriceSnapshot,
    *,
    repriced_at: datetime,
    at: RepriceAt = "request",
) -> tuple[Repricing, bool]:
    """Price `record` again from `prices`.

    Args:
        record: The stored record.
        prices: The prices to use, from `tokenmeter.pricing.current_prices()`.
        repriced_at: When the re-pricing runs, stored in `repriced_at`.
        at: `request` takes time-dependent prices (off-peak hours, dated price changes) for
            the record's request time, `now` for `repriced_at`.

    Returns:
        The new `repriced_*` values, and whether the record had to be approximated from its
        per-model totals. The cost is `None` when some round has no price now, or when the
        record has no measured round.
    """
    moment = repriced_at if at == "now" else record.priced_at or record.timestamp
    timestamp = moment.timestamp()
    rounds, approximated = _rounds_of(record)
    if not rounds:
        return Repricing(record.id, None, repriced_at, None), approximated

    total = Decimal(0)
    sources: set[str] = set()
    for usage, model, provider, context in rounds:
        cost = (
            None if model is None else prices.estimate(usage, model, provider, timestamp, context)
        )
        if cost is None:
            return Repricing(record.id, None, repriced_at, None), approximated
        total += cost.total_usd
        if cost.source:
            sources.add(cost.source)

    source = "; ".join(sorted(sources)) or None
    if approximated and source is not None:
        source = f"{source}, {APPROXIMATED}"
    return Repricing(record.id, total, repriced_at, source), approximated


_Round = tuple[Usage, str | None, str | None, dict[str, str]]


def _rounds_of(record: UsageRecord) -> tuple[list[_Round], bool]:
    if record.rounds_usage is not None:
        return [
            (
                Usage(
                    round_.input_tokens,
                    round_.output_tokens,
                    cache_read_tokens=round_.cache_read_tokens,
                    cache_write_tokens=round_.cache_write_tokens,
                    reasoning_tokens=round_.reasoning_tokens,
                    details=round_.details,
                ),
                round_.model,
                round_.provider,
                round_.price_context,
            )
            for round_ in record.rounds_usage
        ], False

    # NOTE: version 1 records keep per-model totals only. Each model is priced as one round
    # at standard prices: tiers see the summed prompt, per-request fees count once, and a
    # batch or service tier is unknown.
    rounds: list[_Round] = []
    for part in record.by_model:
        usage = Usage(
            part.input_tokens,
            part.output_tokens,
            cache_read_tokens=part.cache_read_tokens,
            cache_write_tokens=part.cache_write_tokens,
            reasoning_tokens=part.reasoning_tokens,
            details=part.details,
        )
        if usage.total_tokens or usage.details:
            rounds.append((usage, part.model, part.provider, {}))
    return rounds, True


def reprice(
    source: str | os.PathLike[str],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    at: RepriceAt = "request",
    now: datetime | None = None,
) -> RepriceSummary:
    """Price the records stored at `source` again and store the result beside each one.

    Prices are those in effect when the call starts: genai-prices' table (or the latest
    fetched one) and the overrides installed or named by `TOKENMETER_PRICES`.

    Args:
        source: A sink URL (`jsonl:PATH`, `sqlite:///PATH`, `postgresql://...`), a JSONL
            file or a SQLite database file.
        since: Re-price records whose `timestamp` is at or after this time.
        until: Re-price records whose `timestamp` is before this time.
        at: Which moment time-dependent prices are taken for; see `reprice_record`.
        now: The time stored in `repriced_at`; the current time by default.

    A JSONL file is rewritten whole into a temporary file beside it, synced to disk and
    renamed over the original, under an exclusive lock that the JSONL sink also takes, so no
    batch appended meanwhile is lost. The records in the time range gain the `repriced_*`
    fields, and every other field and line stays as it was. SQL tables get the `repriced_*`
    columns updated by id in one transaction.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if `source` names no readable sink or its table is missing.
        OSError, sqlite3.Error, asyncpg.PostgresError: if the storage cannot be read or
            written. A JSONL file is then left as it was.
    """
    text = os.fspath(source).strip()
    repriced_at = (now or datetime.now(UTC)).astimezone(UTC)
    prices = current_prices()
    since, until = _utc_or_none(since), _utc_or_none(until)

    def reprice_all(records: Iterable[UsageRecord], summary: RepriceSummary) -> list[Repricing]:
        repricings = []
        for record in records:
            repricing, approximated = reprice_record(record, prices, repriced_at=repriced_at, at=at)
            summary.add(record, repricing, approximated)
            repricings.append(repricing)
        return repricings

    kind, location = _classify(text)
    if kind == "jsonl":
        path = Path(location)
        summary = RepriceSummary(f"jsonl:{path}")
        _rewrite_jsonl(path, since, until, summary, prices, repriced_at, at)
    elif kind == "sqlite":
        summary = _reprice_sqlite(location, since, until, reprice_all)
    else:
        summary = _reprice_postgres(location, since, until, reprice_all)

    logger.info(
        "re-priced %d records of %s: %d with a price, %d changed, %d approximated",
        summary.records,
        summary.source,
        summary.priced,
        summary.changed,
        summary.approximated,
    )
    return summary


def _utc_or_none(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _classify(text: str) -> tuple[Literal["jsonl", "sqlite", "postgres"], str]:
    scheme = sink_scheme(text)
    if is_jsonl_url(text):
        return "jsonl", str(parse_jsonl_url(text).path)
    if scheme == "sqlite":
        return "sqlite", text
    if scheme in ("postgresql", "postgres"):
        return "postgres", text
    if scheme is None:
        path = Path(text).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"no file at {text!r}: expected a JSONL file, a SQLite database or a sink URL "
                f"({', '.join(ACCEPTED_FORMS[:5])})"
            )
        with path.open("rb") as file:
            is_sqlite = file.read(len(_SQLITE_HEADER)) == _SQLITE_HEADER
        return ("sqlite" if is_sqlite else "jsonl"), str(path.absolute())
    raise ValueError(
        f"cannot re-price {mask_url(text)!r}: it stores no records to read back; expected "
        "jsonl:PATH, PATH.jsonl, a SQLite file, sqlite:///PATH or postgresql://..."
    )


# --- JSONL ----------------------------------------------------------------------------------


def _rewrite_jsonl(
    path: Path,
    since: datetime | None,
    until: datetime | None,
    summary: RepriceSummary,
    prices: PriceSnapshot,
    repriced_at: datetime,
    at: RepriceAt,
) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"no JSONL file of usage records at {str(path)!r}")

    temporary = path.with_name(f".{path.name}.reprice-{os.getpid()}.tmp")
    with path.open("rb") as original:
        # The JSONL sink appends under the same lock and reopens the path once it holds it,
        # so a batch is appended either before the copy starts or to the new file.
        lock_file(original.fileno())
        mode = stat.S_IMODE(os.fstat(original.fileno()).st_mode)
        try:
            with temporary.open("wb") as copy:
                for line in original:
                    copy.write(_repriced_line(line, since, until, summary, prices, repriced_at, at))
                copy.flush()
                os.fsync(copy.fileno())
            os.chmod(temporary, mode)
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
    _sync_directory(path.parent)


def _repriced_line(
    line: bytes,
    since: datetime | None,
    until: datetime | None,
    summary: RepriceSummary,
    prices: PriceSnapshot,
    repriced_at: datetime,
    at: RepriceAt,
) -> bytes:
    """Return the line with the record's `repriced_*` fields set, or unchanged if not in scope."""
    if not line.strip():
        return line
    try:
        data = json.loads(line, parse_float=Decimal)
    except ValueError:
        return line
    if not isinstance(data, dict):
        return line
    version = data.get("schema_version")
    if isinstance(version, int) and version > SCHEMA_VERSION:
        return line
    try:
        record = UsageRecord.model_validate(data)
    except ValidationError:
        return line
    if (since is not None and record.timestamp < since) or (
        until is not None and record.timestamp >= until
    ):
        return line

    repricing, approximated = reprice_record(record, prices, repriced_at=repriced_at, at=at)
    summary.add(record, repricing, approximated)
    # The other fields are written back as they were read: same keys, same order, and
    # numbers with the same digits, because Decimals go out as exact JSON numbers.
    data["repriced_cost_usd"] = repricing.cost_usd
    data["repriced_at"] = repricing.repriced_at.isoformat()
    data["repriced_source"] = repricing.source
    ending = b"\n" if line.endswith(b"\n") else b""
    return json_line(data).encode() + ending


def _sync_directory(directory: Path) -> None:
    # The rename is durable once the directory entry is on disk; Windows cannot open a
    # directory, and its rename is durable without this.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as error:
        logger.debug("syncing directory %s failed: %r", directory, error)
    finally:
        os.close(fd)


# --- SQL ------------------------------------------------------------------------------------

_RepriceAll = Callable[[Iterable[UsageRecord], RepriceSummary], list[Repricing]]


def _reprice_sqlite(
    url_or_path: str, since: datetime | None, until: datetime | None, reprice_all: _RepriceAll
) -> RepriceSummary:
    from tokenmeter.reading import read_sqlite
    from tokenmeter.sinks.sqlite import SqliteSink

    if sink_scheme(url_or_path) == "sqlite":
        target = parse_sqlite_url(url_or_path)
        if target.path is None:
            raise ValueError(
                f"cannot re-price {url_or_path!r}: an in-memory database keeps nothing; "
                "expected sqlite:///PATH"
            )
        path, table = target.path, target.table
    else:
        path, table = Path(url_or_path), DEFAULT_TABLE

    sink = SqliteSink(path, table=table)
    summary = RepriceSummary(sink.url)
    repricings = reprice_all(read_sqlite(path, table=table, since=since, until=until), summary)

    async def store() -> int:
        try:
            return await sink.store_repricing(repricings)
        finally:
            await sink.aclose()

    _run_in_new_loop(store)
    return summary


def _reprice_postgres(
    url: str, since: datetime | None, until: datetime | None, reprice_all: _RepriceAll
) -> RepriceSummary:
    from tokenmeter.reading import read_postgres
    from tokenmeter.sinks.postgres import PostgresSink

    sink = PostgresSink(url)
    summary = RepriceSummary(sink.url)
    repricings = reprice_all(read_postgres(url, since=since, until=until), summary)

    async def store() -> int:
        try:
            return await sink.store_repricing(repricings)
        finally:
            await sink.aclose()

    _run_in_new_loop(store)
    return summary


def _run_in_new_loop(function: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine function on a new event loop in a worker thread.

    A worker thread makes this work where an event loop already runs, as in Jupyter.
    """

    async def main() -> T:
        return await function()

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="tokenmeter-reprice") as pool:
        return pool.submit(asyncio.run, main()).result()


# --- command --------------------------------------------------------------------------------


def run_reprice(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run `tokenmeter reprice` with parsed arguments; return the exit status."""
    from tokenmeter.report import format_usd, parse_time

    out = out or sys.stdout
    since = parse_time(args.since) if args.since else None
    until = parse_time(args.until) if args.until else None
    summary = reprice(args.sink, since=since, until=until, at=args.at)

    out.write(_describe(summary, format_usd))
    return 0


def _describe(summary: RepriceSummary, format_usd: Callable[[Decimal | None], str]) -> str:
    if summary.records == 0:
        return f"No records to re-price in {summary.source}.\n"

    without_price = summary.records - summary.priced - summary.unmeasured
    lines = [
        f"Re-priced {_count(summary.records, 'record')} of {summary.source}: "
        f"{summary.changed} changed, {without_price} without a price now, "
        f"{summary.unmeasured} without measured usage."
    ]
    if summary.approximated:
        lines.append(
            f"{_count(summary.approximated, 'record')} of schema version 1 "
            f"{'was' if summary.approximated == 1 else 'were'} {APPROXIMATED}."
        )
    lines.append(
        f"Original cost {format_usd(summary.cost_before_usd)}, re-priced "
        f"{format_usd(summary.cost_after_usd)}, over the records where both are known. "
        "The original costs are kept in cost_usd."
    )
    return "\n".join(lines) + "\n"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"
