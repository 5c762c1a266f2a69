"""Cost-over-time charts: buckets, series, unpriced turns, and valid HTML and PNG files."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

import tokenmeter
from tests.report_data import (
    DemoOutput,
    demo_output,
    demo_postgres_url,
    make_record,
    postgres_dsn,
    run_command,
)
from tokenmeter.charts import CostOverTime, check_chart_path, cost_series, write_chart
from tokenmeter.cli import main
from tokenmeter.records import UsageRecord

__all__ = ["demo_output", "demo_postgres_url", "postgres_dsn"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
START = datetime(2026, 3, 4, 9, 5, tzinfo=UTC)


def priced(
    moment: datetime, cost: str, *, agent: str = "planner", model: str = "gpt-4o"
) -> UsageRecord:
    return make_record(moment, agent=agent, parts=[(model, 100, 10, Decimal(cost))])


def total_cost(records: list[UsageRecord]) -> Decimal:
    return sum((record.cost_usd for record in records if record.cost_usd is not None), Decimal(0))


# --- series --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("span", "size"),
    [
        (timedelta(hours=2), timedelta(minutes=10)),
        (timedelta(days=2), timedelta(hours=1)),
        (timedelta(days=30), timedelta(days=1)),
        (timedelta(days=400), timedelta(weeks=1)),
    ],
)
def test_bucket_size_follows_span(span: timedelta, size: timedelta) -> None:
    records = [priced(START, "1"), priced(START + span, "2")]

    series = cost_series(records)

    assert series.bucket_size == size
    assert series.buckets[0] <= START < series.buckets[0] + size
    assert series.buckets[-1] <= START + span < series.buckets[-1] + size
    assert all(b - a == size for a, b in zip(series.buckets, series.buckets[1:], strict=False))


def test_weekly_buckets_start_on_monday() -> None:
    records = [priced(START, "1"), priced(START + timedelta(days=400), "2")]

    series = cost_series(records)

    assert {moment.weekday() for moment in series.buckets} == {0}
    assert series.buckets[0].time() == datetime.min.time()


def test_series_sum_to_priced_cost_exactly() -> None:
    records = [
        priced(START + timedelta(minutes=7 * index), f"0.00{index}1234567890123", agent=agent)
        for index, agent in enumerate(["planner", "coder", "planner", "reviewer", "coder"])
    ]

    series = cost_series(records, by="agent")

    assert set(series.series) == {"planner", "coder", "reviewer"}
    drawn = sum((sum(values, Decimal(0)) for values in series.series.values()), Decimal(0))
    assert drawn == total_cost(records)
    assert all(len(values) == len(series.buckets) for values in series.series.values())


def test_series_by_model_splits_turns() -> None:
    record = make_record(
        START,
        parts=[
            ("gpt-4o", 100, 10, Decimal("0.5")),
            ("claude-sonnet-4-5", 100, 10, Decimal("0.25")),
        ],
    )

    series = cost_series([record], by="model")

    assert {name: sum(values) for name, values in series.series.items()} == {
        "gpt-4o": Decimal("0.5"),
        "claude-sonnet-4-5": Decimal("0.25"),
    }


def test_unpriced_turns_left_out_and_counted() -> None:
    records = [
        priced(START, "1"),
        make_record(START, parts=[("house-model", 100, 10, None)]),
        make_record(START, parts=[("gpt-4o", 100, 10, Decimal(2)), ("house-model", 5, 1, None)]),
    ]

    by_agent = cost_series(records, by="agent")
    by_model = cost_series(records, by="model")

    assert sum(by_agent.series["planner"]) == Decimal(3)
    assert by_agent.unpriced_turns == 2
    assert set(by_model.series) == {"gpt-4o"}
    assert by_model.unpriced_turns == 2


def test_records_without_rounds_not_drawn() -> None:
    grouping = make_record(START - timedelta(days=30), parts=[], agent="outer")

    series = cost_series([grouping, priced(START, "1")])

    assert set(series.series) == {"planner"}
    assert series.bucket_size == timedelta(minutes=10)


def test_more_than_nine_series_fold_into_other() -> None:
    records = [priced(START, str(index + 1), agent=f"agent-{index:02d}") for index in range(12)]

    series = cost_series(records)

    assert len(series.series) == 10
    assert next(iter(series.series)) == "agent-11"
    assert sum(series.series["other"]) == Decimal(1 + 2 + 3)
    drawn = sum((sum(values, Decimal(0)) for values in series.series.values()), Decimal(0))
    assert drawn == total_cost(records)


def test_invalid_grouping_raises() -> None:
    with pytest.raises(
        ValueError, match="invalid chart grouping 'tag': expected 'agent' or 'model'"
    ):
        CostOverTime("tag")


def test_invalid_suffix_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"invalid chart file '.*cost\.svg': expected a name"):
        check_chart_path(tmp_path / "cost.svg")


# --- files ---------------------------------------------------------------------------------------


def test_html_chart_has_svg_bars(tmp_path: Path) -> None:
    records = [priced(START + timedelta(minutes=15 * index), "0.5") for index in range(4)]

    path = write_chart(records, tmp_path / "cost.html")
    text = path.read_text(encoding="utf-8")

    assert text.startswith("<!doctype html>")
    assert "<svg" in text
    assert "</svg>" in text
    assert text.count("<rect") == 4 + 1
    assert "Cost over time by agent (USD)" in text


def test_html_chart_escapes_names(tmp_path: Path) -> None:
    name = "<script>alert(1)</script>"

    path = write_chart([priced(START, "1", agent=name)], tmp_path / "cost.html")
    text = path.read_text(encoding="utf-8")

    assert "<script>" not in text
    assert html.escape(name) in text


def test_html_chart_notes_unpriced_turns(tmp_path: Path) -> None:
    records = [priced(START, "1"), make_record(START, parts=[("house-model", 100, 10, None)])]

    text = write_chart(records, tmp_path / "cost.html").read_text(encoding="utf-8")

    assert "1 turn without a known cost is left out" in text


def test_html_chart_without_records(tmp_path: Path) -> None:
    text = write_chart([], tmp_path / "cost.html").read_text(encoding="utf-8")

    assert "No turns to chart." in text


def test_png_chart_starts_with_signature(tmp_path: Path) -> None:
    records = [priced(START + timedelta(hours=index), "0.5") for index in range(30)]

    path = write_chart(records, tmp_path / "cost.png", by="model")

    assert path.read_bytes().startswith(PNG_SIGNATURE)


def test_png_chart_without_records(tmp_path: Path) -> None:
    path = write_chart([], tmp_path / "cost.png")

    assert path.read_bytes().startswith(PNG_SIGNATURE)


def test_png_chart_leaves_pyplot_backend(tmp_path: Path) -> None:
    import matplotlib

    before = matplotlib.rcParams["backend"]

    write_chart([priced(START, "1")], tmp_path / "cost.png")

    assert matplotlib.rcParams["backend"] == before


# --- the report command ---------------------------------------------------------------------------


def test_report_chart_html_from_demo_jsonl(
    capsys: pytest.CaptureFixture[str], demo_output: DemoOutput, tmp_path: Path
) -> None:
    chart = tmp_path / "cost.html"

    code = main(["report", str(demo_output.jsonl), "--by", "agent", "--chart", str(chart)])
    err = capsys.readouterr().err

    assert code == 0, err
    assert f"chart written to {chart}" in err
    text = chart.read_text(encoding="utf-8")
    assert "<svg" in text
    for agent in ("support-bot", "travel-bot", "research-bot"):
        assert agent in text


def test_report_chart_by_model_from_sqlite(
    capsys: pytest.CaptureFixture[str], demo_output: DemoOutput, tmp_path: Path
) -> None:
    chart = tmp_path / "cost.html"
    models = {
        part.model
        for record in tokenmeter.read_sqlite(demo_output.sqlite_url)
        for part in record.by_model
    }

    code = main(["report", demo_output.sqlite_url, "--chart", str(chart), "--chart-by", "model"])
    capsys.readouterr()

    assert code == 0
    legend = set(re.findall(r'<rect class="legend"[^>]*><title>([^<]+)<', chart.read_text("utf-8")))
    assert legend == models


def test_report_chart_png_from_postgres(demo_postgres_url: str, tmp_path: Path) -> None:
    result = run_command("report", demo_postgres_url, "--chart", "cost.png", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "cost.png").read_bytes().startswith(PNG_SIGNATURE)


def test_report_chart_png_as_separate_process(demo_output: DemoOutput, tmp_path: Path) -> None:
    result = run_command(
        "report", str(demo_output.jsonl), "--format", "json", "--chart", "cost.png", cwd=tmp_path
    )

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "cost.png").read_bytes().startswith(PNG_SIGNATURE)
    assert result.stdout.startswith("{")


def test_report_chart_follows_by_model(
    capsys: pytest.CaptureFixture[str], demo_output: DemoOutput, tmp_path: Path
) -> None:
    chart = tmp_path / "cost.html"

    code = main(["report", str(demo_output.jsonl), "--by", "model", "--chart", str(chart)])
    capsys.readouterr()

    assert code == 0
    assert "Cost over time by model (USD)" in chart.read_text("utf-8")


def test_report_invalid_chart_suffix_reads_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(["report", str(tmp_path / "absent.jsonl"), "--chart", str(tmp_path / "c.jpg")])
    err = capsys.readouterr().err

    assert code == 2
    assert "invalid chart file" in err
    assert "absent.jsonl" not in err
