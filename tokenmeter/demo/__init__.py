"""`tokenmeter demo`: metered agents on Claude, GPT and Grok, served by a local replay server.

The agents call the official `anthropic` and `openai` clients. Their requests go to an HTTP
server on 127.0.0.1 that replays real recorded response bodies (prompt caching, reasoning
tokens and tool-calling rounds among them), so the demo needs no API key and sends nothing
past the loopback interface. The records go to the configured sink, and a table of tokens and
cost per agent and model is printed at the end.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from typing import TextIO

import anyio

from tokenmeter import configure, flush, stats
from tokenmeter.config import settings_from_env, split_sink_urls
from tokenmeter.demo.server import ReplayServer
from tokenmeter.records import UsageRecord
from tokenmeter.sinks.urls import mask_url

__all__ = ["RecordCollector", "add_arguments", "format_table", "run_demo"]

logger = logging.getLogger(__name__)

FLUSH_TIMEOUT_S = 30.0
"""Maximum time, in seconds, that the demo waits for its records to reach every sink."""

EXIT_OK = 0
EXIT_FAILED = 1
"""An agent failed, or some records were not delivered to every sink in time."""
EXIT_USAGE = 2
"""The demo could not start: a missing extra or an invalid sink."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `demo` command's options to `parser`."""
    parser.add_argument(
        "--sink",
        metavar="URL",
        default=None,
        help="where records go: one sink URL or several, comma-separated "
        "(jsonl:PATH, sqlite:///PATH, postgresql://..., stdout, none). "
        "Default: $TOKENMETER_SINK, else jsonl:./tokenmeter.jsonl",
    )


class RecordCollector:
    """A sink that keeps the records it is given in memory, for the demo's summary table."""

    def __init__(self) -> None:
        self._records: list[UsageRecord] = []
        self._lock = threading.Lock()

    async def write(self, records: Sequence[UsageRecord]) -> None:
        # The delivery thread may retry a batch, so only the first copy of each id is kept.
        with self._lock:
            seen = {record.id for record in self._records}
            self._records.extend(record for record in records if record.id not in seen)

    async def aclose(self) -> None:
        return None

    @property
    def records(self) -> list[UsageRecord]:
        """Records received so far, in arrival order."""
        with self._lock:
            return list(self._records)

    def __repr__(self) -> str:
        return "<tokenmeter demo summary>"


@dataclass
class _Row:
    calls: int = 0
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: Decimal | None = field(default_factory=Decimal)
    units: dict[str, int] = field(default_factory=dict)
    """Billable units counted beside the tokens, such as `web_searches`."""

    def add(self, other: _Row) -> None:
        self.calls += other.calls
        self.input_tokens += other.input_tokens
        self.cache_read_tokens += other.cache_read_tokens
        self.cache_write_tokens += other.cache_write_tokens
        self.output_tokens += other.output_tokens
        self.reasoning_tokens += other.reasoning_tokens
        for unit, count in other.units.items():
            self.units[unit] = self.units.get(unit, 0) + count
        if self.cost_usd is None or other.cost_usd is None:
            self.cost_usd = None
        else:
            self.cost_usd += other.cost_usd


def summarize(records: Sequence[UsageRecord]) -> dict[tuple[str, str], _Row]:
    """Sum calls, tokens and cost per (agent, model), sorted by agent, then model.

    Each record's `by_model` breakdown is used, so a turn that called two models counts on
    two rows. Records without rounds (a `meter()` that only grouped its steps) add nothing.
    """
    rows: dict[tuple[str, str], _Row] = {}
    for record in records:
        agent = record.agent or "(no agent)"
        for part in record.by_model:
            row = rows.setdefault((agent, part.model or "(unknown model)"), _Row())
            row.add(
                _Row(
                    calls=part.rounds,
                    input_tokens=part.input_tokens,
                    cache_read_tokens=part.cache_read_tokens,
                    cache_write_tokens=part.cache_write_tokens,
                    output_tokens=part.output_tokens,
                    reasoning_tokens=part.reasoning_tokens,
                    cost_usd=part.cost_usd,
                    units=_billable_units(part.details),
                )
            )
    return dict(sorted(rows.items()))


BILLED_UNITS = frozenset(
    {
        "web_searches",
        "web_search_requests",
        "web_fetch_requests",
        "code_executions",
        "code_execution_requests",
        "num_sources_used",
    }
)
"""`Usage.details` keys that count tool calls or sources priced per use, beside the tokens.

Other keys split a token count the table already shows (`cache_write_1h_tokens`) or carry
the provider's own cost figure (`cost_in_usd_ticks`), so the table's notes leave them out.
"""


def _billable_units(details: Mapping[str, int]) -> dict[str, int]:
    return {key: count for key, count in details.items() if key in BILLED_UNITS and count}


