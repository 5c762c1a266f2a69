"""`tokenmeter reprice`: new costs beside the original ones, on files made by `tokenmeter demo`."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import tokenmeter
from tokenmeter import Usage
from tokenmeter.cli import main
from tokenmeter.pricing import _estimate as pricing_state
from tokenmeter.pricing import estimate_cost, set_price_overrides
from tokenmeter.records import SCHEMA_VERSION, UsageRecord, json_line, record_to_json
from tokenmeter.reprice import reprice
from tokenmeter.sinks.sqlite import COLUMNS

REPRICED = ("repriced_cost_usd", "repriced_at", "repriced_source")
# A negotiated price for Claude Sonnet 4.5, in USD per million tokens.
SONNET_OVERRIDE = """\
[models."claude-sonnet-4-5-20250929"]
input = 1.0
cached_input = 0.1
cache_write_5m = 1.25
output = 5.0
"""
NOW = datetime(2026, 12, 4, 9, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _fresh_pricing() -> Iterator[None]:
    pricing_state._reset()
    yield
    pricing_state._reset()


def run_command(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "TOKENMETER_SPOOL_DIR": str(cwd / "spool"), **env}
    environment.pop("TOKENMETER_PRICES", None)
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-m", "tokenmeter", *args],
        env=environment,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A JSONL file and a SQLite database written by `tokenmeter demo --sink ...`."""
    directory = tmp_path_factory.mktemp("demo")
    files = {"jsonl": directory / "demo.jsonl", "sqlite": directory / "demo.db"}
    for url in (f"jsonl:{files['jsonl']}", f"sqlite:///{files['sqlite']}"):
        result = run_command(["demo", "--sink", url], directory)
        assert result.returncode == 0, result.stderr
    return files


@pytest.fixture
def demo_jsonl(demo_files: dict[str, Path], tmp_path: Path) -> Path:
    path = tmp_path / "usage.jsonl"
    shutil.copyfile(demo_files["jsonl"], path)
    return path


@pytest.fixture
def demo_sqlite(demo_files: dict[str, Path], tmp_path: Path) -> Path:
    path = tmp_path / "usage.db"
    shutil.copyfile(demo_files["sqlite"], path)
    return path


@pytest.fixture
def prices_file(tmp_path: Path) -> Path:
    path = tmp_path / "prices.toml"
    path.write_text(SONNET_OVERRIDE)
    return path


def raw_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line, parse_float=Decimal) for line in path.read_bytes().splitlines()]


def without_repricing(data: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if key not in REPRICED}


def sonnet_override_cost(record: UsageRecord) -> Decimal:
    """The cost of the record's rounds at `SONNET_OVERRIDE`, computed by hand."""
    assert record.rounds_usage is not None
    total = Decimal(0)
    for round_ in record.rounds_usage:
        uncached = round_.input_tokens - round_.cache_read_tokens - round_.cache_write_tokens
        total += (
            uncached * Decimal("1.0")
            + round_.cache_read_tokens * Decimal("0.1")
            + round_.cache_write_tokens * Decimal("1.25")
            + round_.output_tokens * Decimal("5.0")
        ) / 1_000_000
    return total


def check_repriced(records: list[UsageRecord]) -> None:
    sonnet = [r for r in records if (r.model or "").startswith("claude-sonnet-4-5")]
    assert sonnet
    for record in records:
        assert record.repriced_at is not None, record.agent
        if record in sonnet:
            assert record.repriced_cost_usd == sonnet_override_cost(record)
            assert record.repriced_cost_usd != record.cost_usd
            assert record.repriced_source is not None
            assert record.repriced_source.startswith("overrides ")
        elif record.price_status == "unmeasured":
            assert record.repriced_cost_usd is None
            assert record.repriced_source is None
        else:
            assert record.repriced_cost_usd == record.cost_usd, record.model
            assert record.repriced_source == record.price_source


