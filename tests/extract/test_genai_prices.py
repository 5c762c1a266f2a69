"""Our readings agree with `genai_prices.extract_usage` wherever it reads a payload.

Every payload where the two differ is listed in `DIFFERENCES` with the reason, which
`docs/providers.md` explains too. The test fails when the list goes stale either way.
"""

from __future__ import annotations

from typing import Any

import genai_prices
import pytest
from extract_payloads import MANIFEST, is_stream, load

from tokenmeter.extract import read_response

# genai-prices provider id and API flavor for each manifest API.
_GENAI_PRICES_API = {
    "openai.chat": "chat",
    "openai.responses": "responses",
    "anthropic.messages": "default",
    "xai.responses": "responses",
    "xai.grpc": "default",
    "groq.chat": "default",
    "mistral.chat": "default",
    "cohere.v2.chat": "default",
    "bedrock.converse": "default",
    "gemini.generate_content": "default",
}
_GENAI_PRICES_PROVIDER = {
    "gemini": "google",
    "bedrock": "aws",
    "xai": "x-ai",
}

DIFFERENCES = {
    "cohere_v2_chat_cached_tokens.json": "genai-prices drops Cohere's cached_tokens; we keep it",
    "mistral_chat_num_cached_tokens.json": "genai-prices misses Mistral's top-level "
    "num_cached_tokens",
    "gemini_sdk_snake_case_model_dump.json": "genai-prices reads only camelCase usageMetadata",
    "groq_compound_usage_breakdown.json": "genai-prices rejects the unpriced model groq/compound",
    "xai_responses_docs_additive.json": "genai-prices rejects the model name 'latest'",
}

_FIELDS = ("input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens")

COMPARED = [
    entry for entry in MANIFEST if not is_stream(entry) and entry["api"] in _GENAI_PRICES_API
]


def _theirs(entry: dict[str, Any]) -> dict[str, int] | None:
    """Return genai-prices' reading of a payload, or `None` when it raises.

    genai-prices raises on payloads without usage (`usage: null`), where we read `None`.
    """
    provider = _GENAI_PRICES_PROVIDER.get(entry["provider"], entry["provider"])
    try:
        extracted = genai_prices.extract_usage(
            load(entry["file"]), provider_id=provider, api_flavor=_GENAI_PRICES_API[entry["api"]]
        )
    except (ValueError, LookupError):
        return None
    usage = extracted.usage
    values = {name: getattr(usage, name) or 0 for name in _FIELDS}
    values["reasoning_tokens"] = getattr(usage, "output_reasoning_tokens", 0) or 0
    for name in ("cache_write_5m_tokens", "cache_write_1h_tokens", "web_searches"):
        value = getattr(usage, name, 0) or 0
        if value:
            values[name] = value
    for name in ("input_audio_tokens", "output_audio_tokens"):
        value = getattr(usage, name, 0) or 0
        if value:
            values[name] = value
    return values


def _ours(entry: dict[str, Any], keys: list[str]) -> dict[str, int] | None:
    usage = read_response(load(entry["file"])).usage
    if usage is None:
        return None
    values = {name: getattr(usage, name) for name in (*_FIELDS, "reasoning_tokens")}
    for name in keys:
        if name not in values:
            values[name] = usage.details.get(name, 0)
    return values


@pytest.mark.parametrize("entry", COMPARED, ids=[entry["file"] for entry in COMPARED])
def test_reading_matches_genai_prices(entry: dict[str, Any]) -> None:
    theirs = _theirs(entry)
    ours = _ours(entry, list(theirs or ()))

    if entry["file"] in DIFFERENCES:
        assert ours != theirs, f"no longer differs: {DIFFERENCES[entry['file']]}"
    else:
        assert ours == theirs


def test_differences_name_compared_payloads() -> None:
    compared = {entry["file"] for entry in COMPARED}

    assert set(DIFFERENCES) <= compared