def format_usd(cost: Decimal | None) -> str:
    """Format an exact cost without rounding it, or `unpriced` when it is unknown."""
    if cost is None:
        return "unpriced"
    text = format(cost, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


HEADERS = (
    "agent",
    "model",
    "calls",
    "input",
    "cache read",
    "cache write",
    "output",
    "reasoning",
    "cost (USD)",
)


def format_table(records: Sequence[UsageRecord]) -> str:
    """Render tokens and cost per agent and model as an aligned text table with a total row.

    Token counts follow tokenmeter's convention: `input` includes cache reads and writes,
    `output` includes reasoning.
    """
    rows = summarize(records)
    total = _Row()
    lines: list[tuple[str, ...]] = [HEADERS]
    for (agent, model), row in rows.items():
        total.add(row)
        lines.append((agent, model, *_cells(row)))
    lines.append(("total", "", *_cells(total)))

    widths = [max(len(line[column]) for line in lines) for column in range(len(HEADERS))]
    rendered = []
    for line in lines:
        cells = [
            cell.ljust(width) if column < 2 else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        rendered.append("  ".join(cells).rstrip())
    rule = "-" * len(rendered[0])
    notes = [
        f"{agent} on {model}: the cost includes "
        + ", ".join(f"{unit}={count}" for unit, count in sorted(row.units.items()))
        + ", billed beside the tokens"
        for (agent, model), row in rows.items()
        if row.units
    ]
    return "\n".join([rendered[0], rule, *rendered[1:-1], rule, rendered[-1], *notes])


def _cells(row: _Row) -> tuple[str, ...]:
    return (
        str(row.calls),
        f"{row.input_tokens:,}",
        f"{row.cache_read_tokens:,}",
        f"{row.cache_write_tokens:,}",
        f"{row.output_tokens:,}",
        f"{row.reasoning_tokens:,}",
        format_usd(row.cost_usd),
    )


def run_demo(
    sink: str | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run the demo agents against the replay server, meter them and print the cost table.

    It reconfigures tokenmeter for the whole process: the sink, plus an in-memory sink for the
    table. It runs the async agent with `anyio.run()`, so call it from a command line or a
    script, not from code that already runs an event loop.

    Args:
        sink: sink URL, or several comma-separated; `TOKENMETER_SINK` or
            `jsonl:./tokenmeter.jsonl` when None.
        out: where the table goes; standard output when None.
        err: where errors go; standard error when None.

    Returns:
        The exit code: 0 on success, 1 if an agent failed or records did not reach every
        sink, 2 if the demo could not start.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err

    try:
        from tokenmeter.demo import agent
    except ImportError as error:
        print(
            f"tokenmeter demo needs the openai and anthropic clients ({error}); "
            "install them with: pip install 'tokenmeter[demo]'",
            file=err,
        )
        return EXIT_USAGE

    sink_urls = split_sink_urls(sink) if sink else settings_from_env().sink
    collector = RecordCollector()
    try:
        configure(sink=[*sink_urls, collector])
    except (ValueError, TypeError) as error:
        print(f"tokenmeter demo: {error}", file=err)
        return EXIT_USAGE

    status = EXIT_OK
    with ReplayServer(agent.SCRIPTS) as server:
        runners: list[tuple[str, Callable[[], object]]] = [
            (agent.SUPPORT_BOT, partial(agent.run_support_bot, server.base_url)),
            (agent.TRAVEL_BOT, partial(agent.run_travel_bot, server.base_url)),
            (agent.RESEARCH_BOT, partial(anyio.run, agent.run_research_bot, server.base_url)),
        ]
        for name, run in runners:
            try:
                run()
            except Exception as error:
                # Each agent has its own script, so the others still run, and the records
                # of every turn that ran are still flushed and shown below.
                logger.debug("demo agent %s failed", name, exc_info=True)
                print(
                    f"tokenmeter demo: agent {name} failed: {type(error).__name__}: {error}",
                    file=err,
                )
                status = EXIT_FAILED

    if not flush(timeout=FLUSH_TIMEOUT_S):
        print(
            f"tokenmeter demo: records were not delivered within {FLUSH_TIMEOUT_S:g} s; "
            "what is left is delivered in the background or spooled at exit",
            file=err,
        )
        status = EXIT_FAILED
    undelivered = _undelivered_sinks()
    if undelivered:
        print(
            "tokenmeter demo: some records went to the local spool instead of "
            f"{', '.join(undelivered)}; run `tokenmeter replay` to deliver them",
            file=err,
        )
        status = EXIT_FAILED

    print(format_table(collector.records), file=out)
    print(file=out)
    print(_delivery_summary(len(collector.records), sink_urls), file=out)
    out.flush()
    return status


def _delivery_summary(count: int, sink_urls: Sequence[str]) -> str:
    stored = [url for url in sink_urls if url.strip().lower() != "none"]
    if not stored:
        return f"{count} records metered and not stored, because the sink is `none`"
    return f"{count} records written to {', '.join(mask_url(url) for url in stored)}"


def _undelivered_sinks() -> list[str]:
    return [
        label
        for label, sink_stats in stats().sinks.items()
        if sink_stats.spooled or sum(sink_stats.dropped.values())
    ]
