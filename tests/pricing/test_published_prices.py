"""Costs computed by hand from the providers' published list prices, one case per rate.

Each case names the published prices it was computed from and the date they were published
or last changed. Expected totals are `sum(tokens * USD per million) / 1,000,000`, worked out
in the case's comment. The rounds are priced at a fixed moment, so the table's dated prices
(batch and service-tier prices listed from 2026-10-12) give the same result on any day.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from tokenmeter import Usage
from tokenmeter.pricing import estimate_cost, set_price_overrides

# After genai-prices lists batch and tier prices (from 2026-10-12 and 2026-10-14).
AFTER_VARIANTS = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
# Before it lists them, when OpenAI's and Anthropic's published batch discounts apply.
BEFORE_VARIANTS = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)

SONNET_4_5 = (
    "Anthropic pricing page, Claude Sonnet 4.5, as of 2025-09-29: $3/MTok input, $15 output, "
    "$0.30 cache read, $3.75 5-minute cache write, $6 1-hour cache write; over 200K prompt "
    "tokens $6 input, $22.50 output, $0.60 cache read, $7.50 5-minute write, $12 1-hour write; "
    "web search $10 per 1,000 searches"
)
SONNET_4_5_BATCH = (
    "Anthropic pricing page, Claude Sonnet 4.5 Message Batches, as of 2025-09-29: "
    "$1.50/MTok input, $7.50 output"
)
HAIKU_3_5 = (
    "Anthropic pricing page, Claude Haiku 3.5, as of 2024-11-04: $0.80/MTok input, $4 output; "
    "Message Batches API 50% off, as of 2024-10-08"
)
BEDROCK_SONNET_4_5 = (
    "Amazon Bedrock pricing page, Claude Sonnet 4.5, as of 2025-09-29: global cross-region "
    "inference $3/MTok input, $15 output; regional (us., eu., apac. profiles and in-region "
    "ids) 10% more, $3.30 input, $16.50 output"
)
GPT_4O = (
    "OpenAI pricing page, gpt-4o, as of 2024-10-01: $2.50/MTok input, $1.25 cached input, "
    "$10 output; Batch API 50% off, as of 2024-04-15"
)
GPT_5 = (
    "OpenAI pricing page, gpt-5, as of 2025-08-07: $1.25/MTok input, $0.125 cached input, "
    "$10 output; Flex and Batch $0.625 input, $0.0625 cached, $5 output; Priority $2.50 "
    "input, $0.25 cached, $20 output"
)
GPT_4O_MINI = (
    "OpenAI pricing page, gpt-4o-mini, as of 2024-07-18: $0.15/MTok input, $0.075 cached "
    "input, $0.60 output"
)
GEMINI_2_5_FLASH = (
    "Gemini API pricing page, gemini-2.5-flash, as of 2025-06-17: $0.30/MTok text input, $1.00 "
    "audio input, $2.50 output including thinking, $0.03 cached text"
)
GEMINI_2_5_PRO = (
    "Gemini API pricing page, gemini-2.5-pro, as of 2025-06-17: $1.25/MTok input and $10 "
    "output up to 200K prompt tokens, $2.50 input and $15 output above"
)
GROK_3_MINI = (
    "xAI models page, grok-3-mini, as of 2025-04-09: $0.30/MTok input, $0.50 output, "
    "reasoning billed as output"
)


@dataclass(frozen=True)
class Case:
    """One round, the price it was computed from, and the cost worked out by hand."""

    name: str
    model: str
    provider: str | None
    usage: Usage
    expected_usd: Decimal
    published: str
    at: datetime = AFTER_VARIANTS
    options: Mapping[str, Any] = field(default_factory=dict)


CASES = [
    # 40 uncached * 3 + 9,000 read * 0.30 + 1,000 5m * 3.75 + 1,000 1h * 6 + 300 out * 15
    # = 120 + 2,700 + 3,750 + 6,000 + 4,500 = 17,070 millionths.
    Case(
        "sonnet every token rate",
        "claude-sonnet-4-5",
        "anthropic",
        Usage(
            11040,
            300,
            cache_read_tokens=9000,
            cache_write_tokens=2000,
            details={"cache_write_1h_tokens": 1000},
        ),
        Decimal("0.01707"),
        SONNET_4_5,
    ),
    # 1,000 * 3 + 100 * 15 + 2 searches * $0.01 = 0.003 + 0.0015 + 0.02.
    Case(
        "sonnet web searches",
        "claude-sonnet-4-5",
        "anthropic",
        Usage(1000, 100, details={"web_search_requests": 2}),
        Decimal("0.0245"),
        SONNET_4_5,
    ),
    # At the threshold: 200,000 * 3 + 1,000 * 15 = 615,000 millionths.
    Case(
        "sonnet tier at threshold",
        "claude-sonnet-4-5",
        "anthropic",
        Usage(200_000, 1000),
        Decimal("0.615"),
        SONNET_4_5,
    ),
    # One token over: every token at the tier, 200,001 * 6 + 1,000 * 22.5 = 1,222,506.
    Case(
        "sonnet tier just over threshold",
        "claude-sonnet-4-5",
        "anthropic",
        Usage(200_001, 1000),
        Decimal("1.222506"),
        SONNET_4_5,
    ),
    # Over the tier with cache: 1 uncached * 6 + 190,000 read * 0.6 + 5,000 5m * 7.5
    # + 5,000 1h * 12 + 10 out * 22.5 = 6 + 114,000 + 37,500 + 60,000 + 225.
    Case(
        "sonnet tier cache rates",
        "claude-sonnet-4-5",
        "anthropic",
        Usage(
            200_001,
            10,
            cache_read_tokens=190_000,
            cache_write_tokens=10_000,
            details={"cache_write_1h_tokens": 5000},
        ),
        Decimal("0.211731"),
        SONNET_4_5,
    ),
    # Message Batches, the table's batch prices: 1,000 * 1.5 + 500 * 7.5 = 5,250.
    Case(
        "sonnet batch from table",
        "claude-sonnet-4-5",
        "anthropic",
        Usage(1000, 500),
        Decimal("0.00525"),
        SONNET_4_5_BATCH,
        options={"batch": True},
    ),
    # Before the table lists batch prices, Anthropic's 50% applies: (3,000 + 7,500) / 2.
    Case(
        "sonnet batch by published discount",
        "claude-sonnet-4-5",
        "anthropic",
        Usage(1000, 500),
        Decimal("0.00525"),
        SONNET_4_5_BATCH,
        at=BEFORE_VARIANTS,
        options={"batch": True},
    ),
    # No batch price in the table at all: 50% of (1,000 * 0.8 + 500 * 4) = 1,400.
    Case(
        "haiku 3.5 batch by published discount",
        "claude-3-5-haiku-latest",
        "anthropic",
        Usage(1000, 500),
        Decimal("0.0014"),
        HAIKU_3_5,
        options={"batch": True},
    ),
    # Regional Bedrock: 1,000 * 3.3 + 500 * 16.5 = 3,300 + 8,250.
    Case(
        "bedrock us profile regional price",
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "bedrock",
        Usage(1000, 500),
        Decimal("0.01155"),
        BEDROCK_SONNET_4_5,
    ),
    Case(
        "bedrock eu profile regional price",
        "eu.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "bedrock",
        Usage(1000, 500),
        Decimal("0.01155"),
        BEDROCK_SONNET_4_5,
    ),
    # Global profile: 1,000 * 3 + 500 * 15 = 10,500.
    Case(
        "bedrock global profile price",
        "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "bedrock",
        Usage(1000, 500),
        Decimal("0.0105"),
        BEDROCK_SONNET_4_5,
    ),
    # 6,000 uncached * 2.5 + 4,000 cached * 1.25 + 500 * 10 = 15,000 + 5,000 + 5,000.
    Case(
        "gpt-4o cached input",
        "gpt-4o",
        "openai",
        Usage(10_000, 500, cache_read_tokens=4000),
        Decimal("0.025"),
        GPT_4O,
    ),
    # Batch before the table lists it: OpenAI's 50% off every token rate, cached included:
    # 6,000 * 1.25 + 4,000 * 0.625 + 500 * 5 = 7,500 + 2,500 + 2,500.
    Case(
        "gpt-4o batch by published discount",
        "gpt-4o",
        "openai",
        Usage(10_000, 500, cache_read_tokens=4000),
        Decimal("0.0125"),
        GPT_4O,
        at=BEFORE_VARIANTS,
        options={"batch": True},
    ),
    # 2,000 * 1.25 + 3,000 * 10 (reasoning is output) = 2,500 + 30,000.
    Case(
        "gpt-5 reasoning as output",
        "gpt-5",
        "openai",
        Usage(2000, 3000, reasoning_tokens=2500),
        Decimal("0.0325"),
        GPT_5,
    ),
    # Flex: 1,000 uncached * 0.625 + 1,000 cached * 0.0625 + 3,000 * 5 = 625 + 62.5 + 15,000.
    Case(
        "gpt-5 flex tier",
        "gpt-5",
        "openai",
        Usage(2000, 3000, cache_read_tokens=1000),
        Decimal("0.0156875"),
        GPT_5,
        options={"service_tier": "flex"},
    ),
    # Priority: 1,000 * 2.5 + 1,000 * 0.25 + 3,000 * 20 = 2,500 + 250 + 60,000.
    Case(
        "gpt-5 priority tier",
        "gpt-5",
        "openai",
        Usage(2000, 3000, cache_read_tokens=1000),
        Decimal("0.06275"),
        GPT_5,
        options={"service_tier": "priority"},
    ),
    # Batch, the table's batch prices: the same as flex.
    Case(
        "gpt-5 batch from table",
        "gpt-5",
        "openai",
        Usage(2000, 3000, cache_read_tokens=1000),
        Decimal("0.0156875"),
        GPT_5,
        options={"batch": True},
    ),
    # The default tier is the standard price: 1,000 * 1.25 + 1,000 * 0.125 + 3,000 * 10.
    Case(
        "gpt-5 default tier",
        "gpt-5",
        "openai",
        Usage(2000, 3000, cache_read_tokens=1000),
        Decimal("0.031375"),
        GPT_5,
        options={"service_tier": "default"},
    ),
    # 1,000 * 0.15 + 1,000 * 0.075 + 100 * 0.6 = 150 + 75 + 60.
    Case(
        "gpt-4o-mini cached input",
        "gpt-4o-mini",
        "openai",
        Usage(2000, 100, cache_read_tokens=1000),
        Decimal("0.000285"),
        GPT_4O_MINI,
    ),
    # 1,000 text * 0.3 + 2,000 audio * 1.0 + 600 output (500 thinking) * 2.5
    # = 300 + 2,000 + 1,500.
    Case(
        "gemini flash audio and thinking",
        "gemini-2.5-flash",
        "google",
        Usage(3000, 600, reasoning_tokens=500, details={"input_audio_tokens": 2000}),
        Decimal("0.0038"),
        GEMINI_2_5_FLASH,
    ),
    # 10,000 read * 0.03 + 0 uncached + 100 * 2.5 = 300 + 250.
    Case(
        "gemini flash cached text",
        "gemini-2.5-flash",
        "google",
        Usage(10_000, 100, cache_read_tokens=10_000),
        Decimal("0.00055"),
        GEMINI_2_5_FLASH,
    ),
    # At 200,000: 200,000 * 1.25 + 1,000 * 10; just over: 200,001 * 2.5 + 1,000 * 15.
    Case(
        "gemini pro tier at threshold",
        "gemini-2.5-pro",
        "google",
        Usage(200_000, 1000),
        Decimal("0.26"),
        GEMINI_2_5_PRO,
    ),
    Case(
        "gemini pro tier just over threshold",
        "gemini-2.5-pro",
        "google",
        Usage(200_001, 1000),
        Decimal("0.5150025"),
        GEMINI_2_5_PRO,
    ),
    # 200 * 0.3 + 450 (400 reasoning) * 0.5 = 60 + 225.
    Case(
        "grok-3-mini reasoning as output",
        "grok-3-mini",
        "xai",
        Usage(200, 450, reasoning_tokens=400),
        Decimal("0.000285"),
        GROK_3_MINI,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_published_price(case: Case) -> None:
    cost = estimate_cost(case.usage, case.model, case.provider, at=case.at, **case.options)

    assert cost is not None, case.published
    assert cost.total_usd == case.expected_usd, case.published
    parts = [cost.input_usd, cost.cache_read_usd, cost.cache_write_usd, cost.output_usd]
    assert sum(parts) + cost.other_usd == cost.total_usd


def test_sonnet_components_by_hand() -> None:
    case = CASES[0]

    cost = estimate_cost(case.usage, case.model, case.provider, at=case.at)

    assert cost is not None
    assert cost.input_usd == Decimal("0.00012")
    assert cost.cache_read_usd == Decimal("0.0027")
    assert cost.cache_write_usd == Decimal("0.00975")
    assert cost.output_usd == Decimal("0.0045")
    assert cost.other_usd == 0


def test_override_wins_over_table() -> None:
    # A negotiated price of $2/MTok input and $10 output: 1,000 * 2 + 500 * 10 = 7,000.
    set_price_overrides({"models": {"claude-sonnet-4-5": {"input": 2, "output": 10}}})

    cost = estimate_cost(Usage(1000, 500), "claude-sonnet-4-5-20250929", "anthropic")

    assert cost is not None
    assert cost.total_usd == Decimal("0.007")
    assert cost.source.startswith("overrides mapping sha256:")


def test_override_wins_for_bedrock_id() -> None:
    # Bedrock ids are matched without their region, vendor and version, not without a date.
    set_price_overrides(
        {
            "models": {
                "claude-sonnet-4-5-20250929": {"input": 2, "output": 10, "provider": "bedrock"}
            }
        }
    )

    cost = estimate_cost(Usage(1000, 500), "us.anthropic.claude-sonnet-4-5-20250929-v1:0", "aws")

    assert cost is not None
    assert cost.total_usd == Decimal("0.007")


def test_provider_discount_on_published_price() -> None:
    # 10% off $3/$15: (3,000 + 7,500) * 0.9 = 9,450 millionths.
    set_price_overrides({"discounts": {"providers": {"anthropic": 10}}})

    cost = estimate_cost(Usage(1000, 500), "claude-sonnet-4-5", "anthropic", at=AFTER_VARIANTS)

    assert cost is not None
    assert cost.total_usd == Decimal("0.00945")


def test_discount_and_batch_combine() -> None:
    # Table batch prices $1.50/$7.50, then 10% off: 5,250 * 0.9 = 4,725 millionths.
    set_price_overrides({"discounts": {"models": {"claude-sonnet-4-5": 10}}})

    cost = estimate_cost(
        Usage(1000, 500), "claude-sonnet-4-5", "anthropic", at=AFTER_VARIANTS, batch=True
    )

    assert cost is not None
    assert cost.total_usd == Decimal("0.004725")


def test_override_model_batch_gets_published_discount() -> None:
    set_price_overrides(
        {"models": {"my-gpt": {"input": 2, "output": 8, "per_request": 0.01, "provider": "openai"}}}
    )

    cost = estimate_cost(Usage(1000, 1000), "my-gpt", "openai", batch=True)

    # Tokens at half price, the per-request fee in full: 1,000 + 4,000 + 10,000.
    assert cost is not None
    assert cost.total_usd == Decimal("0.015")
    assert cost.other_usd == Decimal("0.01")


@pytest.mark.parametrize(
    ("model", "provider"),
    [
        ("in-house-llm", None),
        ("in-house-llm", "openai"),
        ("claude-sonnet-4-5", "acme-cloud"),
        ("gpt-4o", "anthropic"),
    ],
)
def test_unknown_model_has_no_cost(model: str, provider: str | None) -> None:
    assert estimate_cost(Usage(1000, 500), model, provider) is None
    assert estimate_cost(Usage(1000, 500), model, provider, batch=True) is None
