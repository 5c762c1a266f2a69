"""OpenAI-compatible chat streams (Groq, Mistral, DeepSeek, OpenRouter) through their SDKs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import groq
import openai
import pytest
from mistralai.client import Mistral
from stream_support import (
    SSEServer,
    expected_cost,
    expected_usage,
    load,
    only_record,
    record_usage,
    records_of,
    sse_frames,
)

from tokenmeter import metered_turn
from tokenmeter.streams import MeteredStream
from tokenmeter.testing import MemorySink

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


def groq_stream(server: SSEServer, model: str) -> Any:
    client = groq.Groq(api_key="test-key", base_url=server.base_url, max_retries=0)
    return client.chat.completions.create(model=model, messages=MESSAGES, stream=True)


def mistral_stream(server: SSEServer, model: str) -> Any:
    client = Mistral(api_key="test-key", server_url=server.base_url)
    return client.chat.stream(model=model, messages=MESSAGES)


def openai_stream(server: SSEServer, model: str) -> Any:
    client = openai.OpenAI(api_key="test-key", base_url=f"{server.base_url}/v1", max_retries=0)
    return client.chat.completions.create(model=model, messages=MESSAGES, stream=True)


CASES = [
    pytest.param(groq_stream, "groq_stream_usage_and_x_groq.json", None, "groq", id="groq"),
    pytest.param(
        mistral_stream, "mistral_stream_usage_last_chunk.json", "mistral", "mistral", id="mistral"
    ),
    pytest.param(
        openai_stream,
        "deepseek_stream_usage_on_last_content_chunk.json",
        "deepseek",
        "deepseek",
        id="deepseek",
    ),
    pytest.param(
        openai_stream,
        "openrouter_stream_usage_chunk.json",
        "openrouter",
        "openrouter",
        id="openrouter",
    ),
]


@pytest.mark.parametrize(("start", "payload", "given", "provider"), CASES)
def test_returned_sdk_stream_metered(
    sse_server: SSEServer,
    memory_sink: MemorySink,
    start: Callable[[SSEServer, str], Any],
    payload: str,
    given: str | None,
    provider: str,
) -> None:
    events = load(payload)
    model = events[0]["model"]
    sse_server.reply(sse_frames(events, named=False))

    @metered_turn(provider=given)
    def step() -> Any:
        return start(sse_server, model)

    stream = step()
    chunks = list(stream)

    assert isinstance(stream, MeteredStream)
    assert len(chunks) == len([event for event in events if event != "[DONE]"])
    record = only_record(records_of(memory_sink))
    assert record.status == "ok"
    assert record.provider == provider
    assert record.model == model
    assert record_usage(record) == expected_usage(payload)
    assert record.cost_usd == expected_cost(events, model, provider)
