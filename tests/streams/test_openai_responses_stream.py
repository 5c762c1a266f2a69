"""OpenAI Responses API streams metered live: usage arrives only on `response.completed`."""

from __future__ import annotations

import copy
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

from tokenmeter import UsageRecord, metered_stream, metered_turn
from tokenmeter.testing import MemorySink

pytestmark = IGNORE_OPENAI_TRIO_WARNING

RESPONSES = ["openai_responses_reasoning_web_search.json", "openai_responses_code_interpreter.json"]
MODEL = "gpt-5-2025-08-07"
REQUEST: dict[str, Any] = {"model": "gpt-5", "input": "What is the weather today?"}


def responses_events(name: str) -> list[dict[str, Any]]:
    """Build the SSE events of a Responses stream that ends with the recorded response.

    The events follow the API's order: `response.created` and `response.in_progress` carry
    the response without output or usage, each output item is added and done, the message
    text arrives as deltas, and `response.completed` carries the recorded response.
    """
    final = load(name)
    started = {**copy.deepcopy(final), "status": "in_progress", "output": [], "usage": None}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": started},
        {"type": "response.in_progress", "response": started},
    ]
    for index, item in enumerate(final["output"]):
        if item["type"] != "message":
            events.append(
                {"type": "response.output_item.added", "output_index": index, "item": item}
            )
            events.append(
                {"type": "response.output_item.done", "output_index": index, "item": item}
            )
            continue
        events.append(
            {
                "type": "response.output_item.added",
                "output_index": index,
                "item": {**item, "status": "in_progress", "content": []},
            }
        )
        for content_index, part in enumerate(item["content"]):
            where = {"item_id": item["id"], "output_index": index, "content_index": content_index}
            empty = {**part, "text": "", "annotations": []}
            events.append({"type": "response.content_part.added", **where, "part": empty})
            text = part["text"]
            for start in range(0, len(text), 40):
                delta = text[start : start + 40]
                events.append(
                    {"type": "response.output_text.delta", **where, "delta": delta, "logprobs": []}
                )
            events.append(
                {"type": "response.output_text.done", **where, "text": text, "logprobs": []}
            )
            events.append({"type": "response.content_part.done", **where, "part": part})
        events.append({"type": "response.output_item.done", "output_index": index, "item": item})
    events.append({"type": "response.completed", "response": final})
    for number, event in enumerate(events):
        event["sequence_number"] = number
    return events


def assert_matches_manifest(record: UsageRecord, payload: str) -> None:
    assert record.status == "ok"
    assert record.rounds == 1
    assert record.unmeasured_rounds == 0
    assert record.model == MODEL
    assert record.provider == "openai"
    assert record_usage(record) == expected_usage(payload)
    assert record.cost_usd == expected_cost([load(payload)], MODEL, "openai")


def async_client(server: SSEServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key="test-key", base_url=f"{server.base_url}/v1", max_retries=0)


@pytest.mark.parametrize("way", ["metered_stream", "metered_turn"])
@pytest.mark.parametrize("payload", RESPONSES)
def test_create_events_and_record(
    sse_server: SSEServer,
    openai_client: openai.OpenAI,
    memory_sink: MemorySink,
    payload: str,
    way: str,
) -> None:
    frames = sse_frames(responses_events(payload), named=True)
    sse_server.reply(frames)
    sse_server.reply(frames)

    @metered_turn
    def step() -> Any:
        return openai_client.responses.create(**REQUEST, stream=True)

    plain = list(openai_client.responses.create(**REQUEST, stream=True))
    if way == "metered_stream":
        metered = list(metered_stream(openai_client.responses.create(**REQUEST, stream=True)))
    else:
        metered = list(step())

    assert dumps(metered) == dumps(plain)
    assert metered[-1].type == "response.completed"
    assert sse_server.requests[1].path == "/v1/responses"
    assert_matches_manifest(only_record(records_of(memory_sink)), payload)


@pytest.mark.parametrize("payload", RESPONSES)
def test_stream_helper_final_response(
    sse_server: SSEServer, openai_client: openai.OpenAI, memory_sink: MemorySink, payload: str
) -> None:
    sse_server.reply(sse_frames(responses_events(payload), named=True))

    with metered_stream(openai_client.responses.stream(**REQUEST)) as stream:
        response = stream.get_final_response()

    assert response.usage is not None
    assert response.usage.input_tokens == expected_usage(payload).input_tokens
    assert_matches_manifest(only_record(records_of(memory_sink)), payload)


def test_closed_before_completed_unmeasured(
    sse_server: SSEServer, openai_client: openai.OpenAI, memory_sink: MemorySink
) -> None:
    sse_server.reply(sse_frames(responses_events(RESPONSES[0]), named=True))
    stream = metered_stream(openai_client.responses.create(**REQUEST, stream=True))

    events = [next(stream) for _ in range(4)]
    stream.close()

    record = only_record(records_of(memory_sink))
    assert events[0].type == "response.created"
    assert record.status == "incomplete"
    assert record.unmeasured_rounds == 1
    assert record.input_tokens is None
    assert record.model == MODEL


@pytest.mark.anyio
@pytest.mark.parametrize("payload", RESPONSES)
async def test_async_create_events_and_record(
    sse_server: SSEServer, memory_sink: MemorySink, anyio_backend: str, payload: str
) -> None:
    frames = sse_frames(responses_events(payload), named=True)
    sse_server.reply(frames)
    sse_server.reply(frames)

    async with async_client(sse_server) as client:
        plain = [event async for event in await client.responses.create(**REQUEST, stream=True)]
        stream = metered_stream(await client.responses.create(**REQUEST, stream=True))
        metered = [event async for event in stream]

    assert dumps(metered) == dumps(plain)
    assert_matches_manifest(only_record(await arecords_of(memory_sink)), payload)


@pytest.mark.anyio
async def test_async_stream_helper_final_response(
    sse_server: SSEServer, memory_sink: MemorySink, anyio_backend: str
) -> None:
    payload = RESPONSES[0]
    sse_server.reply(sse_frames(responses_events(payload), named=True))

    async with async_client(sse_server) as client:

        @metered_turn
        async def step() -> Any:
            return client.responses.stream(**REQUEST)

        async with await step() as stream:
            response = await stream.get_final_response()

    assert response.usage is not None
    assert_matches_manifest(only_record(await arecords_of(memory_sink)), payload)
