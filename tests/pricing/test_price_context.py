"""Batch and service-tier prices: genai-prices' price variants, published batch discounts."""

from __future__ import annotations

import logging
import pickle
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from genai_prices import Usage as GenaiUsage
from genai_prices import calc_price, data_snapshot

from tokenmeter import Usage
from tokenmeter._billing import BilledUsage, billed_as_reported, with_billing
from tokenmeter.pricing import PUBLISHED_BATCH_DISCOUNTS, describe_prices, estimate_cost

AFTER_VARIANTS = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
BEFORE_VARIANTS = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
ROUND = Usage(10_000, 2000, cache_read_tokens=3000)
CONTEXTS = [
    {"processing": "batch"},
    {"service_tier": "flex"},
    {"service_tier": "priority"},
    {"service_tier": "fast"},
    {"service_tier": "default"},
    {"speed": "fast"},
]


def variant_models() -> list[tuple[str, str]]:
    return [
        (provider.id, model.id)
        for provider in data_snapshot.get_snapshot().providers
        for model in provider.models
        if model.price_variants
    ]


@pytest.mark.parametrize(("provider", "model"), variant_models())
def test_variant_prices_match_genai_prices(provider: str, model: str) -> None:
    genai_usage = GenaiUsage(input_tokens=10_000, output_tokens=2000, cache_read_tokens=3000)
    for context in CONTEXTS:
        billed = BilledUsage.of(ROUND, context, None)
        try:
            expected = calc_price(
                genai_usage,
                model,
                provider_id=provider,
                genai_request_timestamp=AFTER_VARIANTS,
                price_context=context,
            ).total_price
        except (LookupError, ValueError):
            assert estimate_cost(billed, model, provider, at=AFTER_VARIANTS) is None
            continue

        cost = estimate_cost(billed, model, provider, at=AFTER_VARIANTS)

        assert cost is not None, context
        if "% off tokens per" in cost.source:
            # No batch price in the table for this model: the published discount applies.
            continue
        assert cost.total_usd == expected, context


def test_batch_keyword_marks_round() -> None:
    plain = estimate_cost(ROUND, "gpt-5", "openai", at=AFTER_VARIANTS)
    batch = estimate_cost(ROUND, "gpt-5", "openai", at=AFTER_VARIANTS, batch=True)

    assert plain is not None
    assert batch is not None
    assert batch.total_usd == plain.total_usd / 2
    assert batch.source.endswith(", batch prices")


def test_batch_false_overrides_usage_mark() -> None:
    marked = with_billing(ROUND, batch=True)

    cost = estimate_cost(marked, "gpt-5", "openai", at=AFTER_VARIANTS, batch=False)
    standard = estimate_cost(ROUND, "gpt-5", "openai", at=AFTER_VARIANTS)

    assert cost == standard


def test_usage_mark_sets_batch() -> None:
    marked = with_billing(ROUND, batch=True)

    assert estimate_cost(marked, "gpt-5", "openai", at=AFTER_VARIANTS) == estimate_cost(
        ROUND, "gpt-5", "openai", at=AFTER_VARIANTS, batch=True
    )


def test_published_discount_named_in_source() -> None:
    cost = estimate_cost(ROUND, "gpt-4o", "openai", at=BEFORE_VARIANTS, batch=True)

    assert cost is not None
    published = PUBLISHED_BATCH_DISCOUNTS["openai"]
    assert published.percent_off == 50
    assert cost.source.endswith(f", batch at 50% off tokens per {published.source}")
    assert "platform.openai.com/docs/guides/batch" in cost.source


def test_batch_without_known_price_costs_standard(caplog: pytest.LogCaptureFixture) -> None:
    usage = Usage(1000, 100)

    with caplog.at_level(logging.WARNING, logger="tokenmeter.pricing"):
        batch = estimate_cost(usage, "deepseek-chat", "deepseek", at=AFTER_VARIANTS, batch=True)
        estimate_cost(usage, "deepseek-chat", "deepseek", at=AFTER_VARIANTS, batch=True)
    standard = estimate_cost(usage, "deepseek-chat", "deepseek", at=AFTER_VARIANTS)

    assert batch is not None
    assert standard is not None
    assert batch.total_usd == standard.total_usd
    assert batch.source.endswith(", no batch price known, so standard prices")
    assert caplog.text.count("no batch price for model 'deepseek-chat'") == 1


