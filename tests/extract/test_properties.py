"""Properties of generated payloads: parts within totals, addition, streams versus responses."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tokenmeter.extract import extract_stream_usage, read_response
from tokenmeter.usage import Usage

counts = st.integers(min_value=0, max_value=2_000_000)


@st.composite
def _parts_within(draw: st.DrawFn, parts: int) -> tuple[int, ...]:
    """Draw a total and `parts` non-negative counts whose sum does not exceed it."""
    total = draw(counts)
    values = []
    left = total
    for _ in range(parts):
        value = draw(st.integers(min_value=0, max_value=left))
        values.append(value)
        left -= value
    return (total, *values)


@st.composite
def openai_chat(draw: st.DrawFn) -> dict[str, Any]:
    prompt, cached, written = draw(_parts_within(2))
    completion, reasoning = draw(_parts_within(1))
    return {
        "object": "chat.completion",
        "model": "gpt-4o",
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached, "cache_write_tokens": written},
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        },
    }


@st.composite
def xai_chat(draw: st.DrawFn) -> dict[str, Any]:
    prompt, cached = draw(_parts_within(1))
    completion = draw(counts)
    reasoning = draw(counts)
    return {
        "object": "chat.completion",
        "model": "grok-3-mini",
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion + reasoning,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        },
    }


@st.composite
def anthropic_message(draw: st.DrawFn) -> dict[str, Any]:
    output, thinking = draw(_parts_within(1))
    write_5m = draw(counts)
    write_1h = draw(counts)
    return {
        "type": "message",
        "model": "claude-sonnet-4-5",
        "content": [],
        "usage": {
            "input_tokens": draw(counts),
            "cache_read_input_tokens": draw(counts),
            "cache_creation_input_tokens": write_5m + write_1h,
            "cache_creation": {
                "ephemeral_5m_input_tokens": write_5m,
                "ephemeral_1h_input_tokens": write_1h,
            },
            "output_tokens": output,
            "output_tokens_details": {"thinking_tokens": thinking},
        },
    }


@st.composite
def openai_responses(draw: st.DrawFn) -> dict[str, Any]:
    input_tokens, cached = draw(_parts_within(1))
    output, reasoning = draw(_parts_within(1))
    return {
        "object": "response",
        "model": "gpt-5",
        "status": "completed",
        "output": [],
        "usage": {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": output,
            "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": input_tokens + output,
        },
    }


@st.composite
def gemini(draw: st.DrawFn) -> dict[str, Any]:
    prompt, cached = draw(_parts_within(1))
    metadata = {
        "promptTokenCount": prompt,
        "cachedContentTokenCount": cached,
        "toolUsePromptTokenCount": draw(counts),
        "candidatesTokenCount": draw(counts),
        "thoughtsTokenCount": draw(counts),
    }
    return {"candidates": [], "modelVersion": "gemini-2.5-flash", "usageMetadata": metadata}


@st.composite
def bedrock_converse(draw: st.DrawFn) -> dict[str, Any]:
    usage = {
        "inputTokens": draw(counts),
        "outputTokens": draw(counts),
        "cacheReadInputTokens": draw(counts),
        "cacheWriteInputTokens": draw(counts),
    }
    return {"output": {}, "stopReason": "end_turn", "usage": usage}


@st.composite
def xai_grpc(draw: st.DrawFn) -> dict[str, Any]:
    prompt, cached = draw(_parts_within(1))
    usage = {
        "prompt_tokens": prompt,
        "prompt_text_tokens": prompt,
        "cached_prompt_text_tokens": cached,
        "completion_tokens": draw(counts),
        "reasoning_tokens": draw(counts),
    }
    return {"model": "grok-4", "outputs": [], "usage": usage}


@st.composite
def cohere(draw: st.DrawFn) -> dict[str, Any]:
    billed_input, cached = draw(_parts_within(1))
    usage = {
        "billed_units": {"input_tokens": billed_input, "output_tokens": draw(counts)},
        "cached_tokens": cached,
    }
    return {"id": "x", "finish_reason": "COMPLETE", "message": {}, "usage": usage}


consistent_responses = st.one_of(
    openai_chat(),
    xai_chat(),
    anthropic_message(),
    openai_responses(),
    gemini(),
    bedrock_converse(),
    xai_grpc(),
    cohere(),
)


@contextmanager
def _captured_warnings() -> Iterator[list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("tokenmeter.extract")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


@given(consistent_responses)
def test_parts_never_exceed_totals(response: dict[str, Any]) -> None:
    with _captured_warnings() as records:
        usage = read_response(response).usage

    assert usage is not None
    assert usage.cache_read_tokens + usage.cache_write_tokens <= usage.input_tokens
    assert usage.reasoning_tokens <= usage.output_tokens
    assert records == []


usages = st.builds(
    Usage,
    counts,
    counts,
    cache_read_tokens=counts,
    cache_write_tokens=counts,
    reasoning_tokens=counts,
    details=st.dictionaries(st.sampled_from(["web_searches", "input_audio_tokens"]), counts),
)


@given(usages, usages, usages)
def test_usage_addition_associative(a: Usage, b: Usage, c: Usage) -> None:
    assert (a + b) + c == a + (b + c)


@given(st.lists(usages, max_size=5))
def test_usage_sum_matches_chained_addition(items: list[Usage]) -> None:
    chained = Usage()
    for item in items:
        chained = chained + item

    assert sum(items, Usage()) == chained


def _openai_stream(response: dict[str, Any]) -> list[Any]:
    chunk = {"object": "chat.completion.chunk", "model": response["model"], "usage": None}
    return [
        {**chunk, "choices": [{"index": 0, "delta": {"content": "a"}}]},
        {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {**chunk, "choices": [], "usage": response["usage"]},
        "[DONE]",
    ]


def _anthropic_stream(response: dict[str, Any]) -> list[Any]:
    usage = response["usage"]
    start_usage = {key: value for key, value in usage.items() if key != "output_tokens_details"}
    start_usage["output_tokens"] = 1
    delta_usage = {
        "output_tokens": usage["output_tokens"],
        "output_tokens_details": usage["output_tokens_details"],
    }
    message = {**response, "usage": start_usage}
    return [
        {"type": "message_start", "message": message},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": delta_usage},
        {"type": "message_stop"},
    ]


def _responses_stream(response: dict[str, Any]) -> list[Any]:
    return [
        {"type": "response.created", "response": {**response, "usage": None}},
        {"type": "response.output_text.delta", "delta": "x"},
        {"type": "response.completed", "response": response},
    ]


def _gemini_stream(response: dict[str, Any]) -> list[Any]:
    metadata = response["usageMetadata"]
    early = {"promptTokenCount": metadata["promptTokenCount"] + 2}
    return [{**response, "usageMetadata": early}, response]


def _bedrock_stream(response: dict[str, Any]) -> list[Any]:
    return [
        {"messageStart": {"role": "assistant"}},
        {"contentBlockDelta": {"delta": {"text": "x"}, "contentBlockIndex": 0}},
        {"messageStop": {"stopReason": "end_turn"}},
        {"metadata": {"usage": response["usage"], "metrics": {"latencyMs": 1}}},
    ]


def _xai_grpc_stream(response: dict[str, Any]) -> list[Any]:
    usage = response["usage"]
    partial = {**usage, "completion_tokens": usage["completion_tokens"] // 2}
    return [{**response, "usage": partial}, response]


_STREAM_BUILDERS: list[tuple[Any, Callable[[dict[str, Any]], list[Any]]]] = [
    (openai_chat(), _openai_stream),
    (xai_chat(), _openai_stream),
    (anthropic_message(), _anthropic_stream),
    (openai_responses(), _responses_stream),
    (gemini(), _gemini_stream),
    (bedrock_converse(), _bedrock_stream),
    (xai_grpc(), _xai_grpc_stream),
]


@given(
    st.sampled_from(range(len(_STREAM_BUILDERS))).flatmap(
        lambda index: st.tuples(st.just(index), _STREAM_BUILDERS[index][0])
    )
)
def test_stream_matches_whole_response(case: tuple[int, dict[str, Any]]) -> None:
    index, response = case
    events = _STREAM_BUILDERS[index][1](response)

    assert extract_stream_usage(events) == read_response(response).usage
