"""Tests of `describe_prices`, the text behind a future `tokenmeter prices MODEL` command."""

from __future__ import annotations

from datetime import UTC, datetime

from genai_prices import __version__ as GENAI_PRICES_VERSION

from tokenmeter.pricing import describe_prices, set_price_overrides


def test_table_model_lists_rates_and_tiers() -> None:
    text = describe_prices("claude-sonnet-4-5-20250929", "anthropic")

    lines = text.splitlines()
    assert lines[0] == (
        "Model 'claude-sonnet-4-5' of provider 'anthropic', "
        "requested as 'claude-sonnet-4-5-20250929' (provider 'anthropic')."
    )
    assert lines[1].startswith(f"Prices from genai-prices {GENAI_PRICES_VERSION}, in effect at ")
    assert (
        "  input_tokens: $3 per million; $6 per million when a round has over 200,000 "
        "prompt tokens" in lines
    )
    assert any(line.startswith("  cache_write_1h_tokens: $6 per million") for line in lines)
    assert "  web_searches: $10 per thousand" in lines


def test_period_end_shown() -> None:
    text = describe_prices("deepseek-chat", "deepseek", at=datetime(2026, 6, 1, 12, tzinfo=UTC))

    assert "in effect at 2026-06-01 12:00:00 UTC until 2026-06-01 16:30:00 UTC." in text
    assert "  input_tokens: $0.27 per million" in text


def test_override_source_and_fees() -> None:
    set_price_overrides(
        {
            "models": {
                "my-model": {"input": "1.50", "output": 2, "per_request": "0.001"},
            },
            "discounts": {"models": {"my-model": 10}},
        }
    )

    text = describe_prices("my-model")

    assert "Prices from overrides mapping sha256:" in text
    assert "  input_tokens: $1.5 per million" in text
    assert "  requests (a fee per round): $1 per thousand" in text
    assert "\nDiscount: 10% off every price above.\n" in text
    assert text.splitlines()[-1].startswith("Costs record the source 'overrides mapping sha256:")


def test_unpriced_model_says_how_to_add() -> None:
    text = describe_prices("no-such-model-xyz", "openai")

    assert text.startswith("No price for model 'no-such-model-xyz' (provider 'openai')")
    assert "TOKENMETER_PRICES" in text
