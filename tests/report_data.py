"""Usage records for the report and chart tests: the demo's output in each sink, and made-up turns.

Test modules import the fixtures they use from here, as they do `postgres_dsn`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.postgres_server import postgres_dsn, with_query
from tokenmeter.records import ModelUsage, UsageRecord, record_to_json

__all__ = [
    "DemoOutput",
    "demo_output",
    "demo_postgres_url",
    "make_record",
    "postgres_dsn",
    "run_command",
    "write_jsonl",
]

COMMAND_TIMEOUT_S = 50


def _environment(spool_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["TOKENMETER_SINK"] = "none"
    env["TOKENMETER_SPOOL_DIR"] = str(spool_dir)
    env["MPLBACKEND"] = "Agg"
    return env


def run_command(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run `python -m tokenmeter ARGS` in a separate process, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "tokenmeter", *args],
        env=_environment(cwd / "spool"),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )


def _run_demo(sink: str, cwd: Path) -> None:
    result = run_command("demo", "--sink", sink, cwd=cwd)
    assert result.returncode == 0, result.stderr


@dataclass(frozen=True)
class DemoOutput:
    """One run of `tokenmeter demo`, written to a JSONL file and a SQLite database."""

    jsonl: Path
    sqlite_url: str


@pytest.fixture(scope="session")
def demo_output(tmp_path_factory: pytest.TempPathFactory) -> DemoOutput:
    directory = tmp_path_factory.mktemp("demo")
    jsonl = directory / "usage.jsonl"
    sqlite_url = f"sqlite:///{directory / 'usage.db'}"
    _run_demo(f"jsonl:{jsonl},{sqlite_url}", directory)
    return DemoOutput(jsonl=jsonl, sqlite_url=sqlite_url)


@pytest.fixture(scope="session")
def demo_postgres_url(postgres_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    url = with_query(postgres_dsn, table=f"report_{uuid.uuid4().hex}")
    _run_demo(url, tmp_path_factory.mktemp("demo_postgres"))
    return url


def make_record(
    timestamp: datetime,
    *,
    agent: str = "planner",
    parts: Sequence[tuple[str, int, int, Decimal | None]] = (("gpt-4o", 1000, 100, None),),
    tags: Sequence[str] = (),
    status: str = "ok",
    **overrides: Any,
) -> UsageRecord:
    """Build one turn from `(model, input_tokens, output_tokens, cost_usd)` parts, one round each.

    The record's `cost_usd` and `price_status` follow from the parts' costs, as the delivery
    thread sets them.
    """
    by_model = [
        ModelUsage(
            model=model,
            provider="openai" if model.startswith("gpt") else "other",
            rounds=1,
            input_tokens=input_tokens,
            cache_read_tokens=0,
            cache_write_tokens=0,
            output_tokens=output_tokens,
            reasoning_tokens=0,
            cost_usd=cost,
        )
        for model, input_tokens, output_tokens, cost in parts
    ]
    costs = [part.cost_usd for part in by_model]
    if all(cost is not None for cost in costs):
        price_status, total = "priced", sum((cost for cost in costs if cost), Decimal(0))
    elif any(cost is not None for cost in costs):
        price_status, total = "partial", None
    else:
        price_status, total = "unpriced", None
    fields: dict[str, Any] = {
        "id": uuid.uuid4(),
        "timestamp": timestamp.astimezone(UTC),
        "run_id": uuid.uuid4(),
        "agent": agent,
        "model": by_model[0].model if by_model else None,
        "provider": by_model[0].provider if by_model else None,
        "status": status,
        "rounds": len(by_model),
        "input_tokens": sum(part.input_tokens for part in by_model) if by_model else None,
        "cache_read_tokens": 0 if by_model else None,
        "cache_write_tokens": 0 if by_model else None,
        "output_tokens": sum(part.output_tokens for part in by_model) if by_model else None,
        "reasoning_tokens": 0 if by_model else None,
        "cost_usd": total,
        "price_status": price_status if by_model else "unmeasured",
        "by_model": by_model,
        "tags": list(tags),
    }
    fields.update(overrides)
    return UsageRecord(**fields)


def write_jsonl(
    path: Path, records: Sequence[UsageRecord], extra_lines: Sequence[str] = ()
) -> Path:
    """Write records as the JSONL sink does, then `extra_lines` as they are."""
    lines = [record_to_json(record) for record in records] + list(extra_lines)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path
