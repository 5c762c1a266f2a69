"""StdoutSink: the one-line summary, the JSON lines, and where they are printed."""

from __future__ import annotations

import io
import threading
from decimal import Decimal
from typing import TYPE_CHECKING

import pytest

from tokenmeter.records import UsageRecord, record_from_json
from tokenmeter.sinks import NullSink, StdoutSink, open_sink
from tokenmeter.sinks.stdout import format_cost, format_summary

if TYPE_CHECKING:
    from tests.sinks.conftest import RecordFactory


def test_summary_of_priced_record(make_record: RecordFactory) -> None:
    record = make_record(0, cost_usd=Decimal("0.0148215"), cache_read_tokens=0, input_tokens=1200)

    assert format_summary(record) == (
        "2026-05-01T12:00:00Z agent=researcher model=gpt-4o in=1200 out=350 $0.01482"
    )


def test_summary_of_unpriced_record(make_record: RecordFactory) -> None:
    record = make_record(0, cost_usd=None, price_status="unpriced", cache_read_tokens=0)

    assert format_summary(record).endswith(" in=1200 out=350 unpriced")


def test_summary_of_partly_priced_record(make_record: RecordFactory) -> None:
    record = make_record(0, cost_usd=None, price_status="partial", cache_read_tokens=0)

    assert format_summary(record).endswith(" unpriced")


def test_summary_of_unmeasured_record(make_record: RecordFactory) -> None:
    record = make_record(
        0,
        agent=None,
        model=None,
        input_tokens=None,
        cache_read_tokens=None,
        output_tokens=None,
        cost_usd=None,
        price_status="unmeasured",
    )

    assert format_summary(record) == "2026-05-01T12:00:00Z agent=- model=- in=- out=- unmeasured"


def test_summary_shows_cache_reasoning_and_error(make_record: RecordFactory) -> None:
    record = make_record(
        1,
        cost_usd=Decimal("0.5"),
        reasoning_tokens=200,
        status="error",
        error_type="TimeoutError",
    )

    assert format_summary(record) == (
        "2026-05-01T12:01:00Z agent=writer model=gpt-4o in=1201 out=350 cached=1000 "
        "reasoning=200 $0.50000 status=error(TimeoutError)"
    )


@pytest.mark.parametrize(
    ("cost", "shown"),
    [
        (Decimal("0.0148215"), "$0.01482"),
        (Decimal("12.3"), "$12.30000"),
        (Decimal("0"), "$0.00000"),
        (Decimal("0.0000012345"), "$0.0000012"),
        (Decimal("0.000004"), "$0.0000040"),
    ],
)
def test_format_cost(cost: Decimal, shown: str) -> None:
    assert format_cost(cost) == shown


@pytest.mark.anyio
async def test_text_sink_prints_summaries(
    capsys: pytest.CaptureFixture[str], batch: list[UsageRecord]
) -> None:
    sink = open_sink("stdout")

    await sink.write(batch)

    printed = capsys.readouterr().out
    assert printed == "".join(format_summary(record) + "\n" for record in batch)


@pytest.mark.anyio
async def test_json_sink_prints_records(
    capsys: pytest.CaptureFixture[str], batch: list[UsageRecord]
) -> None:
    sink = open_sink("stdout:json")

    await sink.write(batch)

    lines = capsys.readouterr().out.splitlines()
    assert [record_from_json(line) for line in lines] == batch


@pytest.mark.anyio
async def test_sink_prints_to_given_stream(batch: list[UsageRecord]) -> None:
    stream = io.StringIO()
    sink = StdoutSink("json", stream=stream)

    await sink.write(batch)

    assert len(stream.getvalue().splitlines()) == len(batch)


def test_invalid_format_raises() -> None:
    with pytest.raises(ValueError, match="invalid format=") as raised:
        StdoutSink("yaml")  # type: ignore[arg-type]

    assert str(raised.value) == "invalid format='yaml' for StdoutSink: expected 'text' or 'json'"


@pytest.mark.parametrize(("url", "shown"), [("stdout", "stdout"), ("STDOUT:json", "stdout:json")])
def test_repr_shows_url(url: str, shown: str) -> None:
    assert repr(open_sink(url)) == f"StdoutSink(url={shown!r})"


@pytest.mark.anyio
async def test_none_sink_discards(
    capsys: pytest.CaptureFixture[str], batch: list[UsageRecord]
) -> None:
    sink = open_sink(" none ")

    await sink.write(batch)
    await sink.aclose()

    assert isinstance(sink, NullSink)
    assert repr(sink) == "NullSink(url='none')"
    assert capsys.readouterr().out == ""


class _RecordingStream(io.StringIO):
    """A stream that records which threads wrote to it."""

    def __init__(self) -> None:
        super().__init__()
        self.writer_threads: list[int] = []

    def write(self, text: str) -> int:
        self.writer_threads.append(threading.get_ident())
        return super().write(text)


@pytest.mark.anyio
async def test_printing_runs_off_event_loop_thread(batch: list[UsageRecord]) -> None:
    stream = _RecordingStream()
    sink = StdoutSink(stream=stream)

    await sink.write(batch)

    assert stream.writer_threads
    assert threading.get_ident() not in stream.writer_threads