def test_demo_jsonl_repriced_by_command(demo_jsonl: Path, prices_file: Path) -> None:
    before = raw_lines(demo_jsonl)
    mode = stat.S_IMODE(demo_jsonl.stat().st_mode)

    result = run_command(
        ["reprice", f"jsonl:{demo_jsonl}"], demo_jsonl.parent, TOKENMETER_PRICES=str(prices_file)
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Re-priced 10 records of jsonl:{demo_jsonl}: 2 changed")
    after = raw_lines(demo_jsonl)
    assert [without_repricing(data) for data in after] == [
        without_repricing(data) for data in before
    ]
    check_repriced(tokenmeter.read_jsonl(demo_jsonl))
    assert stat.S_IMODE(demo_jsonl.stat().st_mode) == mode
    assert sorted(path.name for path in demo_jsonl.parent.iterdir()) == [
        "prices.toml",
        "usage.jsonl",
    ]


def test_demo_jsonl_hand_checked_round(demo_jsonl: Path, prices_file: Path) -> None:
    set_price_overrides(prices_file)

    reprice(demo_jsonl, now=NOW)

    first = tokenmeter.read_jsonl(demo_jsonl)[0]
    # The support bot's first answer: 1,114 prompt tokens of which 1,111 read from the cache,
    # 406 output tokens: 3 * 1.0 + 1,111 * 0.1 + 406 * 5.0 = 2,144.1 millionths.
    assert first.model == "claude-sonnet-4-5-20250929"
    assert first.repriced_cost_usd == Decimal("0.0021441")
    assert first.repriced_at == NOW
    assert first.cost_usd == Decimal("0.0064323")


def test_demo_sqlite_repriced_by_command(demo_sqlite: Path, prices_file: Path) -> None:
    columns = [name for name, _ in COLUMNS if name not in REPRICED]
    select = f"SELECT {', '.join(columns)} FROM llm_usage ORDER BY id"
    with sqlite3.connect(demo_sqlite) as connection:
        before = connection.execute(select).fetchall()

    result = run_command(
        ["reprice", f"sqlite:///{demo_sqlite}"],
        demo_sqlite.parent,
        TOKENMETER_PRICES=str(prices_file),
    )

    assert result.returncode == 0, result.stderr
    assert "Re-priced 10 records of sqlite:///" in result.stdout
    with sqlite3.connect(demo_sqlite) as connection:
        after = connection.execute(select).fetchall()
    assert after == before
    check_repriced(tokenmeter.read_sqlite(demo_sqlite))


def test_sqlite_file_path_accepted(demo_sqlite: Path, prices_file: Path) -> None:
    set_price_overrides(prices_file)

    summary = reprice(demo_sqlite, now=NOW)

    assert summary.records == 10
    assert summary.changed == 2
    assert summary.unmeasured == 2
    check_repriced(tokenmeter.read_sqlite(demo_sqlite))


def test_reprice_twice_keeps_original(demo_jsonl: Path, prices_file: Path) -> None:
    original = [record.cost_usd for record in tokenmeter.read_jsonl(demo_jsonl)]
    set_price_overrides(prices_file)
    reprice(demo_jsonl, now=NOW)
    set_price_overrides(None)

    reprice(demo_jsonl, now=NOW + timedelta(hours=1))

    records = tokenmeter.read_jsonl(demo_jsonl)
    assert [record.cost_usd for record in records] == original
    assert [record.repriced_cost_usd for record in records] == original
    assert {record.repriced_at for record in records} == {NOW + timedelta(hours=1)}


def make_record(index: int, **changes: Any) -> UsageRecord:
    rounds_usage = [
        {
            "model": "gpt-4o",
            "provider": "openai",
            "input_tokens": 1000,
            "output_tokens": 100,
        }
    ]
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "timestamp": datetime(2026, 11, 1, 12, tzinfo=UTC) + timedelta(days=index),
        "run_id": uuid.uuid4(),
        "agent": "bot",
        "model": "gpt-4o",
        "provider": "openai",
        "rounds": 1,
        "input_tokens": 1000,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "output_tokens": 100,
        "reasoning_tokens": 0,
        "cost_usd": Decimal("0.0035"),
        "price_status": "priced",
        "price_source": "genai-prices 0.2.3",
        "rounds_usage": rounds_usage,
        "by_model": [
            {
                "model": "gpt-4o",
                "provider": "openai",
                "rounds": 1,
                "input_tokens": 1000,
                "cache_read_tokens": 0,
                "cache_write_tokens": 0,
                "output_tokens": 100,
                "reasoning_tokens": 0,
                "cost_usd": Decimal("0.0035"),
            }
        ],
    }
    values.update(changes)
    return UsageRecord.model_validate(values)


