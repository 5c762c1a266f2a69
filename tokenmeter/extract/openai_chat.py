"""Usage of OpenAI-style Chat Completions, as OpenAI, Azure and compatible providers send it.

Covers xAI REST, DeepSeek, Mistral, Groq and OpenRouter, which reuse the field names but not
always their meaning.
"""

from __future__ import annotations

from typing import Any

from tokenmeter._billing import with_billing
from tokenmeter.extract._base import (
    Fields,
    copy_counts,
    count,
    count_at,
    counts_at,
    make_usage,
    note_contradiction,
    reported_usd,
    view,
)
from tokenmeter.usage import Usage

__all__ = ["chat_usage"]

_TOTALS = ("prompt_tokens", "completion_tokens")
_CACHE = ("cached_tokens", "cache_write_tokens")
# (reported name, detail name); detail names follow genai-prices where it has one.
_PROMPT_DETAILS = (
    ("audio_tokens", "input_audio_tokens"),
    ("image_tokens", "input_image_tokens"),
    ("video_tokens", "input_video_tokens"),
)
_COMPLETION_DETAILS = (
    ("audio_tokens", "output_audio_tokens"),
    ("image_tokens", "output_image_tokens"),
    ("rejected_prediction_tokens", "rejected_prediction_tokens"),
)
# xAI: Live Search sources (billed per source) and the cost in 1e-10 USD.
_USAGE_DETAILS = (
    ("num_sources_used", "num_sources_used"),
    ("cost_in_usd_ticks", "cost_in_usd_ticks"),
)


def chat_usage(usage: Any, provider: str) -> Usage:
    """Normalize a Chat Completions `usage` object or dict.

    `prompt_tokens` includes cached and cache-write tokens, and `completion_tokens` includes
    reasoning tokens, except on xAI, whose `completion_tokens` leaves reasoning out. The
    reasoning is treated as outside the completion when the provider is `xai` (unless
    `total_tokens` shows otherwise), when `total_tokens` equals prompt + completion +
    reasoning, or when the reasoning alone exceeds the completion.
    """
    fields = view(usage)
    prompt, completion = counts_at(fields, _TOTALS)
    prompt_details = view(fields.get("prompt_tokens_details"))
    completion_details = view(fields.get("completion_tokens_details"))
    details: dict[str, int] = {}

    cache_read, cache_write = counts_at(prompt_details, _CACHE)
    if not cache_read:
        # DeepSeek and Mistral report the cache hits outside prompt_tokens_details.
        hits = fields.get("prompt_cache_hit_tokens") or fields.get("num_cached_tokens")
        if hits:
            cache_read = count(hits, "prompt_cache_hit_tokens")
    reasoning = count_at(completion_details, "reasoning_tokens")

    if prompt_details:
        copy_counts(prompt_details, _PROMPT_DETAILS, details)
    if completion_details:
        copy_counts(completion_details, _COMPLETION_DETAILS, details)
    copy_counts(fields, _USAGE_DETAILS, details)

    output = completion
    if reasoning and _reasoning_outside_completion(fields, provider, prompt, completion, reasoning):
        output = completion + reasoning

    if cache_read + cache_write > prompt or reasoning > output:
        _check_parts(provider, prompt, output, cache_read, cache_write, reasoning)
    normalized = make_usage(
        prompt,
        output,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=reasoning,
        details=details,
    )
    if provider == "openrouter":
        # OpenRouter's `cost` is what it charged, in USD (credits). With a provider key of
        # the user's own (`is_byok`), that is OpenRouter's fee, not the upstream bill.
        reported = reported_usd(fields.get("cost"))
        if reported is not None:
            return with_billing(normalized, reported_cost_usd=reported)
    return normalized


def _reasoning_outside_completion(
    fields: Fields, provider: str, prompt: int, completion: int, reasoning: int
) -> bool:
    if fields.get("total_tokens") is not None:
        total = count_at(fields, "total_tokens")
        if total == prompt + completion + reasoning:
            return True
        if total == prompt + completion:
            return False
    if provider == "xai":
        return True
    if reasoning > completion:
        note_contradiction(
            provider,
            "reasoning exceeds completion",
            f"completion_tokens_details.reasoning_tokens {reasoning} > completion_tokens "
            f"{completion}; reasoning counted on top of completion_tokens, as xAI reports it",
        )
        return True
    return False


def _check_parts(
    provider: str, prompt: int, output: int, cache_read: int, cache_write: int, reasoning: int
) -> None:
    if cache_read > prompt:
        note_contradiction(
            provider, "cached exceeds prompt", f"cached tokens {cache_read} > prompt {prompt}"
        )
    elif cache_read + cache_write > prompt:
        note_contradiction(
            provider,
            "cache read and write exceed prompt",
            f"cached {cache_read} + cache write {cache_write} > prompt {prompt}",
        )
    if reasoning > output:
        note_contradiction(
            provider, "reasoning exceeds output", f"reasoning {reasoning} > output {output}"
        )
