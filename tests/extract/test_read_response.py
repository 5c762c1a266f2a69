"""The public reading functions: accepted inputs, provider names, errors and warnings."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
from extract_payloads import load

from tokenmeter.extract import (
    PROVIDER_IDS,
    MalformedUsage,
    Reading,
    UnrecognizedResponse,
    canonical_provider,
    extract_stream_usage,
    extract_usage,
    read_response,
    stream_reader,
)
from tokenmeter.usage import Usage


@pytest.mark.parametrize(
    ("alias", "expected"),
    [
        ("openai", "openai"),
        ("gemini", "google"),
        ("vertex_ai", "google"),
        ("x-ai", "xai"),
        ("grok", "xai"),
        ("aws", "bedrock"),
        ("aws.bedrock", "bedrock"),
        ("claude", "anthropic"),
        ("azure_openai", "azure"),
        ("  Anthropic ", "anthropic"),
        ("mistralai", "mistral"),
    ],
)
def test_canonical_provider_maps_alias(alias: str, expected: str) -> None:
    assert canonical_provider(alias) == expected


def test_canonical_provider_accepts_every_id() -> None:
    for provider in PROVIDER_IDS:
        assert canonical_provider(provider) == provider


def test_canonical_provider_rejects_unknown_name() -> None:
    with pytest.raises(ValueError, match=r"unknown provider 'openia'; accepted ids: openai, azure"):
        canonical_provider("openia")


def test_extract_usage_rejects_unknown_provider() -> None:
    with pytest.raises(ValueError, match="unknown provider 'nope'"):
        extract_usage({"prompt_tokens": 1, "completion_tokens": 2}, provider="nope")


def test_extract_stream_usage_rejects_unknown_provider() -> None:
    with pytest.raises(ValueError, match="unknown provider 'nope'"):
        extract_stream_usage([], provider="nope")


def test_stream_reader_rejects_unknown_provider() -> None:
    with pytest.raises(ValueError, match="unknown provider 'nope'"):
        stream_reader("nope")


def test_tokenmeter_usage_returned_as_is() -> None:
    usage = Usage(5, 6)

    reading = read_response(usage)

    assert reading.usage is usage
    assert reading == Reading(usage, None, None)


def test_tokenmeter_usage_keeps_given_provider() -> None:
    assert read_response(Usage(5, 6), provider="gemini").provider == "google"


def test_openai_usage_dict_alone_read() -> None:
    reading = read_response({"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14})

    assert reading == Reading(Usage(10, 4), None, "openai")


def test_responses_usage_dict_alone_read() -> None:
    usage = load("openai_responses_code_interpreter.json")["usage"]

    reading = read_response(usage)

    assert reading.usage == Usage(2973, 707, cache_read_tokens=1920, reasoning_tokens=512)


def test_anthropic_usage_dict_alone_read() -> None:
    usage = load("anthropic_cache_read.json")["usage"]

    reading = read_response(usage)

    assert reading == Reading(Usage(1114, 406, cache_read_tokens=1111), None, "anthropic")


def test_anthropic_usage_sdk_object_alone_read() -> None:
    anthropic_types = pytest.importorskip("anthropic.types")
    usage = anthropic_types.Usage(
        input_tokens=40,
        cache_creation_input_tokens=2000,
        cache_read_input_tokens=9000,
        output_tokens=300,
    )

    reading = read_response(usage)

    assert reading.usage == Usage(11040, 300, cache_read_tokens=9000, cache_write_tokens=2000)
    assert reading.provider == "anthropic"


def test_openai_usage_sdk_object_alone_read() -> None:
    openai_types = pytest.importorskip("openai.types")
    usage = openai_types.CompletionUsage(prompt_tokens=12, completion_tokens=3, total_tokens=15)

    assert read_response(usage).usage == Usage(12, 3)


def test_gemini_usage_metadata_alone_read() -> None:
    metadata = load("gemini_thinking_2_5_flash.json")["usageMetadata"]

    reading = read_response(metadata)

    assert reading == Reading(Usage(9, 43, reasoning_tokens=34), None, "google")


def test_bedrock_usage_alone_read() -> None:
    usage = load("bedrock_converse_cache_write.json")["usage"]

    assert read_response(usage).usage == Usage(1324, 5, cache_write_tokens=1322)


def test_object_with_usage_attribute_read() -> None:
    holder = SimpleNamespace(usage={"prompt_tokens": 3, "completion_tokens": 1}, model="gpt-4o")

    reading = read_response(holder)

    assert reading == Reading(Usage(3, 1), "gpt-4o", "openai")


def test_dataclass_usage_object_read() -> None:
    @dataclass
    class StubUsage:
        prompt_tokens: int
        completion_tokens: int

    assert read_response(StubUsage(7, 2)).usage == Usage(7, 2)


def test_given_provider_overrides_detection() -> None:
    response = load("openai_chat_plain.json")

    assert read_response(response, provider="azure").provider == "azure"


def test_azure_detected_from_prompt_filter_results() -> None:
    response = {
        "model": "gpt-4o",
        "choices": [],
        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1},
    }

    assert read_response(response).provider == "azure"


@pytest.mark.parametrize(
    "obj",
    [
        pytest.param({"hello": "world"}, id="dict"),
        pytest.param(42, id="int"),
        pytest.param("text", id="str"),
        pytest.param(SimpleNamespace(answer=1), id="object"),
        pytest.param([{"usage": None}], id="list"),
    ],
)
def test_read_response_rejects_unknown_shape(obj: object) -> None:
    with pytest.raises(UnrecognizedResponse, match="cannot read usage from"):
        read_response(obj)


def test_unrecognized_response_is_type_error() -> None:
    assert issubclass(UnrecognizedResponse, TypeError)
    assert issubclass(MalformedUsage, ValueError)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-1, "usage field 'prompt_tokens' is negative: -1"),
        (1.5, "usage field 'prompt_tokens' must be a non-negative integer, got 1.5"),
        (True, "usage field 'prompt_tokens' must be a non-negative integer, got True"),
        ("ten", "usage field 'prompt_tokens' must be a non-negative integer, got 'ten'"),
    ],
)
def test_read_response_rejects_malformed_count(value: Any, message: str) -> None:
    with pytest.raises(MalformedUsage, match=message):
        read_response({"prompt_tokens": value, "completion_tokens": 1})


@pytest.mark.parametrize(("value", "expected"), [(12.0, 12), ("12", 12)])
def test_integral_float_and_digit_string_accepted(value: Any, expected: int) -> None:
    usage = extract_usage({"prompt_tokens": value, "completion_tokens": 1})

    assert usage is not None
    assert usage.input_tokens == expected


def test_extract_usage_returns_none_for_unknown_shape(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="tokenmeter.extract")

    assert extract_usage({"hello": "world"}) is None

    assert len(caplog.records) == 1
    assert caplog.records[0].name == "tokenmeter.extract"
    assert "cannot read usage from builtins.dict" in caplog.records[0].getMessage()


def test_extract_usage_warns_once_per_type(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="tokenmeter.extract")

    for _ in range(3):
        assert extract_usage(SimpleNamespace(answer=1)) is None
    assert extract_usage(42) is None

    assert len(caplog.records) == 2


def test_extract_usage_returns_none_for_malformed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="tokenmeter.extract")

    assert extract_usage({"prompt_tokens": -5, "completion_tokens": 1}) is None

    assert "negative" in caplog.text


def test_extract_usage_on_list_points_to_stream_reader(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="tokenmeter.extract")

    assert extract_usage(load("openai_chat_stream_include_usage.json")) is None

    assert "extract_stream_usage" in caplog.text


def test_sdk_type_classified_once_and_reused() -> None:
    openai_chat = pytest.importorskip("openai.types.chat")
    first = openai_chat.ChatCompletion.construct(
        id="a", choices=[], created=0, model="gpt-4o", object="chat.completion", usage=None
    )
    second = openai_chat.ChatCompletion.construct(
        id="b",
        choices=[],
        created=0,
        model="gpt-4o",
        object="chat.completion",
        usage={"prompt_tokens": 4, "completion_tokens": 2},
    )

    assert read_response(first).usage is None
    assert read_response(second).usage == Usage(4, 2)


class _FailingMapping(Mapping[str, Any]):
    """A response-like mapping whose values cannot be read."""

    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("connection reset while reading the body")

    def __iter__(self) -> Iterator[str]:
        return iter(("choices", "usage"))

    def __len__(self) -> int:
        return 2


def test_extract_usage_logs_unexpected_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="tokenmeter.extract")

    assert extract_usage(_FailingMapping()) is None

    assert len(caplog.records) == 1
    assert caplog.records[0].levelno == logging.ERROR
    assert "connection reset while reading the body" in caplog.records[0].getMessage()


def test_read_response_propagates_unexpected_error() -> None:
    with pytest.raises(RuntimeError, match="connection reset"):
        read_response(_FailingMapping())


class _IndexInt:
    """An integral type that is not an int subclass, like numpy.int64."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value


def test_integral_non_int_count_accepted() -> None:
    usage = extract_usage({"prompt_tokens": _IndexInt(8), "completion_tokens": 1})

    assert usage == Usage(8, 1)


def test_langchain_usage_metadata_read() -> None:
    message = SimpleNamespace(
        content="hi",
        usage_metadata={
            "input_tokens": 350,
            "output_tokens": 240,
            "total_tokens": 590,
            "input_token_details": {"cache_read": 100, "cache_creation": 200},
            "output_token_details": {"reasoning": 200},
        },
        response_metadata={"model_name": "claude-sonnet-4-5"},
    )

    reading = read_response(message)

    assert reading.usage == Usage(
        350, 240, cache_read_tokens=100, cache_write_tokens=200, reasoning_tokens=200
    )
    assert reading.model == "claude-sonnet-4-5"
