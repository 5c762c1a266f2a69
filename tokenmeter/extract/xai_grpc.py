"""Usage of xAI's gRPC API (xai-sdk `SamplingUsage`), as proto objects or JSON dicts."""

from __future__ import annotations

from typing import Any

from tokenmeter.extract._base import add_detail, count, field, make_usage, note_contradiction
from tokenmeter.usage import Usage

__all__ = ["looks_like_grpc_usage", "xai_grpc_usage"]

_PREFIX = "SERVER_SIDE_TOOL_"


def _get(usage: Any, snake: str, camel: str) -> Any:
    value = field(usage, snake)
    if value is None and isinstance(usage, dict):
        value = usage.get(camel)
    return value


def looks_like_grpc_usage(usage: Any) -> bool:
    """Tell a `SamplingUsage` (either JSON spelling) from OpenAI-style usage."""
    if isinstance(usage, dict):
        return (
            "cached_prompt_text_tokens" in usage
            or "prompt_text_tokens" in usage
            or "server_side_tools_used" in usage
            or "promptTokens" in usage
            or "completionTokens" in usage
        )
    return type(usage).__name__ == "SamplingUsage"


def xai_grpc_usage(usage: Any) -> Usage:
    """Normalize a `SamplingUsage`.

    `completion_tokens` excludes `reasoning_tokens` (total = prompt + completion +
    reasoning), and `cached_prompt_text_tokens` is part of `prompt_tokens`. proto3 JSON
    leaves zero counts out, so a missing key is 0. `server_side_tools_used` lists one enum
    entry per billed tool call.
    """
    prompt = count(_get(usage, "prompt_tokens", "promptTokens"), "prompt_tokens")
    completion = count(_get(usage, "completion_tokens", "completionTokens"), "completion_tokens")
    reasoning = count(_get(usage, "reasoning_tokens", "reasoningTokens"), "reasoning_tokens")
    cached = count(
        _get(usage, "cached_prompt_text_tokens", "cachedPromptTextTokens"),
        "cached_prompt_text_tokens",
    )
    output = completion + reasoning
    total_value = _get(usage, "total_tokens", "totalTokens")
    if total_value is not None and reasoning:
        total = count(total_value, "total_tokens")
        if total == prompt + completion and total != prompt + output:
            output = completion

    details: dict[str, int] = {}
    add_detail(
        details,
        "input_image_tokens",
        count(_get(usage, "prompt_image_tokens", "promptImageTokens"), "prompt_image_tokens"),
    )
    add_detail(
        details,
        "num_sources_used",
        count(_get(usage, "num_sources_used", "numSourcesUsed"), "num_sources_used"),
    )
    add_detail(
        details,
        "cost_in_usd_ticks",
        count(_get(usage, "cost_in_usd_ticks", "costInUsdTicks"), "cost_in_usd_ticks"),
    )
    tools = _get(usage, "server_side_tools_used", "serverSideToolsUsed")
    if tools:
        names = _tool_names(usage, tools)
        add_detail(details, "server_side_tools_used", len(names))
        for name in names:
            add_detail(details, f"{name}_calls", 1)

    if cached > prompt:
        note_contradiction(
            "xai",
            "cached exceeds prompt",
            f"cached_prompt_text_tokens {cached} > prompt_tokens {prompt}",
        )
    return make_usage(
        prompt, output, cache_read_tokens=cached, reasoning_tokens=reasoning, details=details
    )


def _tool_names(usage: Any, tools: Any) -> list[str]:
    """Return lower-case tool names (`code_execution`) for enum names or proto enum numbers."""
    enum_type = None
    descriptor = getattr(usage, "DESCRIPTOR", None)
    if descriptor is not None:
        tool_field = descriptor.fields_by_name.get("server_side_tools_used")
        enum_type = tool_field.enum_type if tool_field is not None else None

    names = []
    for tool in tools:
        if isinstance(tool, int) and enum_type is not None:
            value = enum_type.values_by_number.get(tool)
            name = value.name if value is not None else str(tool)
        else:
            name = str(tool)
        names.append(name.removeprefix(_PREFIX).lower())
    return names
