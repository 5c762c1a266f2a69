"""Stream usage: where each provider puts it, running totals, and streams without usage."""

from __future__ import annotations

import json
from typing import Any

import pytest
from extract_payloads import load

from tokenmeter.extract import (
    MalformedUsage,
    StreamReader,
    UnrecognizedResponse,
    extract_stream_usage,
    stream_reader,
)
from tokenmeter.usage import Usage


def _chat_chunk(usage: dict[str, Any] | None, choices: list[Any] | None = None) -> dict[str, Any]:
    return {
        "object": "chat.completion.chunk",
        "model": "gpt-4o-mini",
        "choices": [] if choices is None else choices,
        "usage": usage,
    }


def test_anthropic_delta_replaces_start_output() -> None:
    events = [
        {
            "type": "message_start",
            "message": {
                "type": "message",
                "model": "claude-sonnet-4-5",
                "usage": {"input_tokens": 30, "output_tokens": 1},
            },
        },
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "x"}},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": 42},
        },
        {"type": "message_stop"},
    ]

    assert extract_stream_usage(events) == Usage(30, 42)


def test_anthropic_delta_input_replaces_first_pass_input() -> None:
    usage = extract_stream_usage(load("anthropic_stream_pause_turn_thinking.json"))

    assert usage is not None
    assert usage.input_tokens == 404500
    assert usage.details["web_searches"] == 10


def test_anthropic_start_only_reads_no_usage() -> None:
    events = [
        {
            "type": "message_start",
            "message": {"type": "message", "model": "claude-x", "usage": {"input_tokens": 30}},
        },
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    ]

    reader = stream_reader()
    for event in events:
        reader.feed(event)
    reading = reader.finish()

    assert reading.usage is None
    assert reading.model == "claude-x"


def test_anthropic_interrupted_stream_keeps_start_usage() -> None:
    start = load("anthropic_stream_basic.json")[0]

    assert extract_stream_usage([start]) == Usage(20, 1)


def test_anthropic_sdk_helper_message_stop_read() -> None:
    anthropic_types = pytest.importorskip("anthropic.types")
    from anthropic._models import construct_type

    message = construct_type(type_=anthropic_types.Message, value=load("anthropic_cache_read.json"))
    stop = {"type": "message_stop", "message": message}

    assert extract_stream_usage([stop]) == Usage(1114, 406, cache_read_tokens=1111)


def test_openai_usage_chunk_not_last_read() -> None:
    usage = extract_stream_usage(load("openai_chat_stream_usage_not_last.json"))

    assert usage == Usage(13, 11)


def test_openai_stream_without_usage_reads_none() -> None:
    reader = stream_reader()
    for event in load("openai_edge_chat_stream_no_usage.json"):
        reader.feed(event)
    reading = reader.finish()

    assert reading.usage is None
    assert reading.model == "gpt-4o-mini"
    assert reading.provider is None


def test_vllm_usage_chunk_with_null_choices_read() -> None:
    events = [
        _chat_chunk(None, [{"index": 0, "delta": {"content": "hi"}}]),
        {
            "object": "chat.completion.chunk",
            "model": "m",
            "choices": None,
            "usage": {"prompt_tokens": 3, "completion_tokens": 1},
        },
    ]

    assert extract_stream_usage(events) == Usage(3, 1)


def test_chunks_are_not_summed() -> None:
    events = [_chat_chunk({"prompt_tokens": 10, "completion_tokens": n}) for n in (1, 2, 3)]

    assert extract_stream_usage(events) == Usage(10, 3)


def test_responses_completed_event_read() -> None:
    response = load("openai_responses_reasoning_web_search.json")
    events = [
        {
            "type": "response.created",
            "response": {**response, "status": "in_progress", "usage": None},
        },
        {"type": "response.output_text.delta", "delta": "Hi"},
        {"type": "response.completed", "response": response},
    ]

    reader = stream_reader()
    for event in events:
        reader.feed(event)
    reading = reader.finish()

    assert reading.usage is not None
    assert reading.usage.input_tokens == 9299
    assert reading.usage.details["web_searches"] == 1
    assert reading.model == "gpt-5-2025-08-07"


@pytest.mark.parametrize("final_type", ["response.incomplete", "response.failed"])
def test_responses_incomplete_or_failed_event_read(final_type: str) -> None:
    response = {
        "object": "response",
        "model": "gpt-5",
        "status": "incomplete",
        "output": [],
        "usage": {
            "input_tokens": 50,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 4,
            "output_tokens_details": {"reasoning_tokens": 4},
            "total_tokens": 54,
        },
    }

    usage = extract_stream_usage([{"type": final_type, "response": response}])

    assert usage == Usage(50, 4, reasoning_tokens=4)


