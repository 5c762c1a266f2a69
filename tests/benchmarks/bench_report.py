"""Reading and reporting a 1,000,000-record JSONL file: wall time and peak RSS per phase.

Each phase runs in a fresh process, so its peak resident set size (`ru_maxrss`) is its own.
The baseline is `json.loads` over the same lines in the same run: the least any reader that
parses every line has to do. Run with `python -m tests.benchmarks bench_report`; set
`TOKENMETER_BENCH_RECORDS` for another file size.
"""

from __future__ import annotations

import concurrent.futures
import io
import json
import multiprocessing
import os
import resource
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from tokenmeter.records import ModelUsage, UsageRecord, record_to_json

RECORDS = int(os.environ.get("TOKENMETER_BENCH_RECORDS", "1000000"))
START = datetime(2026, 1, 1, tzinfo=UTC)
STEP = timedelta(seconds=3)
"""Time between records: a million records span about 35 days."""

_AGENTS = ("planner", "coder", "reviewer", "triage")
_MODELS = (
    ("gpt-4o", "openai", Decimal("0.0038")),
    ("claude-sonnet-4-5", "anthropic", Decimal("0.0051")),
    ("private-model", "acme", None),
)


def _template(index: int) -> str:
    """One record as JSON with `{id}`, `{run}` and `{ts}` placeholders."""
    model, provider, cost = _MODELS[index % len(_MODELS)]
    part = ModelUsage(
        model=model,
        provider=provider,
        rounds=1,
        input_tokens=1200,
        cache_read_tokens=256,
        cache_write_tokens=0,
        output_tokens=80,
        reasoning_tokens=0,
        cost_usd=cost,
    )
    record = UsageRecord(
        id=uuid.UUID(int=1),
        timestamp=START,
        run_id=uuid.UUID(int=2),
        agent=_AGENTS[index % len(_AGENTS)],
        name="step",
        model=model,
        provider=provider,
        rounds=1,
        input_tokens=1200,
        cache_read_tokens=256,
        cache_write_tokens=0,
        output_tokens=80,
        reasoning_tokens=0,
        cost_usd=cost,
        price_status="priced" if cost is not None else "unpriced",
        by_model=[part],
        tags=["bench", ("nightly", "eval")[index % 2]],
    )
    text = record_to_json(record).replace("{", "{{").replace("}", "}}")
    text = text.replace(str(uuid.UUID(int=1)), "{id}").replace(str(uuid.UUID(int=2)), "{run}")
    return text.replace(START.isoformat(), "{ts}")


def write_file(path: Path, count: int) -> None:
    """Write `count` valid records: four agents, three models, one of them unpriced."""
    templates = [_template(index) for index in range(12)]
    with path.open("w", encoding="utf-8") as file:
        for index in range(count):
            line = templates[index % len(templates)].format(
                id=uuid.UUID(int=index + 1),
                run=uuid.UUID(int=index // 4 + 1),
                ts=(START + index * STEP).isoformat(),
            )
            file.write(line + "\n")


def _phase_json_loads(path: str) -> int:
    count = 0
    with open(path, "rb") as file:
        for line in file:
            json.loads(line)
            count += 1
    return count


def _phase_json_loads_decimal(path: str) -> int:
    count = 0
    with open(path, "rb") as file:
        for line in file:
            json.loads(line, parse_float=Decimal)
            count += 1
    return count


def _phase_iter_jsonl(path: str) -> int:
    from tokenmeter.reading import iter_jsonl

    return sum(1 for _ in iter_jsonl(path))


def _phase_iter_jsonl_no_dedupe(path: str) -> int:
    from tokenmeter.reading import iter_jsonl

    return sum(1 for _ in iter_jsonl(path, dedupe=False))


def _phase_report(path: str) -> int:
    from tokenmeter.report import format_table, iter_source, summarize

    summary = summarize(iter_source(path), ("agent", "model"))
    format_table(summary)
    return summary.records


def _phase_report_since(path: str) -> int:
    from tokenmeter.report import format_table, iter_source, summarize

    since = START + RECORDS * STEP - timedelta(days=7)
    summary = summarize(iter_source(path, since=since), ("day",))
    format_table(summary)
    return summary.records


def _phase_report_chart(path: str) -> int:
    from tokenmeter.charts import CostOverTime
    from tokenmeter.report import Summary, iter_source, write_report

    summary = Summary(("agent",))
    chart = CostOverTime("model")
    for record in iter_source(path):
        summary.add(record)
        chart.add(record)
    write_report(summary, "json", io.StringIO())
    chart.write(Path(path).with_suffix(".html"))
    return summary.records


def _imports_only(path: str) -> int:
    import tokenmeter.charts
    import tokenmeter.reading
    import tokenmeter.report  # noqa: F401

    return 0


PHASES: dict[str, Callable[[str], int]] = {
    "imports only (the RSS floor)": _imports_only,
    "baseline: json.loads per line": _phase_json_loads,
    "json.loads, parse_float=Decimal": _phase_json_loads_decimal,
    "iter_jsonl (dedupe by id)": _phase_iter_jsonl,
    "iter_jsonl (dedupe=False)": _phase_iter_jsonl_no_dedupe,
    "report --by agent,model": _phase_report,
    "report --since 7d --by day": _phase_report_since,
    "report --format json --chart .html": _phase_report_chart,
}


def _measure(name: str, path: str) -> tuple[float, int, int]:
    """Run one phase in this (fresh) process; return seconds, records and peak RSS in KiB."""
    start = time.perf_counter()
    count = PHASES[name](path)
    elapsed = time.perf_counter() - start
    return elapsed, count, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "usage.jsonl"
        started = time.perf_counter()
        write_file(path, RECORDS)
        size_mb = path.stat().st_size / 1e6
        print(
            f"{RECORDS:,} records, {size_mb:,.0f} MB, written in "
            f"{time.perf_counter() - started:.1f} s"
        )
        # ru_maxrss is in KiB on Linux and in bytes on macOS.
        unit = 1024 if sys.platform == "darwin" else 1
        baseline_s = None
        for name in PHASES:
            with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
                elapsed, count, peak = pool.submit(_measure, name, str(path)).result()
            if name.startswith("baseline"):
                baseline_s = elapsed
            ratio = f"{elapsed / baseline_s:5.1f}x baseline" if baseline_s else ""
            print(
                f"{name:38s} {elapsed:7.2f} s  {peak // unit / 1024:7.1f} MiB peak RSS  "
                f"{count:>9,} records  {ratio}"
            )


if __name__ == "__main__":
    main()
