"""The contract every sink keeps, run over each sink kind under asyncio and trio."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import TYPE_CHECKING
from uuid import UUID

import anyio
import pytest

from tokenmeter.records import UsageRecord
from tokenmeter.sinks import Sink, open_sink

if TYPE_CHECKING:
    from tests.sinks.conftest import BatchFactory, RecordFactory, SinkHarness

pytestmark = pytest.mark.anyio


def by_id(records: list[UsageRecord]) -> dict[UUID, UsageRecord]:
    return {record.id: record for record in records}


def assert_same_records(stored: list[UsageRecord], expected: list[UsageRecord]) -> None:
    stored_by_id = by_id(stored)
    assert set(stored_by_id) == {record.id for record in expected}
    for record in expected:
        copy = stored_by_id[record.id]
        assert copy == record
        # Decimal equality ignores trailing digits; the stored digits must be the same too.
        assert str(copy.cost_usd) == str(record.cost_usd)
        assert [str(usage.cost_usd) for usage in copy.by_model] == [
            str(usage.cost_usd) for usage in record.by_model
        ]
        assert copy.timestamp.utcoffset() == timedelta(0)
        assert copy.timestamp == record.timestamp


async def test_open_sink_gives_sink(sink_harness: SinkHarness) -> None:
    sink = open_sink(sink_harness.url)

    assert isinstance(sink, Sink)
    await sink.aclose()


async def test_write_stores_batch(sink_harness: SinkHarness, batch: list[UsageRecord]) -> None:
    sink = open_sink(sink_harness.url)

    await sink.write(batch)
    await sink.aclose()

    assert_same_records(await sink_harness.read_back(), batch)


async def test_retried_batch_stored(sink_harness: SinkHarness, batch: list[UsageRecord]) -> None:
    sink = open_sink(sink_harness.url)

    await sink.write(batch)
    await sink.write(batch)
    await sink.aclose()

    stored = await sink_harness.read_back()
    copies = Counter(record.id for record in stored)
    for record in batch:
        if sink_harness.stores_once:
            assert copies[record.id] == 1
        else:
            assert copies[record.id] >= 1
    assert_same_records(stored, batch)


async def test_reopened_sink_keeps_records(
    sink_harness: SinkHarness, batch: list[UsageRecord]
) -> None:
    first = open_sink(sink_harness.url)
    await first.write(batch[:3])
    await first.aclose()

    second = open_sink(sink_harness.url)
    await second.write(batch[3:])
    await second.aclose()

    assert_same_records(await sink_harness.read_back(), batch)


async def test_partly_retried_batch_adds_new_records(
    sink_harness: SinkHarness, make_batch: BatchFactory, make_record: RecordFactory
) -> None:
    batch = make_batch(4)
    retried = [*batch[2:], make_record(10), make_record(11)]
    sink = open_sink(sink_harness.url)

    await sink.write(batch)
    await sink.write(retried)
    await sink.aclose()

    stored = await sink_harness.read_back()
    expected = [*batch, *retried[2:]]
    assert_same_records(stored, expected)
    if sink_harness.stores_once:
        assert len(stored) == len(expected)


async def test_concurrent_writes_all_stored(
    sink_harness: SinkHarness, make_record: RecordFactory
) -> None:
    batches = [[make_record(index * 10 + offset) for offset in range(10)] for index in range(5)]
    sink = open_sink(sink_harness.url)

    async with anyio.create_task_group() as group:
        for records in batches:
            group.start_soon(sink.write, records)
    await sink.aclose()

    stored = await sink_harness.read_back()
    expected = [record for records in batches for record in records]
    assert len(stored) == len(expected)
    assert_same_records(stored, expected)


async def test_large_batch_stored(sink_harness: SinkHarness, make_record: RecordFactory) -> None:
    batch = [make_record(index) for index in range(2000)]
    sink = open_sink(sink_harness.url)

    await sink.write(batch)
    await sink.aclose()

    assert_same_records(await sink_harness.read_back(), batch)


async def test_empty_batch_stores_nothing(
    sink_harness: SinkHarness, make_batch: BatchFactory
) -> None:
    sink = open_sink(sink_harness.url)

    await sink.write([])
    await sink.write(make_batch(2))
    await sink.write([])
    await sink.aclose()

    assert len(await sink_harness.read_back()) == 2


async def test_aclose_is_idempotent(sink_harness: SinkHarness, batch: list[UsageRecord]) -> None:
    sink = open_sink(sink_harness.url)
    await sink.write(batch)

    await sink.aclose()
    await sink.aclose()

    assert_same_records(await sink_harness.read_back(), batch)


async def test_aclose_before_write(sink_harness: SinkHarness) -> None:
    sink = open_sink(sink_harness.url)

    await sink.aclose()
    await sink.aclose()


async def test_write_after_aclose_raises(
    sink_harness: SinkHarness, batch: list[UsageRecord]
) -> None:
    sink = open_sink(sink_harness.url)
    await sink.aclose()

    with pytest.raises(RuntimeError, match="is closed"):
        await sink.write(batch)


async def test_repr_names_sink_class(sink_harness: SinkHarness) -> None:
    sink = open_sink(sink_harness.url)

    assert repr(sink).startswith(f"{type(sink).__name__}(")
    await sink.aclose()
