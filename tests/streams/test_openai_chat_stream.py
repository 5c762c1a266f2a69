"""OpenAI Chat Completions streams metered live, through the real `openai` clients."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from stream_support import (
    IGNORE_OPENAI_TRIO_WARNING,
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

from tokenmeter import metered_stream, metered_turn
from tokenmeter.streams import AsyncMeteredStream, MeteredStream
from tokenmeter.testing import MemorySink

pytestmark = IGNORE_OPENAI_TRIO_WARNING

USAGE_STREAMS = ["openai_chat_stream_include_usage.json", "openai_chat_stream_usage_not_last.json"]
NO_USAGE_STREAM = "openai_edge_chat_stream_no_usage.json"
WAYS = ["metered_stream", "metered_turn"]
REQUEST: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "What is the capital of France?"}],
    "stream": True,
}
INCLUDE_USAGE = {"stream_options": {"include_usage": True}}


def open_metered(client: openai.OpenAI, way: str, **options: Any) -> Any:
    """Start a chat stream wrapped by `metered_stream` or returned by a `metered_turn` step."""
    if way == "metered_stream":
        return metered_stream(client.chat.completions.create(**REQUEST, **options), agent="chat")

    @metered_turn(agent="chat")
    def step() -> Any:
        return client.chat.completions.create(**REQUEST, **options)

    return step()


async def aopen_metered(client: openai.AsyncOpenAI, way: str, **options: Any) -> Any:
    if way == "metered_stream":
        stream = await client.chat.completions.create(**REQUEST, **options)
        return metered_stream(stream, agent="chat")

    @metered_turn(agent="chat")
    async def step() -> Any:
        return await client.chat.completions.create(**REQUEST, **options)

    return await step()


def async_client(server: SSEServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key="test-key", base_url=f"{server.base_url}/v1", max_retries=0)


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("payload", USAGE_STREAMS)
def test_sync_chunks_match_unwrapped_run(
    sse_server: SSEServer,
    openai_client: openai.OpenAI,
    memory_sink: MemorySink,
    payload: str,
    way: str,
) -> None:
    frames = sse_frames(load(payload), named=False)
    sse_server.reply(frames)
    sse_server.reply(frames)

    plain = list(openai_client.chat.completions.create(**REQUEST, **INCLUDE_USAGE))
    stream = open_metered(openai_client, way, **INCLUDE_USAGE)
    metered = list(stream)

    assert isinstance(stream, MeteredStream)
    assert [type(chunk) for chunk in metered] == [type(chunk) for chunk in plain]
    assert dumps(metered) == dumps(plain)


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("payload", USAGE_STREAMS)
def test_sync_record_matches_manifest(
    sse_server: SSEServer,
    openai_client: openai.OpenAI,
    memory_sink: MemorySink,
    payload: str,
    way: str,
) -> None:
    events = load(payload)
    model = events[0]["model"]
    sse_server.reply(sse_frames(events, named=False))

    for _ in open_metered(openai_client, way, **INCLUDE_USAGE):
        pass

    record = only_record(records_of(memory_sink))
    assert record.status == "ok"
    assert record.agent == "chat"
    assert record.rounds == 1
    assert record.unmeasured_rounds == 0
    assert record.model == model
    assert record.provider == "openai"
    assert record_usage(record) == expected_usage(payload)
    assert record.cost_usd == expected_cost(events, model, "openai")


@pytest.mark.parametrize("way", WAYS)
def test_sync_request_body_unchanged(
    sse_server: SSEServer, openai_client: openai.OpenAI, memory_sink: MemorySink, way: str
) -> None:
    frames = sse_frames(load(NO_USAGE_STREAM), named=False)
    sse_server.reply(frames)
    sse_server.reply(frames)

    list(openai_client.chat.completions.create(**REQUEST))
    list(open_metered(openai_client, way))

    plain, metered = sse_server.requests
    assert "stream_options" not in metered.body
    assert metered.body == plain.body
    assert metered.path == plain.path == "/v1/chat/completions"


@pytest.mark.parametrize("way", WAYS)
def test_sync_stream_without_usage_unmeasured(
    sse_server: SSEServer, openai_client: openai.OpenAI, memory_sink: MemorySink, way: str
) -> None:
    sse_server.reply(sse_frames(load(NO_USAGE_STREAM), named=False))

    chunks = list(open_metered(openai_client, way))

    record = only_record(records_of(memory_sink))
    assert len(chunks) == 3
    assert record.status == "ok"
    assert record.rounds == 1
    assert record.unmeasured_rounds == 1
    assert record.input_tokens is None
    assert record.output_tokens is None
    assert record.cost_usd is None
    assert record.price_status == "unmeasured"
    assert record.model == "gpt-4o-mini"


def test_sync_wrapper_delegates_attributes(
    sse_server: SSEServer, openai_client: openai.OpenAI, memory_sink: MemorySink
) -> None:
    sse_server.reply(sse_frames(load(NO_USAGE_STREAM), named=False))
    raw = openai_client.chat.completions.create(**REQUEST)

    stream = metered_stream(raw)

    assert stream.response is raw.response
    assert stream.response.status_code == 200
    stream.close()
    assert raw.response.is_closed


@pytest.mark.anyio
@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("payload", USAGE_STREAMS)
async def test_async_chunks_match_unwrapped_run(
    sse_server: SSEServer, memory_sink: MemorySink, anyio_backend: str, payload: str, way: str
) -> None:
    frames = sse_frames(load(payload), named=False)
    sse_server.reply(frames)
    sse_server.reply(frames)

    async with async_client(sse_server) as client:
        plain = [chunk async for chunk in await client.chat.completions.create(**REQUEST)]
        stream = await aopen_metered(client, way, **INCLUDE_USAGE)
        metered = [chunk async for chunk in stream]

    assert isinstance(stream, AsyncMeteredStream)
    assert [type(chunk) for chunk in metered] == [type(chunk) for chunk in plain]
    assert dumps(metered) == dumps(plain)


@pytest.mark.anyio
@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("payload", USAGE_STREAMS)
async def test_async_record_matches_manifest(
    sse_server: SSEServer, memory_sink: MemorySink, anyio_backend: str, payload: str, way: str
) -> None:
    events = load(payload)
    model = events[0]["model"]
    sse_server.reply(sse_frames(events, named=False))

    async with async_client(sse_server) as client:
        async for _ in await aopen_metered(client, way, **INCLUDE_USAGE):
            pass

    record = only_record(await arecords_of(memory_sink))
    assert record.status == "ok"
    assert record.agent == "chat"
    assert record.rounds == 1
    assert record.model == model
    assert record.provider == "openai"
    assert record_usage(record) == expected_usage(payload)
    assert record.cost_usd == expected_cost(events, model, "openai")


@pytest.mark.anyio
@pytest.mark.parametrize("way", WAYS)
async def test_async_stream_without_usage_unmeasured(
    sse_server: SSEServer, memory_sink: MemorySink, anyio_backend: str, way: str
) -> None:
    sse_server.reply(sse_frames(load(NO_USAGE_STREAM), named=False))

    async with async_client(sse_server) as client:
        chunks = [chunk async for chunk in await aopen_metered(client, way)]

    record = only_record(await arecords_of(memory_sink))
    body = sse_server.requests[0].body
    assert len(chunks) == 3
    assert "stream_options" not in body
    assert record.status == "ok"
    assert record.unmeasured_rounds == 1
    assert record.input_tokens is None
    assert record.output_tokens is None


@pytest.mark.parametrize("payload", USAGE_STREAMS)
def test_stream_helper_events_metered(
    sse_server: SSEServer, openai_client: openai.OpenAI, memory_sink: MemorySink, payload: str
) -> None:
    frames = sse_frames(load(payload), named=False)
    sse_server.reply(frames)
    sse_server.reply(frames)
    helper_request = {key: value for key, value in REQUEST.items() if key != "stream"}

    with openai_client.chat.completions.stream(**helper_request, **INCLUDE_USAGE) as plain_stream:
        plain = list(plain_stream)
        plain_completion = plain_stream.get_final_completion()
    manager = openai_client.chat.completions.stream(**helper_request, **INCLUDE_USAGE)
    with metered_stream(manager) as stream:
        metered = list(stream)
        completion = stream.get_final_completion()

    assert dumps(metered) == dumps(plain)
    # NOTE: openai 3.60's helper loses the usage when a chunk follows the usage chunk, so the
    # final completion of the usage-not-last stream has `usage=None` in both runs.
    assert completion.model_dump() == plain_completion.model_dump()
    record = only_record(records_of(memory_sink))
    assert record.status == "ok"
    assert record_usage(record) == expected_usage(payload)


def test_stream_helper_final_completion_without_iterating(
    sse_server: SSEServer, openai_client: openai.OpenAI, memory_sink: MemorySink
) -> None:
    payload = USAGE_STREAMS[1]
    sse_server.reply(sse_frames(load(payload), named=False))
    helper_request = {key: value for key, value in REQUEST.items() if key != "stream"}

    @metered_turn(agent="chat")
    def step() -> Any:
        return openai_client.chat.completions.stream(**helper_request, **INCLUDE_USAGE)

    with step() as stream:
        completion = stream.get_final_completion()

    assert completion.choices[0].message.content == "Paris."
    record = only_record(records_of(memory_sink))
    assert record.status == "ok"
    assert record.agent == "chat"
    assert record_usage(record) == expected_usage(payload)


def test_record_carries_step_options(
    sse_server: SSEServer, openai_client: openai.OpenAI, memory_sink: MemorySink
) -> None:
    sse_server.reply(sse_frames(load(USAGE_STREAMS[0]), named=False))

    stream = metered_stream(
        openai_client.chat.completions.create(**REQUEST, **INCLUDE_USAGE),
        agent="writer",
        name="draft",
        tags={"team": "docs"},
        metadata={"ticket": 7},
    )
    for _ in stream:
        pass

    record = only_record(records_of(memory_sink))
    assert record.agent == "writer"
    assert record.name == "draft"
    assert record.tags == ["team:docs"]
    assert record.metadata == {"ticket": 7}
    assert record.duration_ms is not None
    assert record.duration_ms > 0
