"""Cost of pricing one round with `estimate_cost`, against genai-prices' `calc_price`.

`estimate_cost` caches each model's rates after its first lookup. The warm figures are what
the delivery thread pays per round, and the cold figure is the first lookup of a model.
Run as a script (`python -m tests.benchmarks bench_pricing`) or with pytest-benchmark
(`pytest tests/benchmarks/bench_pricing.py -o addopts=""`).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from genai_prices import Usage as GenaiUsage
from genai_prices import calc_price

from tokenmeter import Usage
from tokenmeter.pricing import _estimate, estimate_cost

from ._timing import median_per_call_ns

ROUNDS: dict[str, tuple[Usage, str, str]] = {
    "claude-sonnet-4-5, cache, tiers": (
        Usage(11040, 300, cache_write_tokens=2000, cache_read_tokens=9000),
        "claude-sonnet-4-5",
        "anthropic",
    ),
    "gpt-4o": (Usage(1200, 80, cache_read_tokens=1024), "gpt-4o", "openai"),
    "gemini-2.5-flash, thoughts": (
        Usage(1000, 600, reasoning_tokens=500),
        "gemini-2.5-flash",
        "google",
    ),
    "bedrock id, web search": (
        Usage(5000, 400, details={"web_searches": 2}),
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "bedrock",
    ),
    "deepseek-chat, time of day": (Usage(3000, 500), "deepseek-chat", "deepseek"),
}


def genai_usage(usage: Usage) -> GenaiUsage:
    return GenaiUsage(
        input_tokens=usage.input_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        output_tokens=usage.output_tokens,
        output_reasoning_tokens=usage.reasoning_tokens,
        **usage.details,
    )


def warm_loop(usage: Usage, model: str, provider: str) -> Callable[[int], None]:
    def run(calls: int) -> None:
        for _ in range(calls):
            estimate_cost(usage, model, provider)

    return run


def calc_price_loop(usage: Usage, model: str, provider: str) -> Callable[[int], None]:
    raw = genai_usage(usage)
    provider_id = {"bedrock": "aws"}.get(provider, provider)

    def run(calls: int) -> None:
        for _ in range(calls):
            calc_price(raw, model, provider_id=provider_id)

    return run


def cold_lookup_ns(repeats: int = 50) -> float:
    """Median time of a first `estimate_cost` call for a model, lookup and plan included."""
    usage, model, provider = ROUNDS["claude-sonnet-4-5, cache, tiers"]
    samples = []
    for _ in range(repeats):
        _estimate._reset()
        start = time.perf_counter_ns()
        estimate_cost(usage, model, provider)
        samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples)


MIX: list[tuple[str, str]] = [
    ("gpt-4o", "openai"),
    ("gpt-4o-mini", "openai"),
    ("gpt-4.1", "openai"),
    ("o3-mini", "openai"),
    ("gpt-5", "openai"),
    ("claude-sonnet-4-5", "anthropic"),
    ("claude-haiku-4-5", "anthropic"),
    ("claude-opus-4-1", "anthropic"),
    ("gemini-2.5-flash", "google"),
    ("gemini-2.5-pro", "google"),
    ("gemini-2.0-flash", "google"),
    ("grok-3-mini", "xai"),
    ("grok-4", "xai"),
    ("deepseek-chat", "deepseek"),
    ("deepseek-reasoner", "deepseek"),
    ("mistral-large-latest", "mistral"),
    ("llama-3.3-70b-versatile", "groq"),
    ("command-r-plus", "cohere"),
    ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "bedrock"),
    ("openai/gpt-4o", "openrouter"),
]
"""Twenty models across the providers, priced round after round in a stream."""


def mixed_stream_ns(rounds: int = 100_000) -> tuple[float, float, int]:
    """Median per-round time over a stream cycling through `MIX`, and the first-lookup cost.

    Returns `(warm ns per round, amortized ns per round including first lookups, priced)`.
    """
    usages = [Usage(1000 + 37 * n, 200 + 11 * n, cache_read_tokens=500) for n in range(len(MIX))]
    _estimate._reset()
    start = time.perf_counter_ns()
    priced = 0
    for index in range(rounds):
        model, provider = MIX[index % len(MIX)]
        if estimate_cost(usages[index % len(MIX)], model, provider) is not None:
            priced += 1
    amortized = (time.perf_counter_ns() - start) / rounds

    def run(calls: int) -> None:
        for index in range(calls):
            model, provider = MIX[index % len(MIX)]
            estimate_cost(usages[index % len(MIX)], model, provider)

    return median_per_call_ns(run, 20_000, 5), amortized, priced


def main() -> None:
    warm_ns, amortized_ns, priced = mixed_stream_ns()
    print(
        f"stream of 100,000 rounds over {len(MIX)} models ({priced} priced): "
        f"{warm_ns / 1000:.2f} µs per round warm, {amortized_ns / 1000:.2f} µs amortized "
        "with each model's first lookup"
    )
    print(f"{'round':34} {'estimate_cost':>14} {'calc_price':>12} {'ratio':>7}")
    for label, (usage, model, provider) in ROUNDS.items():
        warm: list[float] = []
        reference: list[float] = []
        for _ in range(5):
            # Interleaved, so that a noisy moment of the machine hits both alike.
            warm.append(median_per_call_ns(warm_loop(usage, model, provider), 20_000, 3))
            reference.append(median_per_call_ns(calc_price_loop(usage, model, provider), 500, 3))
        mine = statistics.median(warm)
        theirs = statistics.median(reference)
        print(f"{label:34} {mine / 1000:11.2f} µs {theirs / 1000:9.1f} µs {theirs / mine:6.0f}x")
    print(f"{'first lookup of a model':34} {cold_lookup_ns() / 1000:11.1f} µs")


def test_estimate_cost_warm(benchmark: Any) -> None:
    usage, model, provider = ROUNDS["claude-sonnet-4-5, cache, tiers"]
    estimate_cost(usage, model, provider)

    cost = benchmark(estimate_cost, usage, model, provider)

    assert cost is not None


def test_calc_price_reference(benchmark: Any) -> None:
    usage, model, provider = ROUNDS["claude-sonnet-4-5, cache, tiers"]

    price = benchmark(calc_price, genai_usage(usage), model, provider_id=provider)

    assert price.total_price > 0


if __name__ == "__main__":
    main()
