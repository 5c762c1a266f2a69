"""Gemini, Bedrock ConverseStream and xAI gRPC streams metered live, through their real SDKs."""

from __future__ import annotations

import binascii
import json
import struct
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import boto3
import grpc
import pytest
import xai_sdk
from google import genai
from google.genai import types as genai_types
from google.protobuf import json_format
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
from xai_sdk.chat import user
from xai_sdk.proto.v6 import chat_pb2

from tokenmeter import UsageRecord, metered_stream, metered_turn
from tokenmeter.testing import MemorySink

GEMINI_STREAM = "gemini_stream_prompt_count_changes.json"
GEMINI_MODEL = "gemini-2.0-flash-exp"
BEDROCK_STREAM = "bedrock_converse_stream.json"
BEDROCK_MODEL = "us.amazon.nova-micro-v1:0"
XAI_STREAM = "xai_grpc_stream_cumulative_usage.json"
XAI_MODEL = "grok-4-fast-reasoning"


def assert_matches_manifest(record: UsageRecord, payload: str, model: str, provider: str) -> None:
    assert record.status == "ok"
    assert record.rounds == 1
    assert record.unmeasured_rounds == 0
    assert record.model == model
    assert record.provider == provider
    assert record_usage(record) == expected_usage(payload)
    assert record.cost_usd == expected_cost(load(payload), model, provider)


# Gemini


@pytest.fixture
def gemini_client(sse_server: SSEServer) -> Iterator[genai.Client]:
    """The real `google.genai.Client`, sending to `sse_server`."""
    client = genai.Client(api_key="test-key", http_options={"base_url": sse_server.base_url})
    yield client
    client.close()


@pytest.mark.parametrize("way", ["metered_stream", "metered_turn"])
def test_gemini_chunks_and_record(
    sse_server: SSEServer, gemini_client: genai.Client, memory_sink: MemorySink, way: str
) -> None:
    frames = sse_frames(load(GEMINI_STREAM), named=False)
    sse_server.reply(frames)
    sse_server.reply(frames)

    @metered_turn
    def step() -> Any:
        return gemini_client.models.generate_content_stream(model=GEMINI_MODEL, contents="Hi")

    plain = list(gemini_client.models.generate_content_stream(model=GEMINI_MODEL, contents="Hi"))
    if way == "metered_stream":
        stream = gemini_client.models.generate_content_stream(model=GEMINI_MODEL, contents="Hi")
        metered = list(metered_stream(stream))
    else:
        metered = list(step())

    assert sse_server.requests[1].path.endswith(":streamGenerateContent?alt=sse")
    assert all(isinstance(chunk, genai_types.GenerateContentResponse) for chunk in metered)
    # Each chunk keeps the HTTP response headers, whose `Date` differs between the two runs.
    headers = {"sdk_http_response"}
    assert dumps(metered, exclude=headers) == dumps(plain, exclude=headers)
    record = only_record(records_of(memory_sink))
    assert_matches_manifest(record, GEMINI_STREAM, GEMINI_MODEL, "google")


def test_gemini_first_chunk_counts_not_kept(
    sse_server: SSEServer, gemini_client: genai.Client, memory_sink: MemorySink
) -> None:
    sse_server.reply(sse_frames(load(GEMINI_STREAM), named=False))

    stream = gemini_client.models.generate_content_stream(model=GEMINI_MODEL, contents="Hi")
    for _ in metered_stream(stream):
        pass

    record = only_record(records_of(memory_sink))
    assert record.input_tokens == 13
    assert record.output_tokens == 8


def test_gemini_sdk_objects_over_iterator(memory_sink: MemorySink) -> None:
    chunks = [
        genai_types.GenerateContentResponse.model_validate(chunk) for chunk in load(GEMINI_STREAM)
    ]

    metered = list(metered_stream(iter(chunks), provider="google"))

    assert metered == chunks
    record = only_record(records_of(memory_sink))
    assert_matches_manifest(record, GEMINI_STREAM, GEMINI_MODEL, "google")


def test_provider_alias_recorded_as_id(memory_sink: MemorySink) -> None:
    for _ in metered_stream(iter(load(GEMINI_STREAM)), provider="gemini"):
        pass

    record = only_record(records_of(memory_sink))
    assert record.provider == "google"


# google-genai's async client runs on aiohttp when it is installed, which needs asyncio, and
# subclasses aiohttp's ClientSession, which aiohttp 3.14 warns about.
@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.filterwarnings(
    "ignore:Inheritance class AiohttpClientSession from ClientSession is discouraged"
    ":DeprecationWarning"
)
async def test_gemini_async_chunks_and_record(
    sse_server: SSEServer, memory_sink: MemorySink, anyio_backend: str
) -> None:
    sse_server.reply(sse_frames(load(GEMINI_STREAM), named=False))
    client = genai.Client(api_key="test-key", http_options={"base_url": sse_server.base_url})

    try:
        stream = await client.aio.models.generate_content_stream(model=GEMINI_MODEL, contents="Hi")
        metered = [chunk async for chunk in metered_stream(stream)]
    finally:
        await client.aio.aclose()
        client.close()

    assert len(metered) == 3
    record = only_record(await arecords_of(memory_sink))
    assert_matches_manifest(record, GEMINI_STREAM, GEMINI_MODEL, "google")


# Bedrock ConverseStream


