"""Canonical provider ids, the aliases accepted for them, and provider hints in model names."""

from __future__ import annotations

__all__ = ["PROVIDER_IDS", "canonical_provider", "provider_from_model"]

PROVIDER_IDS: tuple[str, ...] = (
    "openai",
    "azure",
    "anthropic",
    "google",
    "xai",
    "bedrock",
    "deepseek",
    "mistral",
    "groq",
    "cohere",
    "openrouter",
)

_ALIASES: dict[str, str] = {
    "openai": "openai",
    "azure": "azure",
    "azure_openai": "azure",
    "azure-openai": "azure",
    "azureopenai": "azure",
    "azure_ai": "azure",
    "anthropic": "anthropic",
    "claude": "anthropic",
    "google": "google",
    "gemini": "google",
    "google-gla": "google",
    "google_genai": "google",
    "google-genai": "google",
    "google-vertex": "google",
    "vertex": "google",
    "vertex_ai": "google",
    "vertexai": "google",
    "vertex-ai": "google",
    "xai": "xai",
    "x-ai": "xai",
    "x.ai": "xai",
    "grok": "xai",
    "bedrock": "bedrock",
    "aws": "bedrock",
    "aws.bedrock": "bedrock",
    "aws_bedrock": "bedrock",
    "aws-bedrock": "bedrock",
    "amazon-bedrock": "bedrock",
    "amazon_bedrock": "bedrock",
    "deepseek": "deepseek",
    "mistral": "mistral",
    "mistralai": "mistral",
    "mistral_ai": "mistral",
    "groq": "groq",
    "cohere": "cohere",
    "openrouter": "openrouter",
}


def canonical_provider(name: str) -> str:
    """Return the canonical provider id for `name`, which may be an id or an alias.

    Matching ignores case and surrounding spaces.

    Raises:
        ValueError: if `name` is no known provider id or alias.
    """
    if not isinstance(name, str):
        raise ValueError(
            f"provider must be a str naming a provider, got {name!r}; "
            f"accepted ids: {', '.join(PROVIDER_IDS)}"
        )
    canonical = _ALIASES.get(name) or _ALIASES.get(name.strip().lower())
    if canonical is None:
        raise ValueError(
            f"unknown provider {name!r}; accepted ids: {', '.join(PROVIDER_IDS)} "
            f"(aliases such as gemini, vertex_ai, x-ai, grok, aws, aws.bedrock, claude, "
            f"azure_openai are accepted too)"
        )
    return canonical


# Model name prefixes that name the provider serving them on its own API. Shared model
# families (Llama, gpt-oss) are left out because many providers serve them.
_MODEL_PREFIXES: tuple[tuple[str, str], ...] = (
    ("grok", "xai"),
    ("deepseek", "deepseek"),
    ("claude", "anthropic"),
    ("gemini", "google"),
    ("mistral", "mistral"),
    ("magistral", "mistral"),
    ("ministral", "mistral"),
    ("codestral", "mistral"),
    ("devstral", "mistral"),
    ("pixtral", "mistral"),
    ("open-mistral", "mistral"),
    ("open-mixtral", "mistral"),
    ("voxtral", "mistral"),
    ("command", "cohere"),
)

_ALL_PREFIXES = tuple(prefix for prefix, _ in _MODEL_PREFIXES)


def provider_from_model(model: str | None) -> str | None:
    """Guess the provider from a model name such as `grok-3-mini`, or return `None`."""
    if not model or not isinstance(model, str):
        return None
    lowered = model.lower()
    if not lowered.startswith(_ALL_PREFIXES):
        return None
    for prefix, provider in _MODEL_PREFIXES:
        if lowered.startswith(prefix):
            return provider
    return None