def write_lines(path: Path, lines: list[str]) -> None:
    path.write_bytes("".join(lines).encode())


def test_time_range_limits_records(tmp_path: Path) -> None:
    path = tmp_path / "usage.jsonl"
    records = [make_record(index) for index in range(3)]
    write_lines(path, [record_to_json(record) + "\n" for record in records])

    summary = reprice(path, since=records[1].timestamp, until=records[2].timestamp, now=NOW)

    stored = tokenmeter.read_jsonl(path)
    assert summary.records == 1
    assert [record.repriced_at for record in stored] == [None, NOW, None]
    # gpt-4o at $2.50/$10 (OpenAI pricing page, as of 2024-10-01): 1,000 * 2.5 + 100 * 10.
    assert stored[1].repriced_cost_usd == Decimal("0.0035")


def test_other_lines_kept_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "usage.jsonl"
    newer = json.loads(record_to_json(make_record(1)))
    newer["schema_version"] = SCHEMA_VERSION + 1
    newer["future_field"] = "kept"
    untouched = [
        "not json at all\n",
        "\n",
        '["a", "list"]\n',
        json.dumps(newer) + "\n",
        '{"id": "not a record"}\n',
    ]
    partial = record_to_json(make_record(2))[:40]
    write_lines(path, [*untouched, record_to_json(make_record(0)) + "\n", partial])

    summary = reprice(path, now=NOW)

    lines = path.read_bytes().decode().splitlines(keepends=True)
    assert summary.records == 1
    assert lines[: len(untouched)] == untouched
    assert json.loads(lines[len(untouched)])["repriced_at"] == NOW.isoformat()
    assert lines[-1] == partial


def test_unknown_fields_kept(tmp_path: Path) -> None:
    path = tmp_path / "usage.jsonl"
    data = json.loads(record_to_json(make_record(0)))
    data["written_by"] = "another tool"
    write_lines(path, [json.dumps(data) + "\n"])

    reprice(path, now=NOW)

    [line] = raw_lines(path)
    assert line["written_by"] == "another tool"
    assert list(line)[: len(data)] == list(data)


def test_version_1_record_approximated(tmp_path: Path) -> None:
    path = tmp_path / "usage.jsonl"
    data = json.loads(record_to_json(make_record(0)), parse_float=Decimal)
    for name in (
        "rounds_usage",
        "priced_at",
        "reported_cost_usd",
        "input_cost_usd",
        *REPRICED,
    ):
        data.pop(name)
    data["schema_version"] = 1
    data["by_model"][0]["rounds"] = 2
    write_lines(path, [json_line(data) + "\n"])

    summary = reprice(path, now=NOW)

    [record] = tokenmeter.read_jsonl(path)
    assert summary.approximated == 1
    assert record.repriced_cost_usd == Decimal("0.0035")
    assert record.repriced_source is not None
    assert record.repriced_source.endswith(", approximated from per-model totals")
    assert record.schema_version == 1


def test_unpriced_record_gets_price_after_override(tmp_path: Path) -> None:
    path = tmp_path / "usage.jsonl"
    record = make_record(
        0,
        model="in-house-llm",
        cost_usd=None,
        price_status="unpriced",
        price_source=None,
        rounds_usage=[{"model": "in-house-llm", "provider": None, "input_tokens": 2000}],
    )
    write_lines(path, [record_to_json(record) + "\n"])
    reprice(path, now=NOW)
    assert tokenmeter.read_jsonl(path)[0].repriced_cost_usd is None

    set_price_overrides({"models": {"in-house-llm": {"input": 0.5, "output": 1}}})
    summary = reprice(path, now=NOW)

    [stored] = tokenmeter.read_jsonl(path)
    assert stored.cost_usd is None
    assert stored.repriced_cost_usd == Decimal("0.001")
    assert summary.changed == 1


