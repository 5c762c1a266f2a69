"""Usage of the OpenAI Responses API, as OpenAI, Azure and xAI send it."""

from __future__ import annotations

from typing import Any

from tokenmeter.extract._base import (
    Fields,
    add_detail,
    count,
    count_at,
    field,
    make_usage,
    note_contradiction,
    view,
)
from tokenmeter.usage import Usage

__all__ = ["responses_usage", "tool_call_details"]

# Built-in tool calls that OpenAI bills per call, outside the token counts. The keys are the
# output item types; the values are the detail names (genai-prices' name where it has one).
_BILLED_TOOL_ITEMS = {
    "web_search_call": "web_searches",
    "code_interpreter_call": "code_interpreter_calls",
    "file_search_call": "file_search_calls",
}


def responses_usage(usage: Any, provider: str, response: Any = None) -> Usage:
    """Normalize a Responses API `usage` object or dict.

    OpenAI's counts are inclusive: `input_tokens` contains cached and cache-write tokens,
    `output_tokens` contains reasoning. xAI's Responses API has sent both that form and an
    additive one (reasoning outside `output_tokens`); `total_tokens` distinguishes them.
    `response`, when given, is the whole response, whose output items and `tool_usage` give
    the billed built-in tool calls.
    """
    fields = view(usage)
    input_tokens = count_at(fields, "input_tokens")
    output = count_at(fields, "output_tokens")
    input_details = view(fields.get("input_tokens_details"))
    output_details = view(fields.get("output_tokens_details"))
    cache_read = count_at(input_details, "cached_tokens")
    cache_write = count_at(input_details, "cache_write_tokens")
    reasoning = count_at(output_details, "reasoning_tokens")
    details: dict[str, int] = {}

    if reasoning:
        total_value = fields.get("total_tokens")
        total = count_at(fields, "total_tokens") if total_value is not None else None
        if total == input_tokens + output + reasoning and total != input_tokens + output:
            output += reasoning
        elif total is None and provider == "xai" and reasoning > output:
            # NOTE: without total_tokens an xAI payload is ambiguous; reasoning larger than
            # the whole output can only be additive.
            output += reasoning

    _xai_details(fields, details)
    if response is not None and provider != "xai":
        tool_call_details(response, details)

    if cache_read > input_tokens:
        note_contradiction(
            provider,
            "cached exceeds input",
            f"input_tokens_details.cached_tokens {cache_read} > input_tokens {input_tokens}",
        )
    if reasoning > output:
        note_contradiction(
            provider, "reasoning exceeds output", f"reasoning {reasoning} > output {output}"
        )
    return make_usage(
        input_tokens,
        output,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=reasoning,
        details=details,
    )


def _xai_details(fields: Fields, details: dict[str, int]) -> None:
    add_detail(details, "num_sources_used", count_at(fields, "num_sources_used"))
    add_detail(details, "server_side_tools_used", count_at(fields, "num_server_side_tools_used"))
    add_detail(details, "cost_in_usd_ticks", count_at(fields, "cost_in_usd_ticks"))
    per_tool = fields.get("server_side_tool_usage_details")
    if per_tool is None:
        return
    items = per_tool.items() if isinstance(per_tool, dict) else vars(per_tool).items()
    for name, value in items:
        if isinstance(name, str) and name.endswith("_calls"):
            add_detail(details, name, count(value, f"server_side_tool_usage_details.{name}"))


def tool_call_details(response: Any, details: dict[str, int]) -> None:
    """Add the billed built-in tool calls of a Responses API response to `details`.

    `tool_usage.web_search.num_requests` is used when the response carries it; otherwise
    the output items of each billed tool type are counted.
    """
    web_search = view(field(field(response, "tool_usage"), "web_search"))
    web_search_requests = web_search.get("num_requests")
    output = field(response, "output")
    if output:
        for item in output:
            key = _BILLED_TOOL_ITEMS.get(field(item, "type"))
            if key is None or (key == "web_searches" and web_search_requests is not None):
                continue
            details[key] = details.get(key, 0) + 1
    if web_search_requests is not None:
        add_detail(details, "web_searches", count_at(web_search, "num_requests"))