def test_responses_stream_without_final_event_reads_none() -> None:
    events = [{"type": "response.created", "response": {"model": "gpt-5", "usage": None}}]

    assert extract_stream_usage(events) is None


def test_gemini_last_chunk_taken_verbatim() -> None:
    usage = extract_stream_usage(load("gemini_stream_prompt_count_changes.json"))

    assert usage == Usage(13, 8)


def test_xai_grpc_running_totals_not_summed() -> None:
    usage = extract_stream_usage(load("xai_grpc_stream_cumulative_usage.json"))

    assert usage == Usage(165, 161, cache_read_tokens=151, reasoning_tokens=121)


def test_xai_sdk_stream_pairs_read() -> None:
    pytest.importorskip("xai_sdk")
    from google.protobuf import json_format
    from xai_sdk.chat import Chunk, Response
    from xai_sdk.proto.v6 import chat_pb2

    response = Response(
        chat_pb2.GetChatCompletionResponse(outputs=[chat_pb2.CompletionOutput()]), 0
    )
    reader = stream_reader()
    for data in load("xai_grpc_stream_cumulative_usage.json"):
        chunk = json_format.ParseDict(
            data, chat_pb2.GetChatCompletionChunk(), ignore_unknown_fields=True
        )
        # The same steps as xai_sdk.sync.chat.Chat.stream, which yields (response, chunk).
        response.process_chunk(chunk)
        reader.feed((response, Chunk(chunk, 0)))
    reading = reader.finish()

    assert reading.usage == Usage(165, 161, cache_read_tokens=151, reasoning_tokens=121)
    assert reading.model == "grok-4-fast-reasoning"


def test_deepseek_usage_on_last_content_chunk_read() -> None:
    usage = extract_stream_usage(load("deepseek_stream_usage_on_last_content_chunk.json"))

    assert usage == Usage(6, 212, reasoning_tokens=198)


def test_groq_usage_only_in_x_groq_read() -> None:
    events = [
        {"object": "chat.completion.chunk", "model": "llama", "choices": [], "x_groq": {"id": "r"}},
        {
            "object": "chat.completion.chunk",
            "model": "llama",
            "choices": [],
            "x_groq": {"id": "r", "usage": {"prompt_tokens": 9, "completion_tokens": 4}},
        },
    ]

    reader = stream_reader()
    for event in events:
        reader.feed(event)
    reading = reader.finish()

    assert reading.usage == Usage(9, 4)
    assert reading.provider == "groq"


def test_groq_duplicate_usage_counted_once() -> None:
    usage = extract_stream_usage(load("groq_stream_usage_and_x_groq.json"))

    assert usage == Usage(304, 49, reasoning_tokens=23)


def test_bedrock_metadata_event_read() -> None:
    reader = stream_reader()
    for event in load("bedrock_converse_stream.json"):
        reader.feed(event)
    reading = reader.finish()

    assert reading.usage == Usage(13, 82)
    assert reading.provider == "bedrock"


def test_sse_data_lines_read() -> None:
    lines = [
        f"data: {json.dumps(event)}" for event in load("openai_chat_stream_include_usage.json")
    ]
    lines.insert(0, ": OPENROUTER PROCESSING")

    assert extract_stream_usage(lines) == Usage(53, 15)


def test_feed_never_raises_on_unknown_event() -> None:
    reader = StreamReader()

    reader.feed(42)
    reader.feed("not json")
    reader.feed({"what": "ever"})

    assert isinstance(reader.problem, UnrecognizedResponse)


def test_finish_reads_none_when_no_event_recognized() -> None:
    reader = StreamReader()
    reader.feed({"what": "ever"})

    assert reader.finish().usage is None
    assert isinstance(reader.problem, UnrecognizedResponse)
    assert "matches no supported provider stream" in str(reader.problem)


def test_text_chunks_read_no_usage() -> None:
    reader = StreamReader()
    for text in ("Hello", " world"):
        reader.feed(text)

    assert reader.finish().usage is None


def test_finish_raises_on_malformed_usage() -> None:
    reader = StreamReader()
    reader.feed(_chat_chunk({"prompt_tokens": -1, "completion_tokens": 1}))

    with pytest.raises(MalformedUsage, match="negative"):
        reader.finish()


