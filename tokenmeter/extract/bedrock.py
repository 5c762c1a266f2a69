"""Usage of Amazon Bedrock: Converse and ConverseStream, and InvokeModel response headers."""

from __future__ import annotations

from typing import Any

from tokenmeter.extract._base import Fields, add_detail, count, count_at, make_usage, view
from tokenmeter.usage import Usage

__all__ = ["converse_usage", "invoke_model_header_usage"]

_TTL_DETAILS = {"5m": "cache_write_5m_tokens", "1h": "cache_write_1h_tokens"}


def converse_usage(usage: Any) -> Usage:
    """Normalize a Converse `usage` dict (boto3 or raw JSON).

    `inputTokens` excludes cache reads and writes, as on Anthropic's API, so the billed
    prompt is the sum of the three. The raw JSON repeats the cache counts as
    `cacheReadInputTokenCount` and `cacheWriteInputTokenCount`; one spelling is read, never
    both. Thinking tokens are inside `outputTokens` and not broken out.
    """
    fields = view(usage)
    uncached = count_at(fields, "inputTokens")
    output = count_at(fields, "outputTokens")
    cache_read = _either(fields, "cacheReadInputTokens", "cacheReadInputTokenCount")
    cache_write = _either(fields, "cacheWriteInputTokens", "cacheWriteInputTokenCount")

    details: dict[str, int] = {}
    for entry in fields.get("cacheDetails") or ():
        entry_fields = view(entry)
        key = _TTL_DETAILS.get(str(entry_fields.get("ttl")))
        if key is not None:
            add_detail(details, key, count_at(entry_fields, "inputTokens"))

    return make_usage(
        uncached + cache_read + cache_write,
        output,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        details=details,
    )


def _either(fields: Fields, name: str, duplicate: str) -> int:
    value = fields.get(name)
    if value is None:
        return count_at(fields, duplicate)
    return count(value, name)


_HEADER_PREFIX = "x-amzn-bedrock-"


def invoke_model_header_usage(headers: Any) -> Usage | None:
    """Read the token-count headers of an InvokeModel response, or `None` when absent.

    boto3 returns InvokeModel bodies as a stream the caller consumes, but the HTTP headers
    (`ResponseMetadata.HTTPHeaders`) keep the counts.
    """
    if not headers:
        return None
    lowered = {str(key).lower(): value for key, value in dict(headers).items()}
    input_header = lowered.get(_HEADER_PREFIX + "input-token-count")
    output_header = lowered.get(_HEADER_PREFIX + "output-token-count")
    if input_header is None and output_header is None:
        return None

    uncached = count(input_header, "x-amzn-bedrock-input-token-count")
    output = count(output_header, "x-amzn-bedrock-output-token-count")
    cache_read = count(
        lowered.get(_HEADER_PREFIX + "cache-read-input-token-count"),
        "x-amzn-bedrock-cache-read-input-token-count",
    )
    cache_write = count(
        lowered.get(_HEADER_PREFIX + "cache-write-input-token-count"),
        "x-amzn-bedrock-cache-write-input-token-count",
    )
    # NOTE: assumes the input header excludes cache tokens, as Converse's inputTokens does;
    # no recorded response with cache headers was available to confirm it.
    return make_usage(
        uncached + cache_read + cache_write,
        output,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
    )
