"""Cross-checks of `estimate_cost` against genai-prices' own `calc_price`, over its whole table."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from genai_prices import calc_price, data_snapshot
from genai_prices.types import TieredPrices
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.pricing._usages import genai_usage, usages
from tokenmeter import Usage
from tokenmeter.pricing import estimate_cost


def _priceable_pairs() -> list[tuple[str, str]]:
    """Return every (provider id, model id) that genai-prices finds by that id and can price."""
    snapshot = data_snapshot.get_snapshot()
    pairs = []
    for provider in snapshot.providers:
        for model in provider.models:
            try:
                found_provider, found = snapshot.find_provider_model(
                    model.id, None, provider.id, None
                )
            except LookupError:
                continue
            if found is model and found_provider is provider:
                pairs.append((provider.id, model.id))
    return pairs


PAIRS = _priceable_pairs()
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _genai_total(usage: Usage, model: str, provider: str, at: datetime) -> Decimal | None:
    """Return genai-prices' total, or `None` where it raises ValueError for the usage."""
    with warnings.catch_warnings():
        # Some table entries carry price keys that genai-prices skips with a UserWarning.
        warnings.simplefilter("ignore", UserWarning)
        try:
            return calc_price(
                genai_usage(usage), model, provider_id=provider, genai_request_timestamp=at
            ).total_price
        except ValueError:
            return None


moments = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pair=st.sampled_from(PAIRS), usage=usages(), at=moments)
def test_equals_calc_price(pair: tuple[str, str], usage: Usage, at: datetime) -> None:
    provider, model = pair

    cost = estimate_cost(usage, model, provider, at=at)
    expected = _genai_total(usage, model, provider, at)

    if expected is None:
        assert cost is None
    else:
        assert cost is not None
        assert cost.total_usd == expected


@settings(max_examples=400, deadline=None)
@given(pair=st.sampled_from(PAIRS), usage=usages(consistent=False))
def test_inconsistent_usage_agrees(pair: tuple[str, str], usage: Usage) -> None:
    provider, model = pair

    cost = estimate_cost(usage, model, provider, at=NOW)
    expected = _genai_total(usage, model, provider, NOW)

    assert (None if cost is None else cost.total_usd) == expected


@settings(max_examples=300, deadline=None)
@given(
    usage=usages(),
    provider_model=st.sampled_from(
        [
            ("anthropic", "claude-sonnet-4-5"),
            ("anthropic", "claude-opus-4-1"),
            ("google", "gemini-2.5-flash"),
            ("openai", "gpt-realtime"),
            ("openai", "gpt-4o"),
        ]
    ),
)
def test_breakdown_matches_calc_price(usage: Usage, provider_model: tuple[str, str]) -> None:
    provider, model = provider_model
    raw = genai_usage(usage)
    try:
        expected = calc_price(raw, model, provider_id=provider, genai_request_timestamp=NOW)
    except ValueError:
        return

    cost = estimate_cost(usage, model, provider, at=NOW)

    assert cost is not None
    # These models price only token units and requests-free tool calls beside tokens.
    assert cost.input_usd + cost.cache_read_usd + cost.cache_write_usd == expected.input_price
    assert cost.output_usd == expected.output_price
    assert cost.total_usd == expected.total_price


def _tiered_cases() -> list[tuple[str, str, int]]:
    cases = []
    snapshot = data_snapshot.get_snapshot()
    for provider_id, model_id in PAIRS:
        _, model = snapshot.find_provider_model(model_id, None, provider_id, None)
        starts = {
            tier.start
            for price in model.get_prices(NOW).__dict__.values()
            if isinstance(price, TieredPrices)
            for tier in price.tiers
        }
        cases.extend((provider_id, model_id, start) for start in sorted(starts))
    return cases


TIERED = _tiered_cases()


def test_table_has_tiered_models() -> None:
    assert len(TIERED) >= 10


@pytest.mark.parametrize(("provider", "model", "start"), TIERED)
@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_tiers_at_and_over_threshold(provider: str, model: str, start: int, offset: int) -> None:
    usage = Usage(
        start + offset,
        5000,
        cache_read_tokens=start // 4,
        cache_write_tokens=1000,
        reasoning_tokens=1000,
        details={"cache_write_1h_tokens": 400, "web_searches": 1},
    )

    cost = estimate_cost(usage, model, provider, at=NOW)
    expected = _genai_total(usage, model, provider, NOW)

    assert expected is not None
    assert cost is not None
    assert cost.total_usd == expected


def test_every_priceable_model_is_priced() -> None:
    usage = Usage(12_345, 678, cache_read_tokens=1000, reasoning_tokens=100)
    mismatches = []

    for provider, model in PAIRS:
        for at in (NOW, NOW - timedelta(days=400), NOW + timedelta(hours=7)):
            cost = estimate_cost(usage, model, provider, at=at)
            expected = _genai_total(usage, model, provider, at)
            total = None if cost is None else cost.total_usd
            if total != expected:
                mismatches.append((provider, model, at, total, expected))

    assert len(PAIRS) > 1000
    assert mismatches == []
