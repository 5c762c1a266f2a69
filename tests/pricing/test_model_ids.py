"""Tests that model ids as users and SDKs write them find the right genai-prices model."""

from __future__ import annotations

import pytest

from tokenmeter import Usage
from tokenmeter.pricing import estimate_cost

BEDROCK_SONNET = "regional.anthropic.claude-sonnet-4-5-20250929-v1:0"

CASES = [
    # dated snapshots and -latest aliases
    ("openai", "gpt-4o-2024-08-06", "openai", "gpt-4o"),
    ("openai", "gpt-4o-mini-2024-07-18", "openai", "gpt-4o-mini"),
    ("anthropic", "claude-sonnet-4-5-20250929", "anthropic", "claude-sonnet-4-5"),
    ("anthropic", "claude-opus-4-1-20250805", "anthropic", "claude-opus-4-1"),
    ("xai", "grok-3-mini-latest", "x-ai", "grok-3-mini"),
    ("mistral", "mistral-large-2411", "mistral", "mistral-large"),
    ("cohere", "command-r-plus-08-2024", "cohere", "command-r-plus"),
    # provider/ prefixes, LiteLLM and Gemini API style
    ("openai", "openai/gpt-4o", "openai", "gpt-4o"),
    (None, "openai/gpt-4o", "openai", "gpt-4o"),
    (None, "anthropic/claude-sonnet-4-5-20250929", "anthropic", "claude-sonnet-4-5"),
    (None, "gemini/gemini-2.5-flash", "google", "gemini-2.5-flash"),
    ("google", "models/gemini-2.5-flash", "google", "gemini-2.5-flash"),
    (None, "xai/grok-3-mini", "x-ai", "grok-3-mini"),
    (None, "azure/gpt-4o", "openai", "gpt-4o"),
    (None, "deepseek/deepseek-chat", "deepseek", "deepseek-chat"),
    (None, "groq/llama-3.1-8b-instant", "groq", "llama-3.1-8b-instant"),
    ("litellm", "anthropic/claude-sonnet-4-5", "anthropic", "claude-sonnet-4-5"),
    # OpenRouter ids keep their vendor prefix
    ("openrouter", "anthropic/claude-sonnet-4.5", "openrouter", "anthropic/claude-sonnet-4.5"),
    (
        "openrouter",
        "openrouter/anthropic/claude-sonnet-4.5",
        "openrouter",
        "anthropic/claude-sonnet-4.5",
    ),
    (None, "openrouter/openai/gpt-4o", "openrouter", "openai/gpt-4o"),
    # Groq serves models whose ids contain a slash
    ("groq", "openai/gpt-oss-120b", "groq", "openai/gpt-oss-120b"),
    # Bedrock: cross-region prefixes, vendor prefixes, version suffixes, ARNs
    ("bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0", "aws", BEDROCK_SONNET),
    ("bedrock", "eu.anthropic.claude-sonnet-4-5-20250929-v1:0", "aws", BEDROCK_SONNET),
    ("bedrock", "apac.anthropic.claude-sonnet-4-5-20250929-v1:0", "aws", BEDROCK_SONNET),
    (
        "bedrock",
        "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "aws",
        "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
    ),
    ("aws", "anthropic.claude-sonnet-4-5-20250929-v1:0", "aws", BEDROCK_SONNET),
    (None, "us.anthropic.claude-sonnet-4-5-20250929-v1:0", "aws", BEDROCK_SONNET),
    (None, "bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0", "aws", BEDROCK_SONNET),
    (
        "bedrock",
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/"
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "aws",
        BEDROCK_SONNET,
    ),
    ("bedrock", "us.amazon.nova-pro-v1:0", "aws", "amazon.nova-pro-v1:0"),
    ("anthropic", "us.anthropic.claude-sonnet-4-5-20250929-v1:0", "anthropic", "claude-sonnet-4-5"),
    # Vertex AI model@version ids
    ("vertex_ai", "claude-sonnet-4-5@20250929", "google", "claude-sonnet-4-5"),
    ("anthropic", "claude-sonnet-4-5@20250929", "anthropic", "claude-sonnet-4-5"),
    (None, "vertex_ai/claude-sonnet-4-5@20250929", "google", "claude-sonnet-4-5"),
    # Azure deployments of OpenAI models use OpenAI's price
    ("azure", "gpt-4o-2024-11-20", "openai", "gpt-4o"),
]


@pytest.mark.parametrize(("provider", "model", "provider_id", "model_id"), CASES)
def test_model_id_forms(provider: str | None, model: str, provider_id: str, model_id: str) -> None:
    cost = estimate_cost(Usage(1000, 100), model, provider)

    assert cost is not None
    assert cost.model_id == model_id
    assert cost.provider_id == provider_id


def test_model_id_case_ignored() -> None:
    lower = estimate_cost(Usage(1000, 100), "gpt-4o", "openai")
    upper = estimate_cost(Usage(1000, 100), "GPT-4o", "OpenAI")

    assert lower is not None
    assert upper == lower


def test_unknown_dated_snapshot_unpriced() -> None:
    # No fallback to a newer model of the same family: that price would be a guess.
    assert estimate_cost(Usage(1000, 100), "mistral-small-2503", "mistral") is None
