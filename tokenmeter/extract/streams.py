"""Usage of streamed responses, read event by event while the stream runs.

Where a stream carries its usage differs by provider:

- OpenAI-style chat (OpenAI, Azure, xAI REST, DeepSeek, Mistral, OpenRouter): a chunk with a
  non-null `usage`, which is not always the last chunk (a moderation chunk can follow it).
  DeepSeek and Mistral put it on the last content chunk.
- Groq: `x_groq.usage`, sometimes repeated as the top-level `usage` of the same chunk.
- Responses API: only `response.completed`, `response.incomplete` or `response.failed`.
- Anthropic: `message_start` carries the prompt counts, each `message_delta` carries
  cumulative counts that replace them.
- Gemini and xAI gRPC: every chunk carries running totals.
- Bedrock ConverseStream: the final `metadata` event.
- Cohere: the v2 `message-end` event (`delta.usage`) or the v1 `stream-end` event.

In every case the last report wins: the counts are running totals, so adding chunks up would
count the same tokens many times.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tokenmeter.extract._base import Fields, Reading, UnrecognizedResponse, field, view
from tokenmeter.extract._dispatch import read
from tokenmeter.extract.anthropic_messages import anthropic_usage, merge_stream_usage
from tokenmeter.extract.bedrock import converse_usage
from tokenmeter.extract.cohere import cohere_usage

__all__ = ["StreamReader"]

_ANTHROPIC_EVENTS_WITHOUT_USAGE = frozenset(
    {"content_block_start", "content_block_delta", "content_block_stop", "ping", "error"}
)
# Events without usage: the SDK stream helpers' own events (anthropic MessageStream, openai
# chat stream helper) and Cohere v2 chat stream events.
_HELPER_EVENT_PREFIXES = (
    "text",
    "thinking",
    "signature",
    "input_json",
    "citation",
    "content.",
    "refusal.",
    "tool_calls.",
    "logprobs.",
    "message-start",
    "content-",
    "tool-plan-",
    "tool-call-",
    "citation-",
    "debug",
)
_RESPONSES_FINAL_EVENTS = frozenset(
    {"response.completed", "response.incomplete", "response.failed"}
)
_CONVERSE_EVENTS = frozenset(
    {
        "messageStart",
        "contentBlockStart",
        "contentBlockDelta",
        "contentBlockStop",
        "messageStop",
        "internalServerException",
        "modelStreamErrorException",
        "validationException",
        "throttlingException",
        "serviceUnavailableException",
    }
)


class StreamReader:
    """Collects the usage of one streamed response, fed one event or chunk at a time.

    `feed` only keeps references to the events that carry usage; the counts are read in
    `finish`. Neither raises on the shape of an event: the first event that could not be
    placed is kept in `problem`. Not thread-safe: feed one stream from one thread or task.

    Args:
        provider: The canonical provider id, or `None` to detect it from the events.
    """

    __slots__ = (
        "_anthropic_delta",
        "_anthropic_start",
        "_cohere_usage",
        "_converse_usage",
        "_last_with_usage",
        "_model",
        "_provider",
        "_recognized",
        "_saw_events",
        "problem",
    )

    def __init__(self, provider: str | None = None) -> None:
        self._provider = provider
        self._model: str | None = None
        self._last_with_usage: Any = None
        self._anthropic_start: Any = None
        self._anthropic_delta: Any = None
        self._converse_usage: Any = None
        self._cohere_usage: Any = None
        self._recognized = False
        self._saw_events = False
        self.problem: Exception | None = None
        """The first event this reader could not place, as an exception, or `None`."""

    def feed(self, event: object) -> None:
        """Take one stream event or chunk (dict or SDK object). Never raises."""
        self._saw_events = True
        try:
            self._feed(event)
        except Exception as exc:
            if self.problem is None:
                self.problem = exc

    def _feed(self, event: Any) -> None:
        if isinstance(event, tuple):
            # xai-sdk streams yield (accumulated response, chunk) pairs.
            for part in event:
                self.feed(part)
            return
        if isinstance(event, str | bytes):
            parsed = _parse_sse_data(event)
            if parsed is None:
                return
            event = parsed

        fields = view(event)
        if fields.get("choices") is not None:
            self._feed_chat_chunk(event, fields)
            return

        event_type = fields.get("type")
        if type(event_type) is str and self._feed_typed(event, event_type):
            return
        cohere_v1_type = field(event, "event_type")
        if type(cohere_v1_type) is str:
            self._recognized = True
            if cohere_v1_type == "stream-end":
                self._last_with_usage = field(event, "response")
            return

        if isinstance(event, Mapping) and len(event) <= 2 and self._feed_converse(event):
            return

        usage = field(event, "usage")
        if usage is not None and _proto_field_unset(event, "usage"):
            usage = None
        if usage is None:
            x_groq = field(event, "x_groq")
            if x_groq is not None:
                usage = field(x_groq, "usage")
        if usage is None:
            usage = field(event, "usageMetadata")
            if usage is None:
                usage = field(event, "usage_metadata")
        if usage is not None:
            self._last_with_usage = event
            self._recognized = True
        elif field(field(field(event, "delta"), "usage"), "billed_units") is not None:
            # Cohere's ChatMessageEndEvent: a `message-end` event without its `type` field.
            self._cohere_usage = field(field(event, "delta"), "usage")
            self._recognized = True
        elif field(event, "data") is not None and field(event, "choices") is None:
            # mistralai streams wrap each chunk in an event object with a `data` field.
            self._feed(field(event, "data"))
            return
        elif not self._recognized:
            self._recognized = _looks_like_chunk(event)
            if not self._recognized:
                raise UnrecognizedResponse(
                    f"stream event of type {type(event).__qualname__} matches no supported "
                    f"provider stream: {_preview(event)}"
                )
        if self._model is None:
            model = field(event, "model")
            if model is None:
                model = field(event, "modelVersion")
            if isinstance(model, str):
                self._model = model

    def _feed_chat_chunk(self, event: Any, fields: Fields) -> None:
        """Handle an OpenAI-style chat chunk, the most common event, with few lookups."""
        self._recognized = True
        usage = fields.get("usage")
        if usage is None:
            x_groq = fields.get("x_groq")
            if x_groq is not None:
                usage = field(x_groq, "usage")
        if usage is not None:
            self._last_with_usage = event
        if self._model is None:
            model = fields.get("model")
            if isinstance(model, str):
                self._model = model

    def _feed_typed(self, event: Any, event_type: str) -> bool:
        """Handle Anthropic and Responses API events; return whether the event was one."""
        if event_type == "message_start":
            message = field(event, "message")
            self._anthropic_start = field(message, "usage")
            model = field(message, "model")
            if isinstance(model, str):
                self._model = model
            self._recognized = True
            return True
        if event_type == "message_delta":
            usage = field(event, "usage")
            if usage is not None:
                self._anthropic_delta = usage
            self._recognized = True
            return True
        if event_type == "message_stop":
            # The anthropic SDK's stream helper attaches the accumulated message here.
            message = field(event, "message")
            usage = field(message, "usage")
            if usage is not None:
                self._anthropic_delta = usage
            self._recognized = True
            return True
        if event_type == "chunk":
            # The openai SDK's chat stream helper wraps each chunk in a ChunkEvent.
            self._feed(field(event, "chunk"))
            return True
        if event_type == "message-end":
            # Cohere v2 chat streams.
            usage = field(field(event, "delta"), "usage")
            if usage is not None:
                self._cohere_usage = usage
            self._recognized = True
            return True
        if event_type in _ANTHROPIC_EVENTS_WITHOUT_USAGE or event_type.startswith(
            _HELPER_EVENT_PREFIXES
        ):
            self._recognized = True
            return True
        if event_type.startswith("response."):
            self._recognized = True
            if event_type in _RESPONSES_FINAL_EVENTS:
                self._last_with_usage = event
            elif self._model is None:
                model = field(field(event, "response"), "model")
                if isinstance(model, str):
                    self._model = model
            return True
        return False

    def _feed_converse(self, event: Mapping[str, Any]) -> bool:
        metadata = event.get("metadata")
        if metadata is not None:
            usage = field(metadata, "usage")
            if usage is not None:
                self._converse_usage = usage
            self._recognized = True
            return True
        if any(key in _CONVERSE_EVENTS for key in event):
            self._recognized = True
            return True
        return False

    def finish(self) -> Reading:
        """Return the stream's usage, model and provider; usage is `None` if none was sent.

        A stream none of whose events matched a supported provider also reads as no usage;
        `problem` then contains the reason.

        Raises:
            MalformedUsage: if the reported usage has a negative or non-integer count.
        """
        provider = self._provider
        if self._anthropic_start is not None or self._anthropic_delta is not None:
            merged = merge_stream_usage(self._anthropic_start, self._anthropic_delta)
            if "output_tokens" not in merged:
                return Reading(None, self._model, provider or "anthropic")
            usage = anthropic_usage(merged, provider or "anthropic")
            return Reading(usage, self._model, provider or "anthropic")

        if self._converse_usage is not None:
            return Reading(converse_usage(self._converse_usage), self._model, provider or "bedrock")

        if self._cohere_usage is not None:
            return Reading(cohere_usage(self._cohere_usage), self._model, provider or "cohere")

        if self._last_with_usage is not None:
            try:
                reading = read(self._last_with_usage, provider)
            except UnrecognizedResponse as exc:
                self.problem = self.problem or exc
                return Reading(None, self._model, provider)
            return Reading(reading.usage, reading.model or self._model, reading.provider)

        if self._saw_events and not self._recognized and self.problem is None:
            self.problem = UnrecognizedResponse("no event matched a supported provider stream")
        return Reading(None, self._model, provider)


_CHUNK_KEYS = ("choices", "candidates", "outputs", "object", "delta", "x_groq", "id")


def _parse_sse_data(line: str | bytes) -> Any:
    """Return the JSON object of an SSE `data:` line, or `None` for `[DONE]` and comments.

    Raises:
        UnrecognizedResponse: if the line is neither.
    """
    text = line.decode() if isinstance(line, bytes) else line
    text = text.strip()
    if text.startswith("data:"):
        text = text[5:].strip()
    if not text or text == "[DONE]" or text.startswith((":", "event:", "id:", "retry:")):
        return None
    try:
        return json.loads(text)
    except ValueError:
        raise UnrecognizedResponse(f"stream event is text but not JSON: {text[:60]!r}") from None


def _proto_field_unset(event: Any, name: str) -> bool:
    """Tell whether a protobuf message lacks a sub-message, which would read as zeros."""
    if type(event) is dict:
        return False
    has_field = getattr(event, "HasField", None)
    if has_field is None:
        return False
    try:
        return not has_field(name)
    except ValueError:
        return False


def _looks_like_chunk(event: Any) -> bool:
    """Tell whether an event without usage still belongs to a supported stream."""
    return any(field(event, key) is not None for key in _CHUNK_KEYS)


def _preview(event: Any) -> str:
    if isinstance(event, Mapping):
        return f"keys {sorted(str(key) for key in event)[:10]}"
    return repr(event)[:80]
