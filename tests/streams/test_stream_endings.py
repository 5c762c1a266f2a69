"""How a metered stream ends: read to the end, closed early, failed, cancelled or collected."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import anthropic
import anyio
import openai
import pytest
from stream_support import (
    IGNORE_OPENAI_TRIO_WARNING,
    SSEServer,
    arecords_of,
    load,
    only_record,
    records_of,
    sse_frames,
)

from tokenmeter import metered_stream, metered_turn
from tokenmeter.testing import MemorySink

pytestmark = IGNORE_OPENAI_TRIO_WARNING

OPENAI_STREAM = "openai_chat_stream_include_usage.json"
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


class StreamBroke(Exception):
    """Raised by a test stream half way."""


def chunks_then_error(error: BaseException) -> Iterator[dict[str, Any]]:
    yield from load(OPENAI_STREAM)[:2]
    raise error


def error_of(read: Callable[[], object]) -> Exception:
    """Return the exception that reading a stream raised, so two runs can be compared."""
    try:
        read()
    except Exception as error:
        return error
    raise AssertionError("the stream ended without an error")


async def async_error_of(read: Callable[[], Awaitable[object]]) -> Exception:
    try:
        await read()
    except Exception as error:
        return error
    raise AssertionError("the stream ended without an error")


def async_openai(server: SSEServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key="test-key", base_url=f"{server.base_url}/v1", max_retries=0)


def async_anthropic(server: SSEServer) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(api_key="test-key", base_url=server.base_url, max_retries=0)


def test_close_after_few_chunks_incomplete(
    sse_server: SSEServer, openai_client: openai.OpenAI, memory_sink: MemorySink
) -> None:
    sse_server.reply(sse_frames(load(OPENAI_STREAM), named=False))
    raw = openai_client.chat.completions.create(**OPENAI_REQUEST)
    stream = metered_stream(raw)

    for number, _ in enumerate(stream):
        if number == 2:
            break
    stream.close()

    record = only_record(records_of(memory_sink))
    assert raw.response.is_closed
    assert record.status == "incomplete"
    assert record.error_type is None
    assert record.rounds == 1
    assert record.unmeasured_rounds == 1
    assert record.input_tokens is None


def test_close_keeps_usage_that_arrived(
    sse_server: SSEServer, anthropic_client: anthropic.Anthropic, memory_sink: MemorySink
) -> None:
    sse_server.reply(sse_frames(load(ANTHROPIC_STREAM), named=True))
    stream = metered_stream(anthropic_client.messages.create(**ANTHROPIC_REQUEST, stream=True))

    first = next(stream)
    stream.close()

    record = only_record(records_of(memory_sink))
    assert first.type == "message_start"
    assert record.status == "incomplete"
    assert record.input_tokens == 20
    assert record.output_tokens == 1
    assert record.cost_usd is not None


def test_close_after_end_stays_ok(
    sse_server: SSEServer, openai_client: openai.OpenAI, memory_sink: MemorySink
) -> None:
    sse_server.reply(sse_frames(load(OPENAI_STREAM), named=False))
    stream = metered_stream(openai_client.chat.completions.create(**OPENAI_REQUEST))

    for _ in stream:
        pass
    stream.close()
    with stream:
        pass

    record = only_record(records_of(memory_sink))
    assert record.status == "ok"
    assert record.input_tokens == 53


def test_with_block_left_early_incomplete(
    sse_server: SSEServer, anthropic_client: anthropic.Anthropic, memory_sink: MemorySink
) -> None:
    sse_server.reply(sse_frames(load(ANTHROPIC_STREAM), named=True))

    with metered_stream(anthropic_client.messages.stream(**ANTHROPIC_REQUEST)) as stream:
        for _ in stream:
            break

    record = only_record(records_of(memory_sink))
    assert stream.response.is_closed
    assert record.status == "incomplete"
    assert record.input_tokens == 20


def test_returned_stream_left_early_incomplete(
    sse_server: SSEServer, openai_client: openai.OpenAI, memory_sink: MemorySink
) -> None:
    sse_server.reply(sse_frames(load(OPENAI_STREAM), named=False))

    @metered_turn(agent="chat")
    def step() -> Any:
        return openai_client.chat.completions.create(**OPENAI_REQUEST)

    with step() as stream:
        next(stream)

    record = only_record(records_of(memory_sink))
    assert record.status == "incomplete"
    assert record.agent == "chat"


def test_error_in_with_block_recorded(
    sse_server: SSEServer, anthropic_client: anthropic.Anthropic, memory_sink: MemorySink
) -> None:
    sse_server.reply(sse_frames(load(ANTHROPIC_STREAM), named=True))

    def read_first_then_fail() -> None:
        with metered_stream(anthropic_client.messages.stream(**ANTHROPIC_REQUEST)) as stream:
            next(stream)
            raise StreamBroke

    with pytest.raises(StreamBroke):
        read_first_then_fail()

    record = only_record(records_of(memory_sink))
    assert record.status == "error"
    assert record.error_type == "StreamBroke"


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_dropped_connection_raises_sdk_error(
    sse_server: SSEServer,
    openai_client: openai.OpenAI,
    anthropic_client: anthropic.Anthropic,
    memory_sink: MemorySink,
    provider: str,
) -> None:
    def start() -> Any:
        if provider == "openai":
            return openai_client.chat.completions.create(**OPENAI_REQUEST)
        return anthropic_client.messages.create(**ANTHROPIC_REQUEST, stream=True)

    named = provider == "anthropic"
    frames = sse_frames(
        load(OPENAI_STREAM if provider == "openai" else ANTHROPIC_STREAM), named=named
    )
    sse_server.reply(frames, drop_after=3)
    sse_server.reply(frames, drop_after=3)

    plain_chunks: list[Any] = []
    plain = error_of(lambda: plain_chunks.extend(start()))
    metered_chunks: list[Any] = []
    wrapped = error_of(lambda: metered_chunks.extend(metered_stream(start())))

    record = only_record(records_of(memory_sink))
    assert type(wrapped) is type(plain)
    assert len(metered_chunks) == len(plain_chunks) > 0
    assert record.status == "error"
    assert record.error_type == type(plain).__name__


def test_stream_exception_is_same_object(memory_sink: MemorySink) -> None:
    error = StreamBroke("connection lost")

    with pytest.raises(StreamBroke) as raised:
        for _ in metered_stream(chunks_then_error(error), provider="openai"):
            pass

    record = only_record(records_of(memory_sink))
    assert raised.value is error
    assert record.status == "error"
    assert record.error_type == "StreamBroke"


def test_interrupt_recorded_incomplete(memory_sink: MemorySink) -> None:
    with pytest.raises(KeyboardInterrupt):
        for _ in metered_stream(chunks_then_error(KeyboardInterrupt()), provider="openai"):
            pass

    record = only_record(records_of(memory_sink))
    assert record.status == "incomplete"
    assert record.error_type == "KeyboardInterrupt"


def test_collected_stream_incomplete(memory_sink: MemorySink) -> None:
    stream = metered_stream(iter(load(OPENAI_STREAM)), provider="openai")
    next(stream)

    del stream
    gc.collect()

    record = only_record(records_of(memory_sink))
    assert record.status == "incomplete"
    assert record.unmeasured_rounds == 1


def test_collected_unstarted_stream_incomplete(memory_sink: MemorySink) -> None:
    stream = metered_stream(iter(load(OPENAI_STREAM)), provider="openai")

    del stream
    gc.collect()

    record = only_record(records_of(memory_sink))
    assert record.status == "incomplete"


@pytest.mark.anyio
async def test_async_aclose_after_few_chunks_incomplete(
    sse_server: SSEServer, memory_sink: MemorySink, anyio_backend: str
) -> None:
    sse_server.reply(sse_frames(load(OPENAI_STREAM), named=False))

    async with async_openai(sse_server) as client:
        raw = await client.chat.completions.create(**OPENAI_REQUEST)
        stream = metered_stream(raw)
        received = 0
        async for _ in stream:
            received += 1
            if received == 2:
                break
        await stream.aclose()

    record = only_record(await arecords_of(memory_sink))
    assert raw.response.is_closed
    assert record.status == "incomplete"
    assert record.unmeasured_rounds == 1


@pytest.mark.anyio
async def test_async_with_block_left_early_incomplete(
    sse_server: SSEServer, memory_sink: MemorySink, anyio_backend: str
) -> None:
    sse_server.reply(sse_frames(load(ANTHROPIC_STREAM), named=True))

    async with (
        async_anthropic(sse_server) as client,
        metered_stream(client.messages.stream(**ANTHROPIC_REQUEST)) as stream,
    ):
        async for _ in stream:
            break

    record = only_record(await arecords_of(memory_sink))
    assert stream.response.is_closed
    assert record.status == "incomplete"
    assert record.input_tokens == 20


@pytest.mark.anyio
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_async_dropped_connection_raises_sdk_error(
    sse_server: SSEServer, memory_sink: MemorySink, anyio_backend: str, provider: str
) -> None:
    named = provider == "anthropic"
    frames = sse_frames(
        load(OPENAI_STREAM if provider == "openai" else ANTHROPIC_STREAM), named=named
    )
    sse_server.reply(frames, drop_after=3)
    sse_server.reply(frames, drop_after=3)

    async with async_openai(sse_server) as openai_client, async_anthropic(sse_server) as client:

        async def start() -> Any:
            if provider == "openai":
                return await openai_client.chat.completions.create(**OPENAI_REQUEST)
            return await client.messages.create(**ANTHROPIC_REQUEST, stream=True)

        async def read_plain() -> None:
            async for _ in await start():
                pass

        async def read_metered() -> None:
            async for _ in metered_stream(await start()):
                pass

        plain = await async_error_of(read_plain)
        wrapped = await async_error_of(read_metered)

    record = only_record(await arecords_of(memory_sink))
    assert type(wrapped) is type(plain)
    assert record.status == "error"
    assert record.error_type == type(plain).__name__


@pytest.mark.anyio
async def test_async_cancelled_mid_stream_incomplete(
    sse_server: SSEServer, memory_sink: MemorySink, anyio_backend: str
) -> None:
    sse_server.reply(sse_frames(load(ANTHROPIC_STREAM), named=True), stall_after=2)

    async with async_anthropic(sse_server) as client:
        stream = metered_stream(await client.messages.create(**ANTHROPIC_REQUEST, stream=True))
        received = 0
        with anyio.CancelScope() as scope:
            async for _ in stream:
                received += 1
                if received == 2:
                    scope.cancel()
        await stream.aclose()

    record = only_record(await arecords_of(memory_sink))
    assert scope.cancelled_caught
    assert received == 2
    assert record.status == "incomplete"
    assert record.error_type == ("CancelledError" if anyio_backend == "asyncio" else "Cancelled")
    assert record.input_tokens == 20


@pytest.mark.anyio
async def test_async_generator_stream_exception_is_same_object(
    memory_sink: MemorySink, anyio_backend: str
) -> None:
    error = StreamBroke("connection lost")

    async def chunks() -> AsyncIterator[dict[str, Any]]:
        for chunk in load(OPENAI_STREAM)[:2]:
            yield chunk
        raise error

    with pytest.raises(StreamBroke) as raised:
        async for _ in metered_stream(chunks(), provider="openai"):
            pass

    record = only_record(await arecords_of(memory_sink))
    assert raised.value is error
    assert record.status == "error"