def eventstream_message(event: dict[str, Any]) -> bytes:
    """Encode one ConverseStream event as an AWS event stream message, as Bedrock sends it.

    A message is a prelude (total length, headers length, CRC32 of those 8 bytes), string
    headers, the JSON payload, and a CRC32 of everything before it.
    """
    ((event_type, body),) = event.items()
    headers = b"".join(
        _string_header(name, value)
        for name, value in (
            (":message-type", "event"),
            (":event-type", event_type),
            (":content-type", "application/json"),
        )
    )
    payload = json.dumps(body).encode()
    prelude = struct.pack(">II", 12 + len(headers) + len(payload) + 4, len(headers))
    prelude += struct.pack(">I", binascii.crc32(prelude))
    message = prelude + headers + payload
    return message + struct.pack(">I", binascii.crc32(message))


def _string_header(name: str, value: str) -> bytes:
    name_bytes, value_bytes = name.encode(), value.encode()
    string_type = 7
    return (
        struct.pack(">B", len(name_bytes))
        + name_bytes
        + struct.pack(">BH", string_type, len(value_bytes))
        + value_bytes
    )


@pytest.fixture
def bedrock_client(sse_server: SSEServer) -> Iterator[Any]:
    """A real botocore `bedrock-runtime` client, sending to `sse_server` with fake keys."""
    client = boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=sse_server.base_url,
        aws_access_key_id="test-key-id",
        aws_secret_access_key="test-secret",
    )
    yield client
    client.close()


def converse_stream(client: Any) -> Any:
    response = client.converse_stream(
        modelId=BEDROCK_MODEL, messages=[{"role": "user", "content": [{"text": "Hi"}]}]
    )
    return response["stream"]


@pytest.mark.parametrize("way", ["metered_stream", "metered_turn"])
def test_bedrock_events_and_record(
    sse_server: SSEServer, bedrock_client: Any, memory_sink: MemorySink, way: str
) -> None:
    frames = [eventstream_message(event) for event in load(BEDROCK_STREAM)]
    sse_server.reply(frames, content_type="application/vnd.amazon.eventstream")
    sse_server.reply(frames, content_type="application/vnd.amazon.eventstream")

    # The events name no model, so the caller gives it.
    @metered_turn(model=BEDROCK_MODEL)
    def step() -> Any:
        return converse_stream(bedrock_client)

    plain = list(converse_stream(bedrock_client))
    if way == "metered_stream":
        metered = list(metered_stream(converse_stream(bedrock_client), model=BEDROCK_MODEL))
    else:
        metered = list(step())

    assert sse_server.requests[1].path.endswith("/converse-stream")
    assert metered == plain
    assert "metadata" in metered[-1]
    record = only_record(records_of(memory_sink))
    assert_matches_manifest(record, BEDROCK_STREAM, BEDROCK_MODEL, "bedrock")


def test_bedrock_closed_before_metadata_unmeasured(
    sse_server: SSEServer, bedrock_client: Any, memory_sink: MemorySink
) -> None:
    frames = [eventstream_message(event) for event in load(BEDROCK_STREAM)]
    sse_server.reply(frames, content_type="application/vnd.amazon.eventstream")

    stream = metered_stream(converse_stream(bedrock_client), model=BEDROCK_MODEL)
    next(stream)
    stream.close()

    record = only_record(records_of(memory_sink))
    assert record.status == "incomplete"
    assert record.unmeasured_rounds == 1
    assert record.input_tokens is None


def test_bedrock_dicts_over_iterator(memory_sink: MemorySink) -> None:
    events = load(BEDROCK_STREAM)

    metered = list(metered_stream(iter(events), model=BEDROCK_MODEL, provider="bedrock"))

    assert metered == events
    record = only_record(records_of(memory_sink))
    assert_matches_manifest(record, BEDROCK_STREAM, BEDROCK_MODEL, "bedrock")


# xAI gRPC


def xai_chunks() -> list[Any]:
    return [
        json_format.ParseDict(data, chat_pb2.GetChatCompletionChunk(), ignore_unknown_fields=True)
        for data in load(XAI_STREAM)
    ]


@pytest.fixture
def xai_server() -> Iterator[tuple[str, list[Any]]]:
    """A gRPC server on 127.0.0.1 that responds to `GetCompletionChunk` with the recorded chunks.

    Yields the server's address and the list of requests it received.
    """
    requests: list[Any] = []

    def get_completion_chunk(request: Any, context: Any) -> Iterator[Any]:
        requests.append(request)
        yield from xai_chunks()

    handler = grpc.method_handlers_generic_handler(
        "xai_api.Chat",
        {
            "GetCompletionChunk": grpc.unary_stream_rpc_method_handler(
                get_completion_chunk,
                request_deserializer=chat_pb2.GetCompletionsRequest.FromString,
                response_serializer=chat_pb2.GetChatCompletionChunk.SerializeToString,
            )
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", requests
    server.stop(None).wait()


@pytest.mark.parametrize("way", ["metered_stream", "metered_turn"])
def test_xai_running_totals_not_summed(
    xai_server: tuple[str, list[Any]], memory_sink: MemorySink, way: str
) -> None:
    address, requests = xai_server
    client = xai_sdk.Client(api_key="test-key", api_host=address, use_insecure_channel=True)
    chat = client.chat.create(model=XAI_MODEL, messages=[user("What is 29 * 1?")])

    @metered_turn
    def step() -> Any:
        return chat.stream()

    stream = metered_stream(chat.stream()) if way == "metered_stream" else step()
    pairs = list(stream)

    assert len(pairs) == len(load(XAI_STREAM))
    assert requests[0].model == XAI_MODEL
    record = only_record(records_of(memory_sink))
    assert_matches_manifest(record, XAI_STREAM, XAI_MODEL, "xai")


def test_xai_protobuf_chunks_over_iterator(memory_sink: MemorySink) -> None:
    chunks = xai_chunks()

    metered = list(metered_stream(iter(chunks), provider="xai"))

    assert metered == chunks
    record = only_record(records_of(memory_sink))
    assert_matches_manifest(record, XAI_STREAM, XAI_MODEL, "xai")
