"""Anthropic Messages streams metered live, through the real `anthropic` clients."""

from __future__ import annotations

from typing import Any

import anthropic
import anyio
import anyio.lowlevel
import pytest
from stream_support import (
    SSEServer,
    arecords_of,
    dumps,
    expected_cost,
    expected_usage,
    load,
    only_record,
    record_usage,
    records_of,
    sse_frames,
)

from tokenmeter import UsageRecord, metered_stream, metered_turn
from tokenmeter.streams import AsyncMeteredStream, MeteredStream
from tokenmeter.testing import MemorySink

STREAMS = ["anthropic_stream_basic.json", "anthropic_stream_pause_turn_thinking.json"]
MODEL = "claude-sonnet-4-5-20250929"
WAYS = ["metered_stream", "metered_turn"]
REQUEST: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 1024,
    "messages": [{"role": "user", "content": "What is the capital of France?"}],
}


def async_client(server: SSEServer) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(api_key="test-key", base_url=server.base_url, max_retries=0)


def assert_matches_manifest(record: UsageRecord, payload: str) -> None:
    assert record.status == "ok"
    assert record.rounds == 1
    assert record.unmeasured_rounds == 0
    assert record.model == MODEL
    assert record.provider == "anthropic"
    assert record_usage(record) == expected_usage(payload)
    assert record.cost_usd == expected_cost(load(payload), MODEL, "anthropic")


def create_metered(client: anthropic.Anthropic, way: str) -> Any:
    """Start a `messages.create(stream=True)` stream, metered one of the two ways."""
    if way == "metered_stream":
        return metered_stream(client.messages.create(**REQUEST, stream=True), agent="claude")

    @metered_turn(agent="claude")
    def step() -> Any:
        return client.messages.create(**REQUEST, stream=True)

    return step()


def manager_metered(client: anthropic.Anthropic, way: str) -> Any:
    """Return a `messages.stream(...)` manager, metered one of the two ways."""
    if way == "metered_stream":
        return metered_stream(client.messages.stream(**REQUEST), agent="claude")

    @metered_turn(agent="claude")
    def step() -> Any:
        return client.messages.stream(**REQUEST)

    return step()


async def acreate_metered(client: anthropic.AsyncAnthropic, way: str) -> Any:
    if way == "metered_stream":
        stream = await client.messages.create(**REQUEST, stream=True)
        return metered_stream(stream, agent="claude")

    @metered_turn(agent="claude")
    async def step() -> Any:
        return await client.messages.create(**REQUEST, stream=True)

    return await step()


async def amanager_metered(client: anthropic.AsyncAnthropic, way: str) -> Any:
    if way == "metered_stream":
        return metered_stream(client.messages.stream(**REQUEST), agent="claude")

    @metered_turn(agent="claude")
    async def step() -> Any:
        return client.messages.stream(**REQUEST)

    return await step()


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("payload", STREAMS)
def test_create_events_match_unwrapped_run(
    sse_server: SSEServer,
    anthropic_client: anthropic.Anthropic,
    memory_sink: MemorySink,
    payload: str,
    way: str,
) -> None:
    frames = sse_frames(load(payload), named=True)
    sse_server.reply(frames)
    sse_server.reply(frames)

    plain = list(anthropic_client.messages.create(**REQUEST, stream=True))
    stream = create_metered(anthropic_client, way)
    metered = list(stream)

    assert isinstance(stream, MeteredStream)
    assert [type(event) for event in metered] == [type(event) for event in plain]
    assert dumps(metered) == dumps(plain)


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("payload", STREAMS)
def test_create_record_matches_manifest(
    sse_server: SSEServer,
    anthropic_client: anthropic.Anthropic,
    memory_sink: MemorySink,
    payload: str,
    way: str,
) -> None:
    sse_server.reply(sse_frames(load(payload), named=True))

    for _ in create_metered(anthropic_client, way):
        pass

    record = only_record(records_of(memory_sink))
    assert_matches_manifest(record, payload)
    assert record.agent == "claude"


