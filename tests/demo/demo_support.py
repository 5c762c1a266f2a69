"""Shared by the demo tests: the usage each recorded body bills, and fixture types."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from tokenmeter.demo.server import ReplayServer, ReplayStep


@dataclass(frozen=True)
class BodyUsage:
    """The normalized usage one recorded body must produce, and the model it names."""

    model: str
    provider: str
    input_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    web_searches: int = 0
    """Web search tool calls, billed per call beside the tokens."""


# Normalized as tokenmeter stores it: input includes cache reads and writes, output includes
# reasoning. Anthropic reports input without the cache (3 + 1111 + 418 = 1532); xAI reports
# reasoning beside completion_tokens (262 + 491 = 753).
BODY_USAGE: dict[str, BodyUsage] = {
    "anthropic_tool_loop_round1.json": BodyUsage(
        "claude-haiku-4-5-20251001", "anthropic", 423, 0, 0, 202, 0
    ),
    "anthropic_tool_loop_round2.json": BodyUsage(
        "claude-haiku-4-5-20251001", "anthropic", 771, 0, 0, 77, 0
    ),
    "anthropic_cache_read.json": BodyUsage(
        "claude-sonnet-4-5-20250929", "anthropic", 1114, 1111, 0, 406, 0
    ),
    "anthropic_cache_write_and_read.json": BodyUsage(
        "claude-sonnet-4-5-20250929", "anthropic", 1532, 1111, 418, 33, 0
    ),
    "openai_chat_tool_calls_round1.json": BodyUsage(
        "gpt-4o-mini-2024-07-18", "openai", 104, 0, 0, 15, 0
    ),
    "openai_chat_tool_calls_round2.json": BodyUsage(
        "gpt-4o-mini-2024-07-18", "openai", 129, 0, 0, 9, 0
    ),
    "openai_chat_reasoning_o3_mini.json": BodyUsage(
        "o3-mini-2025-01-31", "openai", 577, 0, 0, 2320, 1792
    ),
    "xai_chat_reasoning.json": BodyUsage("grok-build-0.1", "xai", 133, 64, 0, 753, 491),
    "openai_responses_reasoning_web_search.json": BodyUsage(
        "gpt-5-2025-08-07", "openai", 9299, 8448, 0, 577, 512, web_searches=1
    ),
}


ServerFactory = Callable[[Mapping[str, Sequence[ReplayStep]]], ReplayServer]
"""Starts a replay server with the given scripts; the fixture stops it after the test."""