def test_unknown_tier_costs_standard() -> None:
    cost = estimate_cost(ROUND, "gpt-5", "openai", at=AFTER_VARIANTS, service_tier="scale")
    standard = estimate_cost(ROUND, "gpt-5", "openai", at=AFTER_VARIANTS)

    assert cost is not None
    assert standard is not None
    assert cost.total_usd == standard.total_usd
    assert cost.source.endswith(", no service tier scale price known, so standard prices")


def test_tier_before_table_lists_it() -> None:
    cost = estimate_cost(ROUND, "gpt-5", "openai", at=BEFORE_VARIANTS, service_tier="flex")
    standard = estimate_cost(ROUND, "gpt-5", "openai", at=BEFORE_VARIANTS)

    assert cost is not None
    assert standard is not None
    assert cost.total_usd == standard.total_usd


def test_standard_tier_names_keep_source() -> None:
    for tier in ("default", "standard", "auto", "on_demand", "DEFAULT"):
        cost = estimate_cost(ROUND, "gpt-5", "openai", at=AFTER_VARIANTS, service_tier=tier)

        assert cost is not None
        assert cost == estimate_cost(ROUND, "gpt-5", "openai", at=AFTER_VARIANTS), tier


def test_tier_batch_means_batch() -> None:
    # Anthropic reports `service_tier: "batch"` on Message Batches results.
    cost = estimate_cost(
        ROUND, "claude-sonnet-4-5", "anthropic", at=AFTER_VARIANTS, service_tier="batch"
    )

    assert cost == estimate_cost(
        ROUND, "claude-sonnet-4-5", "anthropic", at=AFTER_VARIANTS, batch=True
    )


def test_variants_skip_other_owner() -> None:
    # Google Vertex serves Anthropic's models; genai-prices applies a model's variants only
    # under the provider that lists it.
    via_google = estimate_cost(ROUND, "claude-sonnet-4-5", "google", at=AFTER_VARIANTS)
    batch_via_google = estimate_cost(
        ROUND, "claude-sonnet-4-5", "google", at=AFTER_VARIANTS, service_tier="flex"
    )

    assert via_google is not None
    assert batch_via_google is not None
    assert batch_via_google.total_usd == via_google.total_usd


def test_billed_usage_keeps_counts_and_context() -> None:
    billed = with_billing(ROUND, batch=True, reported_cost_usd=Decimal("0.0123"))

    assert isinstance(billed, BilledUsage)
    assert billed == ROUND
    assert billed.price_context == {"processing": "batch"}
    assert billed.reported_cost_usd == Decimal("0.0123")
    assert type(billed + billed) is Usage
    assert repr(billed) == (
        "BilledUsage(input_tokens=10000, cache_read_tokens=3000, output_tokens=2000, "
        "price_context={'processing': 'batch'}, reported_cost_usd=Decimal('0.0123'))"
    )


def test_billed_usage_pickles() -> None:
    billed = with_billing(ROUND, service_tier="Flex", reported_cost_usd=Decimal("1E-10"))

    copy = pickle.loads(pickle.dumps(billed))

    assert isinstance(copy, BilledUsage)
    assert copy == billed
    assert copy.price_context == {"service_tier": "flex"}
    assert copy.reported_cost_usd == Decimal("1E-10")


def test_standard_tier_stays_plain_usage() -> None:
    assert billed_as_reported(ROUND, "default") is ROUND
    assert billed_as_reported(ROUND, "standard", "standard") is ROUND
    assert billed_as_reported(ROUND, None) is ROUND
    assert billed_as_reported(ROUND, 7) is ROUND


def test_describe_lists_batch_and_tier_prices() -> None:
    lines = describe_prices("gpt-5", "openai", at=AFTER_VARIANTS).splitlines()

    assert "Prices that replace the rates above for some rounds:" in lines
    assert (
        "  service_tier = flex, from 2026-10-12: input_tokens $0.625 per million; "
        "cache_read_tokens $0.0625 per million; output_tokens $5 per million"
    ) in lines
    assert any(
        line.startswith("Batch rounds before the batch prices above start: 50%") for line in lines
    )


def test_describe_names_missing_batch_price() -> None:
    lines = describe_prices("deepseek-chat", "deepseek").splitlines()

    assert "Batch rounds: no batch price known, so the standard rates apply." in lines


def test_describe_names_published_discount() -> None:
    lines = describe_prices("claude-3-5-haiku-latest", "anthropic").splitlines()

    assert (
        "Batch rounds: 50% off every token rate, per "
        f"{PUBLISHED_BATCH_DISCOUNTS['anthropic'].source}."
    ) in lines
