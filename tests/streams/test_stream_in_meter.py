"""Streams metered inside a `meter()` block: one run, a parent, and totals counted once."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest
from stream_support import (
    IGNORE_OPENAI_TRIO_WARNING,
    SSEServer,
    arecords_of,
    expected_cost,
    expected_usage,
    load,
    records_of,
    sse_frames,
)

import tokenmeter
from tokenmeter import Usage, UsageRecord, meter, metered_stream, metered_turn
from tokenmeter.testing import MemorySink

pytestmark = IGNORE_OPENAI_TRIO_WARNING

OPENAI_STREAM = "openai_chat_stream_include_usage.json"
OPENAI_MODEL = "gpt-4o-mini-2024-07-18"
ANTHROPIC_STREAM = "anthropic_stream_basic.json"
OPENAI_REQUEST: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "What is the capital of France?"}],
    "stream": True,
    "stream_options": {"include_usage": True},
}
ANTHROPIC_REQUEST: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 1024,
    "messages": [{"role": "user", "content": "What is the capital of France?"}],
}


def tokens(usage: Usage) -> Usage:
    """Drop `details`, to compare with the manifest, which lists only the five fields."""
    return Usage(
        usage.input_tokens,
        usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        reasoning_tokens=usage.reasoning_tokens,
    )


def split(records: list[UsageRecord], meter_name: str) -> tuple[UsageRecord, UsageRecord]:
    """Return the meter's record and the single other record."""
    assert len(records) == 2, records
    (outer,) = [record for record in records if record.name == meter_name]
    (inner,) = [record for record in records if record.name != meter_name]
    return outer, inner


def assert_child_of(inner: UsageRecord, outer: UsageRecord, block: tokenmeter.Meter) -> None:
    assert inner.run_id == outer.run_id
    assert str(outer.run_id) == block.run_id
    assert inner.parent_id == outer.id
    assert outer.parent_id is None


def assert_counted_once(inner: UsageRecord, outer: UsageRecord) -> None:
    """The meter's own record contains none of the stream's tokens, so a sum counts them once."""
    assert outer.rounds == 0
    assert outer.input_tokens is None
    assert inner.rounds == 1
    assert inner.input_tokens == expected_usage(OPENAI_STREAM).input_tokens


@pytest.mark.parametrize("way", ["metered_stream", "metered_turn"])
def test_stream_record_is_child_of_meter(
    sse_server: SSEServer, openai_client: openai.OpenAI, memory_sink: MemorySink, way: str
) -> None:
    sse_server.reply(sse_frames(load(OPENAI_STREAM), named=False))

    @metered_turn(name="step")
    def step() -> Any:
        return openai_client.chat.completions.create(**OPENAI_REQUEST)

    with meter(name="loop") as block:
        if way == "metered_stream":
            stream = metered_stream(openai_client.chat.completions.create(**OPENAI_REQUEST))
        else:
            stream = step()
        for _ in stream:
            pass

    outer, inner = split(records_of(memory_sink), "loop")
    assert_child_of(inner, outer, block)
    assert_counted_once(inner, outer)


def test_meter_usage_includes_stream_after_end(
    sse_server: SSEServer, openai_client: openai.OpenAI, memory_sink: MemorySink
) -> None:
    events = load(OPENAI_STREAM)
    sse_server.reply(sse_frames(events, named=False))

    with meter(name="loop") as block:
        stream = metered_stream(openai_client.chat.completions.create(**OPENAI_REQUEST))
        next(stream)
        usage_while_streaming = block.usage
        for _ in stream:
            pass
        usage_after = block.usage
        cost_after = block.cost

    assert usage_while_streaming == Usage()
    assert tokens(usage_after) == expected_usage(OPENAI_STREAM)
    assert cost_after is not None
    assert cost_after.total_usd == expected_cost(events, OPENAI_MODEL, "openai")


def test_meter_usage_includes_closed_stream_partial_usage(
    sse_server: SSEServer, anthropic_client: anthropic.Anthropic, memory_sink: MemorySink
) -> None:
    sse_server.reply(sse_frames(load(ANTHROPIC_STREAM), named=True))

    with meter(name="loop") as block:
        with metered_stream(anthropic_client.messages.stream(**ANTHROPIC_REQUEST)) as stream:
            next(stream)
        usage = block.usage

    outer, inner = split(records_of(memory_sink), "loop")
    assert usage == Usage(20, 1)
    assert inner.status == "incomplete"
    assert inner.parent_id == outer.id


def test_stream_read_after_meter_exit_keeps_run(
    sse_server: SSEServer, openai_client: openai.OpenAI, memory_sink: MemorySink
) -> None:
    sse_server.reply(sse_frames(load(OPENAI_STREAM), named=False))

    with meter(name="loop") as block:
        stream = metered_stream(openai_client.chat.completions.create(**OPENAI_REQUEST))
    for _ in stream:
        pass

    outer, inner = split(records_of(memory_sink), "loop")
    assert_child_of(inner, outer, block)
    assert inner.status == "ok"


def test_streams_in_nested_meters(
    sse_server: SSEServer, openai_client: openai.OpenAI, memory_sink: MemorySink
) -> None:
    sse_server.reply(sse_frames(load(OPENAI_STREAM), named=False))
    sse_server.reply(sse_frames(load(OPENAI_STREAM), named=False))

    with meter(name="run") as run:
        for _ in metered_stream(openai_client.chat.completions.create(**OPENAI_REQUEST)):
            pass
        with meter(name="subtask") as subtask:
            for _ in metered_stream(openai_client.chat.completions.create(**OPENAI_REQUEST)):
                pass

    records = records_of(memory_sink)
    by_name = {record.name: record for record in records if record.name in {"run", "subtask"}}
    streams = [record for record in records if record.name not in by_name]
    one = expected_usage(OPENAI_STREAM)
    assert len(records) == 4
    assert {record.run_id for record in records} == {by_name["run"].run_id}
    assert sorted(str(record.parent_id) for record in streams) == sorted(
        [str(by_name["run"].id), str(by_name["subtask"].id)]
    )
    assert tokens(run.usage) == one + one
    assert tokens(subtask.usage) == one
    assert sum(record.input_tokens or 0 for record in records) == 2 * one.input_tokens


@pytest.mark.anyio
@pytest.mark.parametrize("way", ["metered_stream", "metered_turn"])
async def test_async_stream_record_is_child_of_meter(
    sse_server: SSEServer, memory_sink: MemorySink, anyio_backend: str, way: str
) -> None:
    sse_server.reply(sse_frames(load(OPENAI_STREAM), named=False))

    async with openai.AsyncOpenAI(
        api_key="test-key", base_url=f"{sse_server.base_url}/v1", max_retries=0
    ) as client:

        @metered_turn(name="step")
        async def step() -> Any:
            return await client.chat.completions.create(**OPENAI_REQUEST)

        async with meter(name="loop") as block:
            if way == "metered_stream":
                stream = metered_stream(await client.chat.completions.create(**OPENAI_REQUEST))
            else:
                stream = await step()
            async for _ in stream:
                pass
            usage = block.usage

    outer, inner = split(await arecords_of(memory_sink), "loop")
    assert_child_of(inner, outer, block)
    assert_counted_once(inner, outer)
    assert tokens(usage) == expected_usage(OPENAI_STREAM)
