"""Recognize which provider API produced an object and read its usage with the matching module.

SDK objects are classified once per type, from the field names their class declares, and the
reader is cached for the type. Dicts are classified by their keys on every call.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, cast

from tokenmeter._billing import billed_as_reported, with_billing
from tokenmeter.extract._base import (
    AttributeView,
    Fields,
    Reading,
    UnrecognizedResponse,
    field,
    view,
)
from tokenmeter.extract.anthropic_messages import anthropic_usage
from tokenmeter.extract.bedrock import converse_usage, invoke_model_header_usage
from tokenmeter.extract.cohere import cohere_usage
from tokenmeter.extract.gemini import gemini_usage, langchain_usage, usage_metadata_of
from tokenmeter.extract.openai_chat import chat_usage
from tokenmeter.extract.openai_responses import responses_usage
from tokenmeter.extract.providers import provider_from_model
from tokenmeter.extract.xai_grpc import looks_like_grpc_usage, xai_grpc_usage
from tokenmeter.usage import Usage

__all__ = ["read"]

Reader = Callable[[Any, "str | None"], Reading]


def read(obj: object, provider: str | None) -> Reading:
    """Read one response, usage object or stream event; `provider` is canonical or `None`.

    Raises:
        UnrecognizedResponse: if the object matches no supported shape.
        MalformedUsage: if a usage count is negative or not an integer.
    """
    if type(obj) is dict:
        return _reader_for_names(obj.keys(), obj)(obj, provider)

    reader = _readers_by_type.get(type(obj))
    if reader is None:
        reader = _reader_for_object(obj)
    return reader(obj, provider)


# ---------------------------------------------------------------------------------------------
# Classification


_readers_by_type: dict[type, Reader] = {}
_MAX_CACHED_TYPES = 1024


def _reader_for_object(obj: object) -> Reader:
    if isinstance(obj, Usage):
        return _read_tokenmeter_usage
    if isinstance(obj, Mapping):
        return _reader_for_names(obj.keys(), obj)
    if isinstance(obj, list | tuple):
        raise UnrecognizedResponse(
            f"cannot read usage from a {type(obj).__name__}: read the events of a stream with "
            "extract_stream_usage() or a StreamReader, and each round of a loop on its own"
        )

    names, stable = _declared_names(obj)
    reader = _reader_for_names(names, obj)
    if stable and len(_readers_by_type) < _MAX_CACHED_TYPES:
        _readers_by_type[type(obj)] = reader
    return reader


def _declared_names(obj: object) -> tuple[Collection[str], bool]:
    """Return the field names of `obj` and whether they are fixed by its class.

    Pydantic models and protobuf messages declare their fields on the class, so a reader chosen
    from those names is valid for every instance and can be cached per type.
    """
    cls = type(obj)
    model_fields = getattr(cls, "model_fields", None)
    if isinstance(model_fields, dict):
        return model_fields.keys(), True
    descriptor = getattr(cls, "DESCRIPTOR", None)
    fields_by_name = getattr(descriptor, "fields_by_name", None)
    if fields_by_name is not None:
        return fields_by_name.keys(), True
    if cls.__module__.startswith("xai_sdk") and hasattr(cls, "proto"):
        return ("outputs", "usage", "model"), True
    try:
        return vars(obj).keys(), False
    except TypeError:
        names = [name for name in dir(obj) if not name.startswith("_")]
        return names, False


def _reader_for_names(names: Collection[str], obj: Any) -> Reader:
    """Choose the reader for an object with these top-level field names.

    Raises:
        UnrecognizedResponse: if no reader fits.
    """
    if "custom_id" in names:
        return _read_batch_result
    if "usage" in names:
        if "choices" in names:
            return _read_chat
        if "stopReason" in names or "metrics" in names:
            return _read_converse
        if "outputs" in names:
            return _read_xai_grpc
        if "content" in names or "stop_reason" in names or field(obj, "type") == "message":
            return _read_anthropic_message
        if "output" in names or "status" in names:
            return _read_responses
        if "finish_reason" in names and "message" in names:
            return _read_cohere
        return _reader_for_usage_holder(obj)
    if "usageMetadata" in names or "usage_metadata" in names or "candidates" in names:
        return _read_gemini
    if "choices" in names:
        return _read_chat
    if "type" in names:
        event_reader = _reader_for_event(field(obj, "type"))
        if event_reader is not None:
            return event_reader
    if "error" in names:
        return _read_error
    if "billed_units" in names:
        return _read_cohere_usage
    if "meta" in names:
        return _read_cohere
    if "ResponseMetadata" in names:
        return _read_boto3_response
    return _reader_for_usage_fields(names, obj)


def _reader_for_usage_holder(obj: Any) -> Reader:
    """Choose a reader for an object whose only known field is `usage`."""
    usage = field(obj, "usage")
    if usage is None:
        return _read_usage_holder
    if isinstance(usage, Usage):
        return _read_usage_holder
    if "billed_units" in _names_of(usage):
        return _read_cohere
    return _read_usage_holder


def _reader_for_usage_fields(names: Collection[str], obj: Any) -> Reader:
    """Choose a reader for a bare usage object or dict."""
    if "prompt_tokens" in names or "completion_tokens" in names:
        if looks_like_grpc_usage(obj) or _is_grpc_usage_type(obj):
            return _read_xai_grpc_usage
        return _read_chat_usage
    if "promptTokens" in names or "cached_prompt_text_tokens" in names:
        return _read_xai_grpc_usage
    if "input_tokens" in names:
        if "output_tokens" not in names:
            # Token-count endpoints return only `input_tokens`; that is an estimate, not usage.
            return _read_token_count
        # Responses API usage always carries these two; Anthropic usage never does.
        if "input_tokens_details" in names or "total_tokens" in names:
            return _read_responses_usage
        return _read_anthropic_usage
    if "inputTokens" in names or "outputTokens" in names:
        return _read_converse_usage
    if (
        "promptTokenCount" in names
        or "prompt_token_count" in names
        or "totalTokenCount" in names
        or "total_token_count" in names
    ):
        return _read_gemini_usage
    raise UnrecognizedResponse(_unrecognized_message(obj, names))


def _is_grpc_usage_type(obj: Any) -> bool:
    return type(obj).__name__ == "SamplingUsage"


_EVENT_TYPES_WITHOUT_USAGE = frozenset(
    {
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "ping",
        "message_stop",
        "response.created",
        "response.in_progress",
        "response.queued",
    }
)


def _reader_for_event(event_type: Any) -> Reader | None:
    if event_type == "message_start":
        return _read_anthropic_start
    if event_type == "message_delta":
        return _read_anthropic_delta
    if event_type in ("response.completed", "response.incomplete", "response.failed"):
        return _read_responses_event
    if event_type == "error":
        return _read_error
    if event_type in _EVENT_TYPES_WITHOUT_USAGE or (
        isinstance(event_type, str) and event_type.startswith("response.")
    ):
        return _read_event_without_usage
    return None


def _names_of(obj: Any) -> Collection[str]:
    if isinstance(obj, Mapping):
        return obj.keys()
    return _declared_names(obj)[0]


def _unrecognized_message(obj: Any, names: Collection[str]) -> str:
    field_names = sorted(str(name) for name in names)[:12]
    return (
        f"cannot read usage from {type(obj).__module__}.{type(obj).__qualname__} with fields "
        f"{field_names}; expected a provider response (OpenAI, Anthropic, Gemini, Bedrock, Cohere, "
        f"xAI, ...), a provider usage object, or a tokenmeter.Usage"
    )


# ---------------------------------------------------------------------------------------------
# Readers


def _model(obj: Any) -> str | None:
    model = field(obj, "model")
    if isinstance(model, str):
        return model
    return None


def _read_tokenmeter_usage(obj: Any, provider: str | None) -> Reading:
    return Reading(obj, None, provider)


def _read_error(obj: Any, provider: str | None) -> Reading:
    return Reading(None, None, provider)


def _read_token_count(obj: Any, provider: str | None) -> Reading:
    return Reading(None, None, provider)


def _read_event_without_usage(obj: Any, provider: str | None) -> Reading:
    return Reading(None, _model(obj), provider)


# Fields that only one OpenAI-compatible provider sends.
_CHAT_USAGE_MARKERS = frozenset(
    {
        "is_byok",
        "cost",
        "num_sources_used",
        "cost_in_usd_ticks",
        "prompt_cache_hit_tokens",
        "num_cached_tokens",
    }
)
_CHAT_RESPONSE_MARKERS = frozenset({"x_groq", "provider", "prompt_filter_results"})


def _chat_provider(obj: Any, usage: Any, model: str | None) -> str:
    """Tell which provider sent an OpenAI-style chat completion (or chunk)."""
    response_fields = view(obj)
    if not _CHAT_RESPONSE_MARKERS.isdisjoint(_keys(response_fields)):
        if response_fields.get("x_groq") is not None:
            return "groq"
        if isinstance(response_fields.get("provider"), str):
            return "openrouter"
        if response_fields.get("prompt_filter_results") is not None:
            return "azure"
    usage_fields = view(usage)
    if not _CHAT_USAGE_MARKERS.isdisjoint(_keys(usage_fields)):
        if usage_fields.get("is_byok") is not None or usage_fields.get("cost") is not None:
            return "openrouter"
        if (
            usage_fields.get("num_sources_used") is not None
            or usage_fields.get("cost_in_usd_ticks") is not None
        ):
            return "xai"
        if usage_fields.get("prompt_cache_hit_tokens") is not None:
            return "deepseek"
        if usage_fields.get("num_cached_tokens") is not None:
            return "mistral"
    return provider_from_model(model) or "openai"


def _keys(fields: Fields) -> Iterable[str]:
    if isinstance(fields, dict):
        return fields.keys()
    return _declared_names(cast(AttributeView, fields).target)[0]


def _read_chat(obj: Any, provider: str | None) -> Reading:
    model = _model(obj)
    usage = field(obj, "usage")
    if usage is None:
        # Groq streams may carry the usage only inside `x_groq`.
        usage = field(field(obj, "x_groq"), "usage")
    detected = provider or _chat_provider(obj, usage, model)
    if usage is None:
        return Reading(None, model, detected)
    normalized = chat_usage(usage, detected)
    service_tier = field(obj, "service_tier")
    if service_tier is not None:
        normalized = billed_as_reported(normalized, service_tier)
    return Reading(normalized, model, detected)


def _read_chat_usage(obj: Any, provider: str | None) -> Reading:
    detected = provider or _chat_provider({}, obj, None)
    return Reading(chat_usage(obj, detected), None, detected)


def _read_responses(obj: Any, provider: str | None) -> Reading:
    model = _model(obj)
    usage = field(obj, "usage")
    detected = provider or _responses_provider(usage, model)
    if usage is None:
        return Reading(None, model, detected)
    normalized = responses_usage(usage, detected, obj)
    service_tier = field(obj, "service_tier")
    if service_tier is not None:
        normalized = billed_as_reported(normalized, service_tier)
    return Reading(normalized, model, detected)


def _responses_provider(usage: Any, model: str | None) -> str:
    if usage is not None and (
        field(usage, "num_sources_used") is not None
        or field(usage, "num_server_side_tools_used") is not None
        or field(usage, "cost_in_usd_ticks") is not None
    ):
        return "xai"
    return provider_from_model(model) or "openai"


def _read_responses_usage(obj: Any, provider: str | None) -> Reading:
    detected = provider or _responses_provider(obj, None)
    return Reading(responses_usage(obj, detected), None, detected)


def _read_responses_event(obj: Any, provider: str | None) -> Reading:
    response = field(obj, "response")
    if response is None:
        return Reading(None, None, provider)
    return _read_responses(response, provider)


def _read_anthropic_message(obj: Any, provider: str | None) -> Reading:
    model = _model(obj)
    detected = provider or "anthropic"
    usage = field(obj, "usage")
    if usage is None:
        return Reading(None, model, detected)
    if field(usage, "output_tokens") is None:
        # Some gateways send a usage without output_tokens; it is not a billed total.
        return Reading(None, model, detected)
    return Reading(anthropic_usage(usage, detected), model, detected)


def _read_anthropic_usage(obj: Any, provider: str | None) -> Reading:
    detected = provider or "anthropic"
    return Reading(anthropic_usage(obj, detected), None, detected)


def _read_anthropic_start(obj: Any, provider: str | None) -> Reading:
    message = field(obj, "message")
    if message is None:
        return Reading(None, None, provider or "anthropic")
    return _read_anthropic_message(message, provider)


def _read_anthropic_delta(obj: Any, provider: str | None) -> Reading:
    detected = provider or "anthropic"
    usage = field(obj, "usage")
    if usage is None:
        return Reading(None, None, detected)
    return Reading(anthropic_usage(usage, detected), None, detected)


def _read_gemini(obj: Any, provider: str | None) -> Reading:
    model = field(obj, "modelVersion")
    if model is None:
        model = field(obj, "model_version")
    model = model if isinstance(model, str) else None
    metadata = usage_metadata_of(obj)
    if field(metadata, "input_tokens") is not None:
        return _read_langchain(obj, metadata, provider)
    detected = provider or "google"
    if metadata is None:
        return Reading(None, model, detected)
    normalized = gemini_usage(metadata)
    service_tier = field(metadata, "serviceTier")
    if service_tier is None:
        service_tier = field(metadata, "service_tier")
    if service_tier is not None:
        normalized = billed_as_reported(normalized, service_tier)
    return Reading(normalized, model, detected)


def _read_langchain(obj: Any, metadata: Any, provider: str | None) -> Reading:
    response_metadata = field(obj, "response_metadata")
    model = field(response_metadata, "model_name") or field(response_metadata, "model")
    return Reading(langchain_usage(metadata), model if isinstance(model, str) else None, provider)


def _read_gemini_usage(obj: Any, provider: str | None) -> Reading:
    return Reading(gemini_usage(obj), None, provider or "google")


def _read_converse(obj: Any, provider: str | None) -> Reading:
    detected = provider or "bedrock"
    usage = field(obj, "usage")
    if usage is None:
        return Reading(None, None, detected)
    return Reading(converse_usage(usage), None, detected)


def _read_converse_usage(obj: Any, provider: str | None) -> Reading:
    return Reading(converse_usage(obj), None, provider or "bedrock")


def _read_boto3_response(obj: Any, provider: str | None) -> Reading:
    detected = provider or "bedrock"
    headers = field(field(obj, "ResponseMetadata"), "HTTPHeaders")
    return Reading(invoke_model_header_usage(headers), None, detected)


def _read_cohere(obj: Any, provider: str | None) -> Reading:
    detected = provider or "cohere"
    usage = field(obj, "usage")
    if usage is None:
        usage = field(obj, "meta")
    if usage is None or field(usage, "billed_units") is None:
        return Reading(None, _model(obj), detected)
    return Reading(cohere_usage(usage), _model(obj), detected)


def _read_cohere_usage(obj: Any, provider: str | None) -> Reading:
    return Reading(cohere_usage(obj), None, provider or "cohere")


def _read_xai_grpc(obj: Any, provider: str | None) -> Reading:
    model = _model(obj)
    if model is None:
        # xai-sdk's Response wrapper keeps the model on its protobuf message.
        model = _model(field(obj, "proto"))
    detected = provider or "xai"
    usage = field(obj, "usage")
    if usage is None or _proto_field_unset(obj, "usage"):
        return Reading(None, model, detected)
    return Reading(xai_grpc_usage(usage), model, detected)


def _proto_field_unset(obj: Any, name: str) -> bool:
    """Tell whether a protobuf message lacks a sub-message (which reads as all zeros)."""
    has_field = getattr(obj, "HasField", None)
    if has_field is None:
        return False
    try:
        return not has_field(name)
    except ValueError:
        return False


def _read_xai_grpc_usage(obj: Any, provider: str | None) -> Reading:
    return Reading(xai_grpc_usage(obj), None, provider or "xai")


def _read_batch_result(obj: Any, provider: str | None) -> Reading:
    """Read one result of a batch job, whose usage is billed at batch prices.

    Two shapes carry a `custom_id`: a line of an OpenAI Batch API output file
    (`{"custom_id", "response": {"status_code", "body"}, "error"}`) and an Anthropic Message
    Batches result (`{"custom_id", "result": {"type": "succeeded", "message"}}`). A failed,
    errored, cancelled or expired request reports no usage.
    """
    result = field(obj, "result")
    if result is not None:
        detected = provider or "anthropic"
        message = field(result, "message")
        if field(result, "type") != "succeeded" or message is None:
            return Reading(None, None, detected)
        reading = _read_anthropic_message(message, detected)
    else:
        body = field(field(obj, "response"), "body")
        if body is None:
            return Reading(None, None, provider)
        reading = read(body, provider)

    if reading.usage is None:
        return reading
    return Reading(with_billing(reading.usage, batch=True), reading.model, reading.provider)


def _read_usage_holder(obj: Any, provider: str | None) -> Reading:
    """Read an object of no known response type that has a `usage` field."""
    usage = field(obj, "usage")
    if usage is None:
        return Reading(None, _model(obj), provider)
    inner = read(usage, provider)
    return Reading(inner.usage, _model(obj) or inner.model, inner.provider)