def test_pause_turn_web_searches_counted_once(
    sse_server: SSEServer, anthropic_client: anthropic.Anthropic, memory_sink: MemorySink
) -> None:
    sse_server.reply(sse_frames(load("anthropic_stream_pause_turn_thinking.json"), named=True))

    with metered_stream(anthropic_client.messages.stream(**REQUEST)) as stream:
        for _ in stream:
            pass

    record = only_record(records_of(memory_sink))
    assert record.details["web_searches"] == 10
    assert record.input_tokens == 404500


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("payload", STREAMS)
def test_manager_events_and_final_message(
    sse_server: SSEServer,
    anthropic_client: anthropic.Anthropic,
    memory_sink: MemorySink,
    payload: str,
    way: str,
) -> None:
    frames = sse_frames(load(payload), named=True)
    sse_server.reply(frames)
    sse_server.reply(frames)

    with anthropic_client.messages.stream(**REQUEST) as plain_stream:
        plain = list(plain_stream)
        plain_message = plain_stream.get_final_message()
    with manager_metered(anthropic_client, way) as stream:
        metered = list(stream)
        message = stream.get_final_message()

    assert isinstance(stream, MeteredStream)
    assert dumps(metered) == dumps(plain)
    assert message.model_dump() == plain_message.model_dump()
    assert_matches_manifest(only_record(records_of(memory_sink)), payload)


@pytest.mark.parametrize("way", WAYS)
def test_manager_final_message_without_iterating(
    sse_server: SSEServer, anthropic_client: anthropic.Anthropic, memory_sink: MemorySink, way: str
) -> None:
    payload = "anthropic_stream_basic.json"
    sse_server.reply(sse_frames(load(payload), named=True))

    with manager_metered(anthropic_client, way) as stream:
        message = stream.get_final_message()

    assert message.usage.output_tokens == 5
    assert_matches_manifest(only_record(records_of(memory_sink)), payload)


def test_manager_final_text_without_iterating(
    sse_server: SSEServer, anthropic_client: anthropic.Anthropic, memory_sink: MemorySink
) -> None:
    payload = "anthropic_stream_basic.json"
    sse_server.reply(sse_frames(load(payload), named=True))

    with metered_stream(anthropic_client.messages.stream(**REQUEST)) as stream:
        text = stream.get_final_text()

    assert text
    assert_matches_manifest(only_record(records_of(memory_sink)), payload)


def test_manager_until_done(
    sse_server: SSEServer, anthropic_client: anthropic.Anthropic, memory_sink: MemorySink
) -> None:
    payload = "anthropic_stream_basic.json"
    sse_server.reply(sse_frames(load(payload), named=True))

    with metered_stream(anthropic_client.messages.stream(**REQUEST)) as stream:
        stream.until_done()

    assert_matches_manifest(only_record(records_of(memory_sink)), payload)


def test_manager_text_stream(
    sse_server: SSEServer, anthropic_client: anthropic.Anthropic, memory_sink: MemorySink
) -> None:
    payload = "anthropic_stream_basic.json"
    sse_server.reply(sse_frames(load(payload), named=True))
    sse_server.reply(sse_frames(load(payload), named=True))

    with anthropic_client.messages.stream(**REQUEST) as plain_stream:
        plain_text = list(plain_stream.text_stream)
    with metered_stream(anthropic_client.messages.stream(**REQUEST)) as stream:
        text = list(stream.text_stream)

    assert text == plain_text
    assert text
    assert_matches_manifest(only_record(records_of(memory_sink)), payload)