def test_empty_stream_reads_none() -> None:
    assert StreamReader().finish().usage is None


def test_extract_stream_usage_logs_unknown_stream(caplog: pytest.LogCaptureFixture) -> None:
    assert extract_stream_usage([{"what": "ever"}]) is None

    assert "matches no supported provider stream" in caplog.text


def test_unknown_event_after_usage_keeps_usage() -> None:
    reader = StreamReader()
    reader.feed(_chat_chunk({"prompt_tokens": 2, "completion_tokens": 1}))
    reader.feed(12345)

    assert reader.finish().usage == Usage(2, 1)


def test_given_provider_applies_to_stream() -> None:
    chunk = _chat_chunk(
        {
            "prompt_tokens": 5,
            "completion_tokens": 2,
            "completion_tokens_details": {"reasoning_tokens": 1},
        }
    )

    reader = stream_reader("xai")
    reader.feed(chunk)
    reading = reader.finish()

    assert reading.usage == Usage(5, 3, reasoning_tokens=1)
    assert reading.provider == "xai"


def test_openai_stream_helper_chunk_events_read() -> None:
    pytest.importorskip("openai")
    import openai.types.chat as chat
    from openai._models import construct_type
    from openai.lib.streaming.chat import ChunkEvent

    events = []
    for data in load("openai_chat_stream_include_usage.json"):
        if isinstance(data, dict):
            chunk = construct_type(type_=chat.ChatCompletionChunk, value=data)
            events.append(ChunkEvent.construct(type="chunk", chunk=chunk, snapshot=None))
            events.append({"type": "content.delta", "delta": "x", "snapshot": "x"})

    reader = stream_reader()
    for event in events:
        reader.feed(event)

    assert reader.finish().usage == Usage(53, 15)
    assert reader.problem is None


def test_mistral_completion_events_read() -> None:
    models = pytest.importorskip("mistralai.client.models")
    events = [
        models.CompletionEvent(data=models.CompletionChunk.model_validate(data))
        for data in load("mistral_stream_usage_last_chunk.json")
        if isinstance(data, dict)
    ]

    assert extract_stream_usage(events) == Usage(10, 232)


def _cohere_v2_events() -> list[dict[str, Any]]:
    return [
        {"type": "message-start", "id": "m", "delta": {"message": {"role": "assistant"}}},
        {"type": "content-start", "index": 0, "delta": {"message": {"content": {"text": ""}}}},
        {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": "Hi"}}}},
        {"type": "content-end", "index": 0},
        {
            "type": "message-end",
            "id": "m",
            "delta": {
                "finish_reason": "COMPLETE",
                "usage": {
                    "billed_units": {"input_tokens": 431, "output_tokens": 661},
                    "tokens": {"input_tokens": 2190, "output_tokens": 1257},
                },
            },
        },
    ]


def test_cohere_v2_message_end_read() -> None:
    reader = stream_reader()
    for event in _cohere_v2_events():
        reader.feed(event)
    reading = reader.finish()

    assert reading.usage == Usage(431, 661)
    assert reading.provider == "cohere"
    assert reader.problem is None


def test_cohere_sdk_stream_events_read() -> None:
    cohere = pytest.importorskip("cohere")
    message_end = _cohere_v2_events()[-1]
    typed = cohere.MessageEndV2ChatStreamResponse.model_validate(message_end)
    untyped = cohere.ChatMessageEndEvent.model_validate(message_end)

    assert extract_stream_usage([typed]) == Usage(431, 661)
    assert extract_stream_usage([untyped]) == Usage(431, 661)


def test_cohere_v1_stream_end_read() -> None:
    events = [
        {"event_type": "stream-start", "generation_id": "g"},
        {"event_type": "text-generation", "text": "Hi"},
        {
            "event_type": "stream-end",
            "finish_reason": "COMPLETE",
            "response": {
                "text": "Hi",
                "meta": {"billed_units": {"input_tokens": 7, "output_tokens": 2}},
            },
        },
    ]

    assert extract_stream_usage(events) == Usage(7, 2)


def test_anthropic_stream_helper_text_events_ignored() -> None:
    events = [*load("anthropic_stream_basic.json")]
    events.insert(4, {"type": "text", "text": "2", "snapshot": "2"})

    reader = stream_reader()
    for event in events:
        reader.feed(event)

    assert reader.finish().usage == Usage(20, 5)
    assert reader.problem is None
