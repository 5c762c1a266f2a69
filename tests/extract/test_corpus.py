"""Every recorded payload reads to its manifest's expected usage, as a dict and as an SDK object."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from extract_payloads import MANIFEST, expected_usage, is_stream, load, tokens_only

from tokenmeter.extract import (
    canonical_provider,
    extract_stream_usage,
    extract_usage,
    read_response,
    stream_reader,
)

SINGLE = [entry for entry in MANIFEST if not is_stream(entry)]
STREAMS = [entry for entry in MANIFEST if is_stream(entry)]


def _ids(entries: list[dict[str, Any]]) -> list[str]:
    return [entry["file"].removesuffix(".json") for entry in entries]


def _names_model(entry: dict[str, Any]) -> bool:
    """Tell whether the payload itself names the model (Bedrock and Cohere bodies do not)."""
    model = entry["model"]
    return bool(model) and f'"{model}"' in json.dumps(load(entry["file"]))


def test_manifest_covers_every_payload_file() -> None:
    from extract_payloads import PAYLOADS

    files = {path.name for path in PAYLOADS.glob("*.json")} - {"MANIFEST.json"}

    assert files == {entry["file"] for entry in MANIFEST}


@pytest.mark.parametrize("entry", SINGLE, ids=_ids(SINGLE))
def test_response_dict_reads_expected_usage(entry: dict[str, Any]) -> None:
    usage = extract_usage(load(entry["file"]))

    assert tokens_only(usage) == expected_usage(entry)


@pytest.mark.parametrize("entry", SINGLE, ids=_ids(SINGLE))
def test_response_dict_detects_provider(entry: dict[str, Any]) -> None:
    reading = read_response(load(entry["file"]))

    if reading.usage is not None:
        assert reading.provider == canonical_provider(entry["provider"])


@pytest.mark.parametrize("entry", SINGLE, ids=_ids(SINGLE))
def test_response_dict_with_provider_reads_expected_usage(entry: dict[str, Any]) -> None:
    usage = extract_usage(load(entry["file"]), provider=entry["provider"])

    assert tokens_only(usage) == expected_usage(entry)


@pytest.mark.parametrize("entry", SINGLE, ids=_ids(SINGLE))
def test_response_dict_reports_manifest_model(entry: dict[str, Any]) -> None:
    reading = read_response(load(entry["file"]))

    if reading.usage is not None and _names_model(entry):
        assert reading.model == entry["model"]


@pytest.mark.parametrize("entry", STREAMS, ids=_ids(STREAMS))
def test_stream_dicts_read_expected_usage(entry: dict[str, Any]) -> None:
    usage = extract_stream_usage(load(entry["file"]))

    assert tokens_only(usage) == expected_usage(entry)


@pytest.mark.parametrize("entry", STREAMS, ids=_ids(STREAMS))
def test_stream_reader_detects_provider(entry: dict[str, Any]) -> None:
    reader = stream_reader()
    for event in load(entry["file"]):
        reader.feed(event)
    reading = reader.finish()

    assert tokens_only(reading.usage) == expected_usage(entry)
    if reading.usage is not None:
        assert reading.provider == canonical_provider(entry["provider"])
    if reading.usage is not None and _names_model(entry):
        assert reading.model == entry["model"]
    assert reader.problem is None


# ---------------------------------------------------------------------------------------------
# The same payloads parsed by the providers' own SDKs, the way their clients parse responses.


def _openai(type_name: str) -> Callable[[Any], Any]:
    pytest.importorskip("openai")
    import openai.types.chat as chat
    import openai.types.responses as responses
    from openai._models import construct_type

    types = {
        "ChatCompletion": chat.ChatCompletion,
        "ChatCompletionChunk": chat.ChatCompletionChunk,
        "Response": responses.Response,
    }
    return lambda data: construct_type(type_=types[type_name], value=data)


def _anthropic(type_name: str) -> Callable[[Any], Any]:
    pytest.importorskip("anthropic")
    import anthropic.types as types
    import anthropic.types.beta as beta
    from anthropic._models import construct_type

    type_ = {
        "Message": types.Message,
        "BetaMessage": beta.BetaMessage,
        "RawMessageStreamEvent": types.RawMessageStreamEvent,
        "MessageTokensCount": types.MessageTokensCount,
    }[type_name]
    return lambda data: construct_type(type_=type_, value=data)


def _gemini(data: Any) -> Any:
    genai_types = pytest.importorskip("google.genai.types")
    if "usage_metadata" in data:
        return genai_types.GenerateContentResponse.model_validate(data)
    return genai_types.GenerateContentResponse._from_response(response=data, kwargs={})


def _groq(type_name: str) -> Callable[[Any], Any]:
    pytest.importorskip("groq")
    import groq.types.chat as chat
    from groq._models import construct_type

    type_ = {"ChatCompletion": chat.ChatCompletion, "ChatCompletionChunk": chat.ChatCompletionChunk}
    return lambda data: construct_type(type_=type_[type_name], value=data)


def _mistral(type_name: str) -> Callable[[Any], Any]:
    models = pytest.importorskip("mistralai.client.models")
    return lambda data: getattr(models, type_name).model_validate(data)


def _cohere(data: Any) -> Any:
    cohere = pytest.importorskip("cohere")
    return cohere.v2.V2ChatResponse.model_validate(data)


def _xai_proto(type_name: str) -> Callable[[Any], Any]:
    pytest.importorskip("xai_sdk")
    from google.protobuf import json_format
    from xai_sdk.proto.v6 import chat_pb2

    message_type = getattr(chat_pb2, type_name)
    return lambda data: json_format.ParseDict(data, message_type(), ignore_unknown_fields=True)


def _bedrock_converse(data: Any) -> Any:
    pytest.importorskip("botocore")
    import botocore.session
    from botocore import parsers

    service = botocore.session.get_session().get_service_model("bedrock-runtime")
    output_shape = service.operation_model("Converse").output_shape
    raw = {"status_code": 200, "headers": {}, "body": json.dumps(data).encode()}
    return parsers.create_parser("rest-json").parse(raw, output_shape)


def _sdk_parser(entry: dict[str, Any]) -> Callable[[Any], Any] | None:
    api = entry["api"]
    name = entry["file"]
    if api in ("openai.chat",):
        return _openai("ChatCompletion")
    if api == "openai.chat.stream":
        return _openai("ChatCompletionChunk")
    if api in ("openai.responses", "xai.responses"):
        return _openai("Response")
    if api == "anthropic.messages":
        return _anthropic("BetaMessage" if "advisor" in name else "Message")
    if api == "anthropic.messages.stream":
        return _anthropic("RawMessageStreamEvent")
    if api == "anthropic.count_tokens":
        return _anthropic("MessageTokensCount")
    if api.startswith("gemini.generate_content"):
        return _gemini
    if api == "groq.chat":
        return _groq("ChatCompletion")
    if api == "groq.chat.stream":
        return _groq("ChatCompletionChunk")
    if api == "mistral.chat":
        return _mistral("ChatCompletionResponse")
    if api == "mistral.chat.stream":
        return _mistral("CompletionChunk")
    if api == "cohere.v2.chat":
        return _cohere
    if api == "xai.grpc":
        return _xai_proto("GetChatCompletionResponse")
    if api == "xai.grpc.stream":
        return _xai_proto("GetChatCompletionChunk")
    if api == "bedrock.converse":
        return _bedrock_converse
    return None


SDK_SINGLE = [entry for entry in SINGLE if not entry["api"].endswith("error")]


@pytest.mark.parametrize("entry", SDK_SINGLE, ids=_ids(SDK_SINGLE))
def test_sdk_object_reads_expected_usage(entry: dict[str, Any]) -> None:
    parse = _sdk_parser(entry)
    assert parse is not None, f"no SDK parser for {entry['api']}"
    response = parse(load(entry["file"]))

    reading = read_response(response)

    assert tokens_only(reading.usage) == expected_usage(entry)
    if reading.usage is not None:
        assert reading.provider == canonical_provider(entry["provider"])


SDK_STREAMS = [entry for entry in STREAMS if entry["api"] != "bedrock.converse_stream"]


@pytest.mark.parametrize("entry", SDK_STREAMS, ids=_ids(SDK_STREAMS))
def test_sdk_stream_objects_read_expected_usage(entry: dict[str, Any]) -> None:
    parse = _sdk_parser(entry)
    assert parse is not None, f"no SDK parser for {entry['api']}"
    events = [parse(event) for event in load(entry["file"]) if isinstance(event, dict)]

    usage = extract_stream_usage(events)

    assert tokens_only(usage) == expected_usage(entry)


def test_xai_sdk_response_wrapper_reads_usage_and_model() -> None:
    pytest.importorskip("xai_sdk")
    from xai_sdk.chat import Response

    proto = _xai_proto("GetChatCompletionResponse")(load("xai_grpc_code_execution_cached.json"))

    reading = read_response(Response(proto, 0))

    assert reading.usage is not None
    assert reading.usage.output_tokens == 213
    assert reading.model == "grok-4-fast-reasoning"
    assert reading.provider == "xai"


def test_xai_grpc_camel_case_dict_reads_usage() -> None:
    pytest.importorskip("xai_sdk")
    from google.protobuf import json_format

    proto = _xai_proto("GetChatCompletionResponse")(load("xai_grpc_code_execution_cached.json"))
    camel = json_format.MessageToDict(proto)

    usage = extract_usage(camel)

    assert "promptTokens" in camel["usage"]
    assert usage is not None
    assert usage.input_tokens == 1889
    assert usage.cache_read_tokens == 1347
    assert usage.output_tokens == 213
    assert usage.details["code_execution_calls"] == 1


def test_xai_grpc_usage_proto_alone_reads_usage() -> None:
    proto = _xai_proto("GetChatCompletionResponse")(load("xai_grpc_image_input.json"))

    usage = extract_usage(proto.usage)

    assert usage is not None
    assert usage.input_tokens == 438
    assert usage.details["input_image_tokens"] == 256


def test_xai_grpc_response_without_usage_reads_none() -> None:
    pytest.importorskip("xai_sdk")
    from xai_sdk.proto.v6 import chat_pb2

    reading = read_response(chat_pb2.GetChatCompletionResponse(model="grok-4"))

    assert reading.usage is None
    assert reading.model == "grok-4"
