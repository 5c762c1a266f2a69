"""Usage of the Anthropic Messages API (also served by Bedrock InvokeModel and Vertex AI)."""

from __future__ import annotations

from typing import Any

from tokenmeter._billing import billed_as_reported
from tokenmeter.extract._base import (
    add_detail,
    copy_counts,
    count_at,
    counts_at,
    field,
    make_usage,
    note_contradiction,
    view,
)
from tokenmeter.usage import Usage

__all__ = ["anthropic_usage", "merge_stream_usage"]

_COUNTS = (
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "output_tokens",
)
# (reported name, detail name): web searches are billed per request, under genai-prices' name.
_SERVER_TOOLS = (
    ("web_search_requests", "web_searches"),
    ("web_fetch_requests", "web_fetch_requests"),
    ("code_execution_requests", "code_execution_requests"),
)


def anthropic_usage(usage: Any, provider: str = "anthropic") -> Usage:
    """Normalize an Anthropic `usage` object or dict.

    Anthropic's `input_tokens` excludes cache reads and cache writes, so the billed prompt is
    the sum of the three. `cache_creation` splits the writes by lifetime (5 minutes, 1 hour)
    without adding tokens. `output_tokens` already contains thinking tokens.
    """
    fields = view(usage)
    uncached, cache_write, cache_read, output = counts_at(fields, _COUNTS)
    reasoning = count_at(view(fields.get("output_tokens_details")), "thinking_tokens")
    details: dict[str, int] = {}

    creation = view(fields.get("cache_creation"))
    if creation:
        write_5m = count_at(creation, "ephemeral_5m_input_tokens")
        write_1h = count_at(creation, "ephemeral_1h_input_tokens")
        add_detail(details, "cache_write_5m_tokens", write_5m)
        add_detail(details, "cache_write_1h_tokens", write_1h)
        if write_5m + write_1h != cache_write:
            note_contradiction(
                provider,
                "cache_creation split",
                f"ephemeral_5m_input_tokens {write_5m} + ephemeral_1h_input_tokens {write_1h} "
                f"!= cache_creation_input_tokens {cache_write}",
            )

    server_tools = view(fields.get("server_tool_use"))
    if server_tools:
        copy_counts(server_tools, _SERVER_TOOLS, details)

    input_tokens = uncached + cache_write + cache_read
    iterations = fields.get("iterations")
    if iterations:
        extra = _iterations_outside_top_level(iterations, details)
        input_tokens += extra.input_tokens
        cache_read += extra.cache_read_tokens
        cache_write += extra.cache_write_tokens
        output += extra.output_tokens

    if reasoning > output:
        note_contradiction(
            provider,
            "thinking exceeds output",
            f"output_tokens_details.thinking_tokens {reasoning} > output_tokens {output}",
        )

    usage_counts = make_usage(
        input_tokens,
        output,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=reasoning,
        details=details,
    )
    # `service_tier` is "batch" in Message Batches results, "priority" or "standard" else.
    service_tier = fields.get("service_tier")
    speed = fields.get("speed")
    if service_tier is None and speed is None:
        return usage_counts
    return billed_as_reported(usage_counts, service_tier, speed)


def _iterations_outside_top_level(iterations: Any, details: dict[str, int]) -> Usage:
    """Sum the beta `usage.iterations` entries that the top-level counts leave out.

    `compaction` entries run on the request's model and are not in the top-level fields, so
    they are added to the usage. `advisor_message` entries run on another model (named in
    the entry) and are not in the top-level fields either: they go to `advisor_*` details so
    that pricing them at the advisor's rate stays possible. `message` and `fallback_message`
    entries are already in the top-level fields.
    """
    extra = Usage()
    for iteration in iterations:
        kind = field(iteration, "type")
        if kind == "compaction":
            extra = extra + anthropic_usage(_without_iterations(iteration))
        elif kind == "advisor_message":
            advisor = anthropic_usage(_without_iterations(iteration))
            add_detail(details, "advisor_input_tokens", advisor.input_tokens)
            add_detail(details, "advisor_cache_read_tokens", advisor.cache_read_tokens)
            add_detail(details, "advisor_cache_write_tokens", advisor.cache_write_tokens)
            add_detail(details, "advisor_output_tokens", advisor.output_tokens)
    return extra


def _without_iterations(iteration: Any) -> dict[str, Any]:
    return {
        "input_tokens": field(iteration, "input_tokens"),
        "cache_creation_input_tokens": field(iteration, "cache_creation_input_tokens"),
        "cache_read_input_tokens": field(iteration, "cache_read_input_tokens"),
        "output_tokens": field(iteration, "output_tokens"),
        "cache_creation": field(iteration, "cache_creation"),
    }


_STREAM_KEYS = (
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "cache_creation",
    "output_tokens",
    "output_tokens_details",
    "server_tool_use",
    "iterations",
    "service_tier",
    "speed",
)


def merge_stream_usage(start: Any, delta: Any) -> dict[str, Any]:
    """Combine `message_start` usage with the last `message_delta` usage of a stream.

    `message_delta` counts are cumulative, so each key the delta carries replaces the start
    value (the start's `output_tokens` is a placeholder). Keys the delta lacks, such as
    `input_tokens` on older API versions, keep their `message_start` value.
    """
    merged: dict[str, Any] = {}
    for key in _STREAM_KEYS:
        value = field(delta, key) if delta is not None else None
        if value is None and start is not None:
            value = field(start, key)
        if value is not None:
            merged[key] = value
    return merged
