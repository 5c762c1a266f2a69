"""`StdoutSink`: prints one line per record, a readable summary or the record's JSON."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from decimal import Decimal
from typing import Literal, TextIO

import anyio.to_thread

from tokenmeter.records import UsageRecord, record_to_json

__all__ = ["StdoutSink", "format_cost", "format_summary"]

StdoutFormat = Literal["text", "json"]

_FORMATS: tuple[StdoutFormat, ...] = ("text", "json")
_CENT_DIGITS = Decimal("0.00001")


class StdoutSink:
    """Print each record as one line on standard output.

    Args:
        format: `text` prints a readable summary (see `format_summary`). `json` prints the
            `record_to_json` line, which `tokenmeter.read_jsonl` can read back.
        stream: Where to print. `None` means `sys.stdout` as it is at each write, so
            redirecting or capturing stdout later still works.

    Printing runs in a worker thread, because a full pipe whose reader stalls would otherwise
    block the event loop.

    Raises:
        ValueError: if `format` is not `text` or `json`.
    """

    def __init__(self, format: StdoutFormat = "text", *, stream: TextIO | None = None) -> None:
        if format not in _FORMATS:
            raise ValueError(f"invalid format={format!r} for StdoutSink: expected 'text' or 'json'")
        self._format: StdoutFormat = format
        self._stream = stream
        self._closed = False

    @property
    def url(self) -> str:
        """The URL that opens a sink printing the same format to stdout."""
        return "stdout:json" if self._format == "json" else "stdout"

    def __repr__(self) -> str:
        return f"StdoutSink(url={self.url!r})"

    async def write(self, records: Sequence[UsageRecord]) -> None:
        """Print one line per record and flush the stream.

        Raises:
            RuntimeError: if the sink was closed.
        """
        if self._closed:
            raise RuntimeError(f"{self!r} is closed; open a new sink to print more records")
        if not records:
            return

        render = record_to_json if self._format == "json" else format_summary
        text = "".join([render(record) + "\n" for record in records])
        await anyio.to_thread.run_sync(self._print, text)

    def _print(self, text: str) -> None:
        stream = self._stream if self._stream is not None else sys.stdout
        # sys.stdout is None under pythonw and in some embedded interpreters.
        if stream is None:
            return
        stream.write(text)
        stream.flush()

    async def aclose(self) -> None:
        """Mark the sink closed. Idempotent. The stream stays open: the sink does not own it."""
        self._closed = True


def format_summary(record: UsageRecord) -> str:
    """Return a one-line summary: time, agent, model, tokens in and out, cost and status.

    Example: `2026-05-01T12:00:00Z agent=researcher model=gpt-4o in=1200 out=350 $0.01482`.
    Unknown values print as `-`, so a turn that reported no usage prints `in=- out=-`.
    """
    timestamp = record.timestamp.strftime("%Y-%m-%dT%H:%M:%SZ")
    parts = [
        timestamp,
        f"agent={_or_dash(record.agent)}",
        f"model={_or_dash(record.model)}",
        f"in={_or_dash(record.input_tokens)}",
        f"out={_or_dash(record.output_tokens)}",
    ]
    if record.cache_read_tokens:
        parts.append(f"cached={record.cache_read_tokens}")
    if record.reasoning_tokens:
        parts.append(f"reasoning={record.reasoning_tokens}")
    parts.append(_describe_cost(record))
    if record.status != "ok":
        error = f"({record.error_type})" if record.error_type else ""
        parts.append(f"status={record.status}{error}")
    return " ".join(parts)


def _or_dash(value: object) -> str:
    return "-" if value is None else str(value)


def _describe_cost(record: UsageRecord) -> str:
    if record.cost_usd is not None:
        return format_cost(record.cost_usd)
    if record.price_status == "unmeasured":
        return "unmeasured"
    return "unpriced"


def format_cost(cost_usd: Decimal) -> str:
    """Format a cost in dollars with 5 decimals (`$0.01482`), or 2 significant digits below that.

    Rounding is for display only. Sinks store the exact value.
    """
    rounded = cost_usd.quantize(_CENT_DIGITS)
    if rounded != 0 or cost_usd == 0:
        return f"${rounded:f}"
    # Below $0.000005 five decimals would print $0.00000, which reads as free.
    significant = cost_usd.quantize(Decimal(1).scaleb(cost_usd.adjusted() - 1))
    return f"${significant:f}"