@pytest.mark.anyio
@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("payload", STREAMS)
async def test_async_create_matches_unwrapped_run(
    sse_server: SSEServer, memory_sink: MemorySink, anyio_backend: str, payload: str, way: str
) -> None:
    frames = sse_frames(load(payload), named=True)
    sse_server.reply(frames)
    sse_server.reply(frames)

    async with async_client(sse_server) as client:
        plain = [event async for event in await client.messages.create(**REQUEST, stream=True)]
        stream = await acreate_metered(client, way)
        metered = [event async for event in stream]

    assert isinstance(stream, AsyncMeteredStream)
    assert dumps(metered) == dumps(plain)
    assert_matches_manifest(only_record(await arecords_of(memory_sink)), payload)


@pytest.mark.anyio
@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("payload", STREAMS)
async def test_async_manager_events_and_final_message(
    sse_server: SSEServer, memory_sink: MemorySink, anyio_backend: str, payload: str, way: str
) -> None:
    frames = sse_frames(load(payload), named=True)
    sse_server.reply(frames)
    sse_server.reply(frames)

    async with async_client(sse_server) as client:
        async with client.messages.stream(**REQUEST) as plain_stream:
            plain = [event async for event in plain_stream]
            plain_message = await plain_stream.get_final_message()
        async with await amanager_metered(client, way) as stream:
            metered = [event async for event in stream]
            message = await stream.get_final_message()

    assert isinstance(stream, AsyncMeteredStream)
    assert dumps(metered) == dumps(plain)
    assert message.model_dump() == plain_message.model_dump()
    assert_matches_manifest(only_record(await arecords_of(memory_sink)), payload)


@pytest.mark.anyio
async def test_async_manager_final_message_without_iterating(
    sse_server: SSEServer, memory_sink: MemorySink, anyio_backend: str
) -> None:
    payload = "anthropic_stream_basic.json"
    sse_server.reply(sse_frames(load(payload), named=True))

    async with (
        async_client(sse_server) as client,
        metered_stream(client.messages.stream(**REQUEST)) as stream,
    ):
        message = await stream.get_final_message()

    assert message.usage.output_tokens == 5
    assert_matches_manifest(only_record(await arecords_of(memory_sink)), payload)


@pytest.mark.anyio
async def test_async_manager_text_stream(
    sse_server: SSEServer, memory_sink: MemorySink, anyio_backend: str
) -> None:
    payload = "anthropic_stream_basic.json"
    sse_server.reply(sse_frames(load(payload), named=True))
    sse_server.reply(sse_frames(load(payload), named=True))

    async with async_client(sse_server) as client:
        async with client.messages.stream(**REQUEST) as plain_stream:
            plain_text = [text async for text in plain_stream.text_stream]
        async with metered_stream(client.messages.stream(**REQUEST)) as stream:
            text = [text async for text in stream.text_stream]

    assert text == plain_text
    assert_matches_manifest(only_record(await arecords_of(memory_sink)), payload)


@pytest.mark.anyio
async def test_async_concurrent_streams_recorded_apart(
    sse_server: SSEServer, memory_sink: MemorySink, anyio_backend: str
) -> None:
    for payload in STREAMS:
        sse_server.reply(sse_frames(load(payload), named=True))
    counts: dict[str, int] = {}

    async def read(name: str, stream: Any) -> None:
        counts[name] = 0
        async for _ in stream:
            counts[name] += 1
            await anyio.lowlevel.checkpoint()

    async with async_client(sse_server) as client:
        # Opened one after the other, so each request gets its own queued reply.
        streams = [
            metered_stream(await client.messages.create(**REQUEST, stream=True), name=payload)
            for payload in STREAMS
        ]
        async with anyio.create_task_group() as tasks:
            for payload, stream in zip(STREAMS, streams, strict=True):
                tasks.start_soon(read, payload, stream)

    records = {record.name: record for record in await arecords_of(memory_sink)}
    assert sorted(records) == sorted(STREAMS)
    for payload in STREAMS:
        assert counts[payload] > 0
        assert_matches_manifest(records[payload], payload)
