"""`tokenmeter report`: grouping, unpriced turns, periods, formats, sources and bad input."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import tokenmeter
from tests.report_data import (
    DemoOutput,
    demo_output,
    demo_postgres_url,
    make_record,
    postgres_dsn,
    run_command,
    write_jsonl,
)
from tokenmeter import Usage, meter
from tokenmeter.cli import main
from tokenmeter.records import UsageRecord, record_to_json
from tokenmeter.report import (
    Summary,
    format_table,
    format_tokens,
    format_usd,
    parse_group_keys,
    parse_time,
    summarize,
)

__all__ = ["demo_output", "demo_postgres_url", "postgres_dsn"]

NOW = datetime.now(UTC)


def report(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run `tokenmeter report ARGS` in this process; return the exit code, stdout, stderr."""
    code = main(["report", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def report_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    code, out, err = report(capsys, *args, "--format", "json")
    assert code == 0, err
    document: dict[str, Any] = json.loads(out)
    return document


def demo_totals(records: list[UsageRecord]) -> tuple[int, Decimal]:
    turns = [record for record in records if record.rounds]
    costs = [record.cost_usd for record in turns if record.cost_usd is not None]
    return len(turns), sum(costs, Decimal(0))


def assert_fits_80_columns(text: str) -> None:
    for line in text.splitlines():
        assert len(line) <= 80, line


# --- the demo's output in every sink --------------------------------------------------------------


@pytest.mark.parametrize(
    "by", ["agent", "agent,model", "model", "provider", "tag", "day", "status"]
)
def test_table_fits_80_columns(
    capsys: pytest.CaptureFixture[str], demo_output: DemoOutput, by: str
) -> None:
    code, out, err = report(capsys, str(demo_output.jsonl), "--by", by)

    assert code == 0, err
    assert out.count("total") == 1
    assert_fits_80_columns(out)


def test_demo_jsonl_totals_match_records(
    capsys: pytest.CaptureFixture[str], demo_output: DemoOutput
) -> None:
    turns, cost = demo_totals(tokenmeter.read_jsonl(demo_output.jsonl))

    document = report_json(capsys, str(demo_output.jsonl))

    assert document["total"]["turns"] == turns
    assert document["total"]["cost_usd"] == format(cost, "f")
    assert document["total"]["unpriced_turns"] == 0


def test_demo_sqlite_matches_jsonl(
    capsys: pytest.CaptureFixture[str], demo_output: DemoOutput
) -> None:
    from_jsonl = report_json(capsys, f"jsonl:{demo_output.jsonl}", "--by", "agent,model")
    from_sqlite = report_json(capsys, demo_output.sqlite_url, "--by", "agent,model")

    assert from_sqlite["rows"] == from_jsonl["rows"]
    assert from_sqlite["total"] == from_jsonl["total"]


def test_demo_postgres_matches_records(
    capsys: pytest.CaptureFixture[str], demo_postgres_url: str
) -> None:
    turns, cost = demo_totals(tokenmeter.read_postgres(demo_postgres_url))

    document = report_json(capsys, demo_postgres_url, "--by", "agent,model")

    assert document["total"]["turns"] == turns
    assert document["total"]["cost_usd"] == format(cost, "f")
    assert {row["agent"] for row in document["rows"]} == {
        "support-bot",
        "travel-bot",
        "research-bot",
    }


def test_postgres_table_fits_80_columns(
    capsys: pytest.CaptureFixture[str], demo_postgres_url: str
) -> None:
    code, out, err = report(capsys, demo_postgres_url, "--by", "agent,model")

    assert code == 0, err
    assert "research-bot / gpt-5-2025-08-07" in out
    assert_fits_80_columns(out)


def test_postgres_source_line_masks_password(capsys: pytest.CaptureFixture[str]) -> None:
    url = "postgresql://user:hunter2@127.0.0.1:9/db"

    code, _, err = report(capsys, url)

    assert code == 2
    assert "hunter2" not in err
    assert err.startswith("tokenmeter report: ")


def test_sqlite_path_without_scheme_read_as_sqlite(
    capsys: pytest.CaptureFixture[str], demo_output: DemoOutput
) -> None:
    path = demo_output.sqlite_url.removeprefix("sqlite:///")

    from_path = report_json(capsys, path)
    from_url = report_json(capsys, demo_output.sqlite_url)

    assert from_path["total"] == from_url["total"]


def test_default_source_is_env_sink(
    capsys: pytest.CaptureFixture[str], demo_output: DemoOutput, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKENMETER_SINK", f"stdout,{demo_output.sqlite_url}")

    document = report_json(capsys)

    assert document["source"] == demo_output.sqlite_url
    assert document["total"]["turns"] > 0


def test_command_runs_as_separate_process(demo_output: DemoOutput, tmp_path: Path) -> None:
    result = run_command("report", str(demo_output.jsonl), "--by", "agent", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "support-bot" in result.stdout
    assert result.stderr == ""


# --- table layout ---------------------------------------------------------------------------------


def test_table_long_group_name_on_own_line() -> None:
    agent = "an-agent-with-a-very-long-name-for-the-reporting-table"
    records = [make_record(NOW, agent=agent, parts=[("gpt-4o", 10, 1, Decimal("0.01"))])]

    table = format_table(summarize(records, ["agent", "model"]))

    assert f"{agent} / gpt-4o" in table.splitlines()
    assert_fits_80_columns(table)


def test_table_name_longer_than_80_wrapped() -> None:
    agent = "-".join(["segment"] * 20)
    records = [make_record(NOW, agent=agent, parts=[("gpt-4o", 10, 1, Decimal("0.01"))])]

    table = format_table(summarize(records, ["agent"]))

    assert_fits_80_columns(table)
    assert "".join(line.strip() for line in table.splitlines()[2:5]).startswith(agent)


def test_table_large_numbers_fit_80_columns() -> None:
    records = [
        make_record(
            NOW,
            agent=f"agent-{index}",
            parts=[("claude-sonnet-4-5-20250929", 10**12, 10**11, Decimal("123456789.123456"))],
        )
        for index in range(3)
    ]

    table = format_table(summarize(records, ["agent", "model"]))

    assert_fits_80_columns(table)
    assert "$370M" in table
    assert "3T" in table


def test_table_without_matching_records() -> None:
    table = format_table(Summary(["agent"]))

    assert "(no records match)" in table
    assert table.splitlines()[-1].split() == ["total", "0", "0", "0", "-", "-", "-"]


def test_format_usd_keeps_three_significant_digits() -> None:
    assert format_usd(Decimal("0.01788975")) == "$0.0179"
    assert format_usd(Decimal("0.00004935")) == "$0.0000494"
    assert format_usd(Decimal("17.88975")) == "$17.89"
    assert format_usd(Decimal("1234.5")) == "$1,234.50"
    assert format_usd(Decimal(0)) == "$0.00"
    assert format_usd(Decimal("2345678.9")) == "$2.35M"
    assert format_usd(None) == "-"


def test_format_tokens_compacts_millions() -> None:
    assert format_tokens(999_999) == "999,999"
    assert format_tokens(1_234_567) == "1.23M"
    assert format_tokens(12_345_678_901) == "12.3B"
    assert format_tokens(4_567_000_000_000_000) == "4,567T"


# --- unpriced and unmeasured turns ----------------------------------------------------------------


@pytest.fixture
def mixed_jsonl(tmp_path: Path) -> Path:
    """Turns metered for real: one priced, one partly priced, one unpriced, one unmeasured."""
    path = tmp_path / "mixed.jsonl"
    tokenmeter.configure(sink=f"jsonl:{path}", spool_dir=tmp_path / "spool")
    with meter(agent="coder") as turn:
        turn.add(Usage(input_tokens=1000, output_tokens=100), model="gpt-4o", provider="openai")
    with meter(agent="coder") as turn:
        turn.add(Usage(input_tokens=2000, output_tokens=200), model="gpt-4o", provider="openai")
        turn.add(Usage(input_tokens=500, output_tokens=50), model="house-model", provider="acme")
    with meter(agent="planner") as turn:
        turn.add(Usage(input_tokens=300, output_tokens=30), model="house-model", provider="acme")
    with meter(agent="planner") as turn:
        turn.add(None, model="gpt-4o", provider="openai")
    assert tokenmeter.flush(timeout=10)
    return path


@pytest.fixture
def mixed_records(mixed_jsonl: Path) -> list[UsageRecord]:
    records = tokenmeter.read_jsonl(mixed_jsonl)
    assert [record.price_status for record in records] == [
        "priced",
        "partial",
        "unpriced",
        "unmeasured",
    ]
    return records


def test_unpriced_model_row_has_no_cost(
    capsys: pytest.CaptureFixture[str], mixed_jsonl: Path, mixed_records: list[UsageRecord]
) -> None:
    document = report_json(capsys, str(mixed_jsonl), "--by", "model")
    rows = {row["model"]: row for row in document["rows"]}

    assert rows["house-model"]["cost_usd"] is None
    assert rows["house-model"]["cost_per_turn_usd"] is None
    assert rows["house-model"]["unpriced_turns"] == 2
    assert rows["house-model"]["input_tokens"] == 800
    assert document["unpriced_models"] == ["house-model"]


def test_unpriced_turns_add_no_cost_to_total(
    capsys: pytest.CaptureFixture[str], mixed_jsonl: Path, mixed_records: list[UsageRecord]
) -> None:
    gpt_costs = [
        part.cost_usd
        for record in mixed_records
        for part in record.by_model
        if part.model == "gpt-4o" and part.cost_usd is not None
    ]

    total = report_json(capsys, str(mixed_jsonl))["total"]

    assert total["cost_usd"] == format(sum(gpt_costs, Decimal(0)), "f")
    assert total["turns"] == 4
    assert total["priced_turns"] == 1
    assert total["unpriced_turns"] == 2
    assert total["unmeasured_turns"] == 1


def test_cost_per_turn_averages_fully_priced_turns(
    capsys: pytest.CaptureFixture[str], mixed_jsonl: Path, mixed_records: list[UsageRecord]
) -> None:
    priced = mixed_records[0].cost_usd
    assert priced is not None

    total = report_json(capsys, str(mixed_jsonl))["total"]

    assert total["cost_per_turn_usd"] == format(priced, "f")
    assert Decimal(total["cost_per_1k_turns_usd"]) == priced * 1000


def test_unpriced_table_shows_count_and_note(
    capsys: pytest.CaptureFixture[str], mixed_jsonl: Path, mixed_records: list[UsageRecord]
) -> None:
    code, out, err = report(capsys, str(mixed_jsonl), "--by", "agent")
    lines = out.splitlines()
    planner = next(line for line in lines if line.startswith("planner"))
    total = next(line for line in lines if line.startswith("total"))

    assert code == 0, err
    assert planner.split() == ["planner", "2", "300", "30", "-", "-", "-", "2"]
    assert total.split()[-1] == "3"
    assert "unpriced: 3 turns without a wholly known cost" in out
    assert "(house-model)" in out
    assert_fits_80_columns(out)


def test_summary_model_rows_add_up_to_total_cost(mixed_records: list[UsageRecord]) -> None:
    summary = summarize(mixed_records, ["model"])

    costs = [row.cost_usd for row in summary.rows if row.cost_usd is not None]

    assert sum(costs, Decimal(0)) == summary.total.cost_usd


def test_records_without_rounds_not_turns(demo_output: DemoOutput) -> None:
    records = tokenmeter.read_jsonl(demo_output.jsonl)
    groupers = [record for record in records if record.rounds == 0]

    summary = summarize(records, ["agent"])

    assert groupers
    assert summary.records_without_rounds == len(groupers)
    assert summary.total.turns == len(records) - len(groupers)
    assert "(none)" not in {row.key[0] for row in summarize(records, ["model"]).rows}


# --- formats --------------------------------------------------------------------------------------


def test_json_costs_are_exact_decimal_strings(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    costs = [Decimal("0.00123456789012345678"), Decimal("1.2E-7"), Decimal("0.1")]
    records = [
        make_record(NOW - timedelta(minutes=index), parts=[("gpt-4o", 10, 1, cost)])
        for index, cost in enumerate(costs)
    ]
    path = write_jsonl(tmp_path / "usage.jsonl", records)

    document = report_json(capsys, str(path))

    assert document["total"]["cost_usd"] == "0.10123468789012345678"
    assert Decimal(document["total"]["cost_usd"]) == sum(costs, Decimal(0))
    assert "E" not in document["total"]["cost_per_turn_usd"]


def test_json_document_fields(capsys: pytest.CaptureFixture[str], demo_output: DemoOutput) -> None:
    document = report_json(capsys, str(demo_output.jsonl), "--by", "agent,model", "--since", "7d")

    assert document["by"] == ["agent", "model"]
    assert document["source"] == str(demo_output.jsonl)
    assert datetime.fromisoformat(document["since"]) < NOW
    assert document["until"] is None
    assert set(document["rows"][0]) >= {"agent", "model", "turns", "cost_usd", "unpriced_turns"}


def test_csv_parses_with_csv_module(
    capsys: pytest.CaptureFixture[str], demo_output: DemoOutput
) -> None:
    document = report_json(capsys, str(demo_output.jsonl), "--by", "agent,model")
    code, out, err = report(
        capsys, str(demo_output.jsonl), "--by", "agent,model", "--format", "csv"
    )

    rows = list(csv.DictReader(io.StringIO(out)))

    assert code == 0, err
    assert len(rows) == len(document["rows"])
    for row, expected in zip(rows, document["rows"], strict=True):
        assert row["agent"] == expected["agent"]
        assert row["model"] == expected["model"]
        assert int(row["turns"]) == expected["turns"]
        assert row["cost_usd"] == expected["cost_usd"]


def test_csv_unknown_cost_is_empty_cell(
    capsys: pytest.CaptureFixture[str], mixed_jsonl: Path, mixed_records: list[UsageRecord]
) -> None:
    code, out, _ = report(capsys, str(mixed_jsonl), "--by", "model", "--format", "csv")

    rows = {row["model"]: row for row in csv.DictReader(io.StringIO(out))}

    assert code == 0
    assert rows["house-model"]["cost_usd"] == ""
    assert rows["house-model"]["unpriced_turns"] == "2"


# --- periods and grouping -------------------------------------------------------------------------


@pytest.fixture
def dated_jsonl(tmp_path: Path) -> Path:
    records = [
        make_record(NOW - timedelta(days=10), agent="old", parts=[("gpt-4o", 10, 1, Decimal(1))]),
        make_record(NOW - timedelta(days=3), agent="recent", parts=[("gpt-4o", 10, 1, Decimal(2))]),
        make_record(
            NOW - timedelta(hours=1), agent="recent", parts=[("gpt-4o", 10, 1, Decimal(4))]
        ),
    ]
    return write_jsonl(tmp_path / "dated.jsonl", records)


def test_since_7d_filters(capsys: pytest.CaptureFixture[str], dated_jsonl: Path) -> None:
    document = report_json(capsys, str(dated_jsonl), "--since", "7d", "--by", "agent")

    assert [row["agent"] for row in document["rows"]] == ["recent"]
    assert document["total"]["turns"] == 2
    assert document["total"]["cost_usd"] == "6"


def test_until_filters(capsys: pytest.CaptureFixture[str], dated_jsonl: Path) -> None:
    document = report_json(capsys, str(dated_jsonl), "--until", "7d", "--by", "agent")

    assert [row["agent"] for row in document["rows"]] == ["old"]


def test_since_and_until_iso_dates(capsys: pytest.CaptureFixture[str], dated_jsonl: Path) -> None:
    since = (NOW - timedelta(days=4)).date().isoformat()
    until = (NOW - timedelta(days=2)).isoformat()

    document = report_json(capsys, str(dated_jsonl), "--since", since, "--until", until)

    assert document["total"]["cost_usd"] == "2"


def test_agent_and_model_filters(capsys: pytest.CaptureFixture[str], dated_jsonl: Path) -> None:
    by_agent = report_json(capsys, str(dated_jsonl), "--agent", "old")
    by_model = report_json(capsys, str(dated_jsonl), "--model", "claude-sonnet-4-5")

    assert by_agent["total"]["turns"] == 1
    assert by_model["total"]["turns"] == 0
    assert by_model["rows"] == []


def test_filters_matching_nothing_exit_0(
    capsys: pytest.CaptureFixture[str], dated_jsonl: Path
) -> None:
    code, out, err = report(capsys, str(dated_jsonl), "--since", "1s")

    assert code == 0, err
    assert "(no records match)" in out


def test_by_tag_counts_turn_under_each_tag(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    records = [
        make_record(NOW, tags=["eval", "nightly"], parts=[("gpt-4o", 10, 1, Decimal(1))]),
        make_record(NOW, tags=["eval"], parts=[("gpt-4o", 10, 1, Decimal(2))]),
        make_record(NOW, parts=[("gpt-4o", 10, 1, Decimal(4))]),
    ]
    path = write_jsonl(tmp_path / "tags.jsonl", records)

    document = report_json(capsys, str(path), "--by", "tag")
    rows = {row["tag"]: row for row in document["rows"]}

    assert rows["eval"]["turns"] == 2
    assert rows["eval"]["cost_usd"] == "3"
    assert rows["nightly"]["cost_usd"] == "1"
    assert rows["(untagged)"]["cost_usd"] == "4"
    assert document["total"]["turns"] == 3
    assert document["total"]["cost_usd"] == "7"


def test_tag_filter_repeatable(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    records = [
        make_record(NOW, tags=["eval", "nightly"], parts=[("gpt-4o", 10, 1, Decimal(1))]),
        make_record(NOW, tags=["eval"], parts=[("gpt-4o", 10, 1, Decimal(2))]),
    ]
    path = write_jsonl(tmp_path / "tags.jsonl", records)

    document = report_json(capsys, str(path), "--tag", "eval", "--tag", "nightly")

    assert document["total"]["cost_usd"] == "1"


def test_by_day_rows_in_date_order(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    days = [datetime(2026, 3, day, 23, 30, tzinfo=UTC) for day in (3, 1, 2, 1)]
    records = [
        make_record(moment, parts=[("gpt-4o", 10, 1, Decimal(day))])
        for day, moment in enumerate(days, start=1)
    ]
    path = write_jsonl(tmp_path / "days.jsonl", records)

    document = report_json(capsys, str(path), "--by", "day")

    assert [row["day"] for row in document["rows"]] == ["2026-03-01", "2026-03-02", "2026-03-03"]
    assert [row["cost_usd"] for row in document["rows"]] == ["6", "3", "1"]


def test_by_day_uses_utc_date() -> None:
    moment = datetime.fromisoformat("2026-03-02T08:00:00+09:00")
    record = make_record(moment, parts=[("gpt-4o", 10, 1, Decimal(1))])

    summary = summarize([record], ["day"])

    assert [row.key for row in summary.rows] == [("2026-03-01",)]


def test_by_agent_model_splits_multi_model_turn(mixed_records: list[UsageRecord]) -> None:
    summary = summarize(mixed_records, ["agent", "model"])
    rows = {row.key: row for row in summary.rows}

    assert set(rows) == {
        ("coder", "gpt-4o"),
        ("coder", "house-model"),
        ("planner", "house-model"),
        ("planner", "gpt-4o"),
    }
    assert rows[("coder", "gpt-4o")].turns == 2
    assert rows[("coder", "gpt-4o")].input_tokens == 3000
    assert summary.multi_model_turns == 1


def test_rows_sorted_by_cost(capsys: pytest.CaptureFixture[str], dated_jsonl: Path) -> None:
    document = report_json(capsys, str(dated_jsonl), "--by", "agent")

    assert [row["agent"] for row in document["rows"]] == ["recent", "old"]


# --- arguments ------------------------------------------------------------------------------------


def test_parse_time_relative_units() -> None:
    now = datetime(2026, 5, 10, 12, 0, tzinfo=UTC)

    assert parse_time("7d", now=now) == now - timedelta(days=7)
    assert parse_time("12h", now=now) == now - timedelta(hours=12)
    assert parse_time("30m", now=now) == now - timedelta(minutes=30)
    assert parse_time("90s", now=now) == now - timedelta(seconds=90)
    assert parse_time("2w", now=now) == now - timedelta(weeks=2)


def test_parse_time_iso_forms_in_utc() -> None:
    assert parse_time("2026-05-01") == datetime(2026, 5, 1, tzinfo=UTC)
    assert parse_time("2026-05-01T12:00:00+02:00") == datetime(2026, 5, 1, 10, tzinfo=UTC)


def test_parse_time_invalid_names_forms() -> None:
    with pytest.raises(ValueError, match=r"invalid time 'last week': expected a duration"):
        parse_time("last week")


def test_parse_group_keys_rejects_unknown_key() -> None:
    with pytest.raises(ValueError, match=r"'user' is not one of agent, model, provider"):
        parse_group_keys("agent,user")


def test_parse_group_keys_rejects_repeated_key() -> None:
    with pytest.raises(ValueError, match="a key appears twice"):
        parse_group_keys("agent,agent")


# --- bad input, as a user meets it ----------------------------------------------------------------


def assert_one_line_error(result: Any, *expected: str) -> None:
    assert result.returncode == 2, result.stdout
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tokenmeter report: ")
    for text in expected:
        assert text in lines[0]


def test_missing_file_exits_2(tmp_path: Path) -> None:
    result = run_command("report", "absent.jsonl", cwd=tmp_path)

    assert_one_line_error(result, "no JSONL file of usage records at", "absent.jsonl")


def test_missing_path_without_suffix_exits_2(tmp_path: Path) -> None:
    result = run_command("report", "absent.log", cwd=tmp_path)

    assert_one_line_error(result, "no file at 'absent.log'", "sqlite:///")


def test_empty_file_exits_2(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_text("")

    result = run_command("report", "empty.jsonl", cwd=tmp_path)

    assert_one_line_error(result, "no usage records in 'empty.jsonl'")


def test_directory_exits_2(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()

    result = run_command("report", "logs", cwd=tmp_path)

    assert_one_line_error(result, "'logs' is a directory")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--since", "yesterday"], "invalid time 'yesterday'"),
        (["--by", "user"], "'user' is not one of agent"),
        (["--since", "1d", "--until", "2d"], "invalid period"),
        (["--chart", "cost.pdf"], "invalid chart file 'cost.pdf'"),
    ],
)
def test_invalid_argument_exits_2(
    tmp_path: Path, demo_output: DemoOutput, args: list[str], expected: str
) -> None:
    result = run_command("report", str(demo_output.jsonl), *args, cwd=tmp_path)

    assert_one_line_error(result, expected)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("stdout", "keeps no records to read back"),
        ("redis://127.0.0.1/0", "unsupported sink URL"),
        ("sqlite:///absent.db", "no SQLite database at"),
    ],
)
def test_unreadable_source_exits_2(tmp_path: Path, source: str, expected: str) -> None:
    result = run_command("report", source, cwd=tmp_path)

    assert_one_line_error(result, expected)


def test_sqlite_without_usage_table_exits_2(tmp_path: Path) -> None:
    connection = sqlite3.connect(tmp_path / "other.db")
    connection.execute("CREATE TABLE notes (body TEXT)")
    connection.close()

    result = run_command("report", "other.db", cwd=tmp_path)

    assert_one_line_error(result, "no table 'llm_usage'", "notes")


def test_corrupt_sqlite_exits_2(tmp_path: Path) -> None:
    (tmp_path / "broken.db").write_bytes(b"SQLite format 3\x00" + b"\xff" * 200)

    result = run_command("report", "sqlite:///broken.db", cwd=tmp_path)

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("tokenmeter report: ")


def test_unreachable_postgres_exits_2(tmp_path: Path) -> None:
    result = run_command(
        "report", f"postgresql://nobody:secret@/db?host={tmp_path}/no-socket", cwd=tmp_path
    )

    assert_one_line_error(result, "reading PostgreSQL 'postgresql://nobody:***@/db", "failed: ")
    assert "secret" not in result.stderr


def test_non_record_file_exits_2(tmp_path: Path) -> None:
    (tmp_path / "other.jsonl").write_text('{"event": "login"}\n[1, 2]\nnot json\n')

    result = run_command("report", "other.jsonl", cwd=tmp_path)

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "skipped 3 lines of other.jsonl that are not tokenmeter records" in result.stderr
    assert result.stderr.splitlines()[-1] == "tokenmeter report: no usage records in 'other.jsonl'"


def test_truncated_last_line_skipped(tmp_path: Path) -> None:
    records = [make_record(NOW, parts=[("gpt-4o", 10, 1, Decimal(1))]) for _ in range(2)]
    text = "".join(record_to_json(record) + "\n" for record in records)
    (tmp_path / "cut.jsonl").write_text(text + record_to_json(records[0])[:50])

    result = run_command("report", "cut.jsonl", "--format", "json", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["total"]["turns"] == 2
    assert "skipped the incomplete last line 3 of cut.jsonl" in result.stderr
    assert "Traceback" not in result.stderr


def test_non_record_lines_counted_and_skipped(tmp_path: Path) -> None:
    record = make_record(NOW, parts=[("gpt-4o", 10, 1, Decimal(1))])
    write_jsonl(tmp_path / "mixed.jsonl", [record], ['{"event": "login"}', "", "garbage"])

    result = run_command("report", "mixed.jsonl", "--format", "json", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["total"]["turns"] == 1
    assert "skipped 2 lines of mixed.jsonl that are not tokenmeter records: lines 2, 4" in (
        result.stderr
    )


def test_older_schema_lines_reported(tmp_path: Path) -> None:
    old = {
        "id": "00000000-0000-0000-0000-000000000001",
        "timestamp": NOW.isoformat(),
        "run_id": "00000000-0000-0000-0000-000000000002",
        "agent": "legacy",
        "model": "gpt-4o",
        "rounds": 1,
        "input_tokens": 100,
        "output_tokens": 10,
        "cost_usd": 0.25,
        "schema_version": 0,
    }
    (tmp_path / "old.jsonl").write_text(json.dumps(old) + "\n")

    result = run_command("report", "old.jsonl", "--by", "model", "--format", "json", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["rows"]
    assert rows == [
        {**rows[0], "model": "gpt-4o", "turns": 1, "input_tokens": 100, "cost_usd": "0.25"}
    ]


def test_newer_schema_lines_skipped_with_warning(tmp_path: Path) -> None:
    record = make_record(NOW, parts=[("gpt-4o", 10, 1, Decimal(1))])
    newer = json.loads(record_to_json(make_record(NOW)))
    newer["schema_version"] = 99
    write_jsonl(tmp_path / "new.jsonl", [record], [json.dumps(newer)])

    result = run_command("report", "new.jsonl", "--format", "json", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["total"]["turns"] == 1
    assert "written with a newer record schema" in result.stderr
