"""Usage of Gemini `generateContent`: REST camelCase (Gemini API, Vertex AI) and google-genai."""

from __future__ import annotations

from typing import Any

from tokenmeter.extract._base import (
    add_detail,
    count,
    count_at,
    field,
    make_usage,
    modality_details,
    note_contradiction,
    view,
)
from tokenmeter.usage import Usage

__all__ = ["gemini_usage", "langchain_usage", "usage_metadata_of"]

_PROMPT_MODALITIES = {
    "AUDIO": "input_audio_tokens",
    "IMAGE": "input_image_tokens",
    "VIDEO": "input_video_tokens",
}
_CACHE_MODALITIES = {
    "AUDIO": "cache_audio_read_tokens",
    "IMAGE": "cache_image_read_tokens",
    "VIDEO": "cache_video_read_tokens",
}
_OUTPUT_MODALITIES = {
    "AUDIO": "output_audio_tokens",
    "IMAGE": "output_image_tokens",
    "VIDEO": "output_video_tokens",
}


def usage_metadata_of(response: Any) -> Any:
    """Return a response's `usageMetadata` (REST) or `usage_metadata` (google-genai)."""
    metadata = field(response, "usageMetadata")
    if metadata is None:
        metadata = field(response, "usage_metadata")
    return metadata


def _get(metadata: Any, camel: str, snake: str) -> Any:
    value = field(metadata, camel)
    if value is None:
        value = field(metadata, snake)
    return value


def langchain_usage(metadata: Any) -> Usage:
    """Normalize a LangChain `UsageMetadata` (`AIMessage.usage_metadata`), which is inclusive.

    It shares the attribute name `usage_metadata` with google-genai responses, so it arrives
    here.
    """
    fields = view(metadata)
    input_details = view(fields.get("input_token_details"))
    output_details = view(fields.get("output_token_details"))
    details: dict[str, int] = {}
    add_detail(details, "input_audio_tokens", count_at(input_details, "audio"))
    add_detail(details, "output_audio_tokens", count_at(output_details, "audio"))
    return make_usage(
        count_at(fields, "input_tokens"),
        count_at(fields, "output_tokens"),
        cache_read_tokens=count_at(input_details, "cache_read"),
        cache_write_tokens=count_at(input_details, "cache_creation"),
        reasoning_tokens=count_at(output_details, "reasoning"),
        details=details,
    )


def gemini_usage(metadata: Any) -> Usage:
    """Normalize Gemini usage metadata in either spelling.

    `promptTokenCount` includes cached tokens but excludes the tool-use prompt
    (`toolUsePromptTokenCount`: search results or code output fed back to the model), and
    `candidatesTokenCount` excludes thoughts (`thoughtsTokenCount`), so both sides are sums.
    The per-modality lists do not always add up to the totals, so they only fill `details`.
    """
    prompt = count(_get(metadata, "promptTokenCount", "prompt_token_count"), "promptTokenCount")
    tool_prompt = count(
        _get(metadata, "toolUsePromptTokenCount", "tool_use_prompt_token_count"),
        "toolUsePromptTokenCount",
    )
    cached = count(
        _get(metadata, "cachedContentTokenCount", "cached_content_token_count"),
        "cachedContentTokenCount",
    )
    candidates = count(
        _get(metadata, "candidatesTokenCount", "candidates_token_count"), "candidatesTokenCount"
    )
    thoughts = count(
        _get(metadata, "thoughtsTokenCount", "thoughts_token_count"), "thoughtsTokenCount"
    )

    details: dict[str, int] = {}
    if tool_prompt:
        details["input_tool_tokens"] = tool_prompt
    modality_details(
        _get(metadata, "promptTokensDetails", "prompt_tokens_details"), _PROMPT_MODALITIES, details
    )
    modality_details(
        _get(metadata, "toolUsePromptTokensDetails", "tool_use_prompt_tokens_details"),
        _PROMPT_MODALITIES,
        details,
    )
    modality_details(
        _get(metadata, "cacheTokensDetails", "cache_tokens_details"), _CACHE_MODALITIES, details
    )
    modality_details(
        _get(metadata, "candidatesTokensDetails", "candidates_tokens_details"),
        _OUTPUT_MODALITIES,
        details,
    )

    if cached > prompt:
        note_contradiction(
            "google",
            "cached exceeds prompt",
            f"cachedContentTokenCount {cached} > promptTokenCount {prompt}",
        )
    return make_usage(
        prompt + tool_prompt,
        candidates + thoughts,
        cache_read_tokens=cached,
        reasoning_tokens=thoughts,
        details=details,
    )