def test_batch_round_repriced_as_batch(tmp_path: Path) -> None:
    path = tmp_path / "usage.jsonl"
    batch_round = {
        "model": "claude-3-5-haiku-latest",
        "provider": "anthropic",
        "input_tokens": 1000,
        "output_tokens": 500,
        "price_context": {"processing": "batch"},
    }
    write_lines(path, [record_to_json(make_record(0, rounds_usage=[batch_round])) + "\n"])

    reprice(path, now=NOW)

    [stored] = tokenmeter.read_jsonl(path)
    # Claude Haiku 3.5 at $0.80/$4 with Anthropic's 50% batch discount.
    assert stored.repriced_cost_usd == Decimal("0.0014")


def test_reprice_at_now_uses_current_period(tmp_path: Path) -> None:
    path = tmp_path / "usage.jsonl"
    flex_round = {
        "model": "gpt-5",
        "provider": "openai",
        "input_tokens": 2000,
        "output_tokens": 3000,
        "price_context": {"service_tier": "flex"},
    }
    early = datetime(2026, 5, 1, 12, tzinfo=UTC)
    record = make_record(0, timestamp=early, priced_at=early, rounds_usage=[flex_round])
    write_lines(path, [record_to_json(record) + "\n"])
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)

    reprice(path, at="now", now=now)

    [stored] = tokenmeter.read_jsonl(path)
    expected = estimate_cost(Usage(2000, 3000), "gpt-5", "openai", at=now, service_tier="flex")
    assert expected is not None
    # gpt-5 flex at $0.625/$5 (OpenAI pricing page, as of 2025-08-07), listed by the table
    # from 2026-10-12: 2,000 * 0.625 + 3,000 * 5 millionths.
    assert stored.repriced_cost_usd == expected.total_usd == Decimal("0.01625")


def test_failed_rewrite_leaves_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "usage.jsonl"
    write_lines(path, [record_to_json(make_record(index)) + "\n" for index in range(3)])
    original = path.read_bytes()
    calls = 0

    def fail_on_second(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)

    import tokenmeter.reprice as module

    real = module.reprice_record
    monkeypatch.setattr(module, "reprice_record", fail_on_second)

    with pytest.raises(OSError, match="No space left"):
        reprice(path, now=NOW)

    assert path.read_bytes() == original
    assert [entry.name for entry in tmp_path.iterdir()] == ["usage.jsonl"]


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no file at"):
        reprice(tmp_path / "missing.db")
    with pytest.raises(FileNotFoundError, match="no JSONL file of usage records"):
        reprice(tmp_path / "missing.jsonl")
    with pytest.raises(FileNotFoundError, match="no JSONL file of usage records"):
        reprice(f"jsonl:{tmp_path / 'missing.jsonl'}")


def test_unreadable_sink_raises() -> None:
    with pytest.raises(ValueError, match="stores no records to read back"):
        reprice("stdout:json")


def test_command_reports_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["reprice", str(tmp_path / "missing.db")])

    assert status == 2
    assert "tokenmeter reprice: no file at" in capsys.readouterr().err


def test_command_on_empty_range(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "usage.jsonl"
    write_lines(path, [record_to_json(make_record(0)) + "\n"])

    status = main(["reprice", str(path), "--since", "2030-01-01"])

    assert status == 0
    assert capsys.readouterr().out == f"No records to re-price in jsonl:{path}.\n"


def test_prices_command_unknown_model_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["prices", "in-house-llm-7"])

    captured = capsys.readouterr()
    assert status == 1
    assert captured.out == ""
    assert "No price for model 'in-house-llm-7'" in captured.err


def test_prices_command_known_model_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["prices", "claude-sonnet-4-5", "--provider", "anthropic"])

    assert status == 0
    assert "Model 'claude-sonnet-4-5' of provider 'anthropic'" in capsys.readouterr().out
