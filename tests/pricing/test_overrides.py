"""Tests of price overrides: custom models, discounts, provenance and validation of the file."""

from __future__ import annotations

import hashlib
import logging
import re
from decimal import Decimal
from pathlib import Path

import pytest
from genai_prices import __version__ as GENAI_PRICES_VERSION
from genai_prices.types import ModelPrice, Tier, TieredPrices
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.pricing._usages import genai_usage, usages
from tokenmeter import Usage
from tokenmeter.pricing import (
    PriceOverrides,
    estimate_cost,
    load_price_overrides,
    set_price_overrides,
)

FULL_MODEL = """
[models."my-finetune"]
provider = "openai"
input = 3.0
cached_input = 0.3
cache_write_5m = 3.75
cache_write_1h = 6
output = 15.0
reasoning = 20
per_request = 0.001
per_web_search = 0.01
tiers = [{ above = 200000, input = 6.0, output = 22.5 }]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "prices.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_custom_model_from_file(tmp_path: Path) -> None:
    path = write(tmp_path, FULL_MODEL)
    set_price_overrides(path)
    usage = Usage(
        11_000,
        1000,
        cache_read_tokens=4000,
        cache_write_tokens=3000,
        reasoning_tokens=400,
        details={"cache_write_1h_tokens": 1000, "web_searches": 2},
    )

    cost = estimate_cost(usage, "my-finetune", "openai")

    assert cost is not None
    assert cost.input_usd == Decimal("0.012")  # 4000 uncached at $3
    assert cost.cache_read_usd == Decimal("0.0012")  # 4000 at $0.30
    assert cost.cache_write_usd == Decimal("0.0135")  # 2000 at $3.75, 1000 at $6
    assert cost.output_usd == Decimal("0.017")  # 600 at $15, 400 reasoning at $20
    assert cost.other_usd == Decimal("0.021")  # one request at $0.001, two searches at $0.01
    assert cost.total_usd == Decimal("0.0647")
    assert cost.model_id == "my-finetune"
    assert cost.provider_id == "openai"


def test_custom_model_tier(tmp_path: Path) -> None:
    set_price_overrides(write(tmp_path, FULL_MODEL))

    at_threshold = estimate_cost(Usage(200_000, 1000), "my-finetune", "openai")
    over_threshold = estimate_cost(Usage(200_001, 1000), "my-finetune", "openai")

    assert at_threshold is not None
    assert over_threshold is not None
    assert at_threshold.input_usd == Decimal("0.6")
    assert at_threshold.output_usd == Decimal("0.015")
    assert over_threshold.input_usd == Decimal("1.200006")
    assert over_threshold.output_usd == Decimal("0.0225")


def test_source_names_file_and_hash(tmp_path: Path) -> None:
    path = write(tmp_path, FULL_MODEL)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    set_price_overrides(path)

    cost = estimate_cost(Usage(10, 10), "my-finetune", "openai")

    assert cost is not None
    assert cost.source == f"overrides {path} sha256:{digest}"


def test_override_wins_over_table() -> None:
    set_price_overrides({"models": {"gpt-4o": {"input": "1", "output": "2"}}})

    cost = estimate_cost(Usage(1_000_000, 1_000_000), "gpt-4o-2024-08-06", "openai")

    assert cost is not None
    assert cost.total_usd == Decimal("3")
    assert cost.source.startswith("overrides mapping sha256:")


def test_override_limited_to_its_provider() -> None:
    set_price_overrides({"models": {"my-model": {"provider": "bedrock", "input": 1, "output": 2}}})

    assert estimate_cost(Usage(10, 10), "my-model", "aws") is not None
    assert estimate_cost(Usage(10, 10), "my-model", "bedrock") is not None
    assert estimate_cost(Usage(10, 10), "my-model", None) is not None
    assert estimate_cost(Usage(10, 10), "my-model", "openai") is None


def test_override_for_provider_not_in_table() -> None:
    set_price_overrides({"models": {"llama-local": {"input": 0.1, "output": 0.2}}})

    cost = estimate_cost(Usage(1_000_000, 0), "llama-local", "vllm")

    assert cost is not None
    assert cost.total_usd == Decimal("0.1")
    assert cost.provider_id == "vllm"


def test_override_matches_prefixed_id() -> None:
    set_price_overrides({"models": {"My-Model": {"input": 1, "output": 2}}})

    cost = estimate_cost(Usage(1_000_000, 0), "openrouter/my-model", "openrouter")

    assert cost is not None
    assert cost.model_id == "My-Model"


def test_provider_discount() -> None:
    set_price_overrides({"discounts": {"providers": {"anthropic": 10}}})
    usage = Usage(11040, 300, cache_write_tokens=2000, cache_read_tokens=9000)

    cost = estimate_cost(usage, "claude-sonnet-4-5", "anthropic")

    assert cost is not None
    assert cost.total_usd == Decimal("0.013338")
    assert cost.output_usd == Decimal("0.00405")
    assert cost.source.startswith(
        f"genai-prices {GENAI_PRICES_VERSION}, 10% off per overrides mapping sha256:"
    )


def test_provider_discount_by_alias() -> None:
    set_price_overrides({"discounts": {"providers": {"bedrock": 50}}})

    cost = estimate_cost(Usage(1_000_000, 0), "us.amazon.nova-pro-v1:0", "aws")
    undiscounted = estimate_cost(Usage(1_000_000, 0), "gpt-4o", "openai")

    assert cost is not None
    assert cost.total_usd == Decimal("0.4")
    assert undiscounted is not None
    assert undiscounted.total_usd == Decimal("2.5")


def test_model_discount_replaces_provider_discount() -> None:
    set_price_overrides({"discounts": {"providers": {"openai": 10}, "models": {"gpt-4o": 50}}})

    discounted = estimate_cost(Usage(1_000_000, 0), "gpt-4o-2024-08-06", "openai")
    provider_only = estimate_cost(Usage(1_000_000, 0), "gpt-4o-mini", "openai")

    assert discounted is not None
    assert discounted.total_usd == Decimal("1.25")
    assert provider_only is not None
    assert provider_only.total_usd == Decimal("0.135")


def test_discount_applies_to_custom_model() -> None:
    set_price_overrides(
        {
            "models": {"my-model": {"provider": "openai", "input": 2, "output": 4}},
            "discounts": {"providers": {"openai": 25}},
        }
    )

    cost = estimate_cost(Usage(1_000_000, 1_000_000), "my-model", "openai")

    assert cost is not None
    assert cost.total_usd == Decimal("4.5")


def test_full_discount_costs_zero() -> None:
    set_price_overrides({"discounts": {"models": {"gpt-4o": 100}}})

    cost = estimate_cost(Usage(1000, 1000), "gpt-4o", "openai")

    assert cost is not None
    assert cost.total_usd == 0


def test_mapping_and_file_agree(tmp_path: Path) -> None:
    from_file = load_price_overrides(write(tmp_path, FULL_MODEL))
    from_mapping = load_price_overrides(
        {
            "models": {
                "my-finetune": {
                    "provider": "openai",
                    "input": 3.0,
                    "cached_input": "0.3",
                    "cache_write_5m": Decimal("3.75"),
                    "cache_write_1h": 6,
                    "output": 15,
                    "reasoning": 20,
                    "per_request": 0.001,
                    "per_web_search": 0.01,
                    "tiers": [{"above": 200_000, "input": 6, "output": 22.5}],
                }
            }
        }
    )

    assert from_file.models == from_mapping.models


def test_set_none_removes_overrides() -> None:
    set_price_overrides({"models": {"gpt-4o": {"input": 1, "output": 2}}})
    set_price_overrides(None)

    cost = estimate_cost(Usage(1_000_000, 0), "gpt-4o", "openai")

    assert cost is not None
    assert cost.total_usd == Decimal("2.5")


def test_set_accepts_loaded_overrides() -> None:
    overrides = load_price_overrides({"models": {"gpt-4o": {"input": 1, "output": 2}}})

    assert set_price_overrides(overrides) is overrides
    cost = estimate_cost(Usage(1_000_000, 0), "gpt-4o", "openai")
    assert cost is not None
    assert cost.total_usd == Decimal("1")


def test_env_variable_names_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENMETER_PRICES", str(write(tmp_path, FULL_MODEL)))

    cost = estimate_cost(Usage(100_000, 0), "my-finetune", "openai")

    assert cost is not None
    assert cost.total_usd == Decimal("0.301")


def test_bad_env_file_logged_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, "[models.x]\ninput = -1\noutput = 1\n")
    monkeypatch.setenv("TOKENMETER_PRICES", str(path))
    caplog.set_level(logging.ERROR, logger="tokenmeter.pricing")

    cost = estimate_cost(Usage(1_000_000, 0), "gpt-4o", "openai")

    assert cost is not None
    assert cost.total_usd == Decimal("2.5")
    assert len(caplog.records) == 1
    assert "TOKENMETER_PRICES is ignored" in caplog.records[0].getMessage()
    assert str(path) in caplog.records[0].getMessage()


def test_failed_set_keeps_previous(tmp_path: Path) -> None:
    set_price_overrides({"models": {"gpt-4o": {"input": 1, "output": 2}}})

    with pytest.raises(ValueError, match=re.escape("models.'gpt-4o'.input is -1")):
        set_price_overrides({"models": {"gpt-4o": {"input": -1, "output": 2}}})

    cost = estimate_cost(Usage(1_000_000, 0), "gpt-4o", "openai")
    assert cost is not None
    assert cost.total_usd == Decimal("1")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[models."m"]\ninput = -1\noutput = 1\n',
            "models.'m'.input is -1; expected a price in USD: a number >= 0 or a decimal string",
        ),
        (
            '[models."m"]\ninput = "cheap"\noutput = 1\n',
            "models.'m'.input is 'cheap'; expected a price in USD",
        ),
        ('[models."m"]\ninput = 1\n', "models.'m'.output is missing; expected USD per million"),
        (
            '[models."m"]\ninput = 1\noutput = 1\ncached = 0.1\n',
            "models.'m'.cached is an unknown key; expected one of input, cached_input,",
        ),
        (
            '[models."m"]\ninput = 1\noutput = 1\ncache_write_1h = 2\n',
            "models.'m'.cache_write_1h is set without cache_write_5m; expected cache_write_5m",
        ),
        (
            '[models."m"]\ninput = 1\noutput = 1\ntiers = [{ above = -5, input = 2 }]\n',
            "models.'m'.tiers[0].above is -5; expected a whole number of prompt tokens",
        ),
        (
            '[models."m"]\ninput = 1\noutput = 1\ntiers = [{ above = 5, cached_input = 2 }]\n',
            "models.'m'.tiers[0].cached_input has no base price; expected models.'m'.cached_input",
        ),
        (
            '[models."m"]\ninput = 1\noutput = 1\n'
            "tiers = [{ above = 5, input = 2 }, { above = 5, input = 3 }]\n",
            "models.'m'.tiers repeats above = 5; expected distinct thresholds",
        ),
        (
            '[models."m"]\ninput = 1\noutput = 1\nprovider = 7\n',
            "models.'m'.provider is 7; expected a provider id",
        ),
        ("[discounts.providers]\nopenai = 120\n", "discounts.providers.openai is 120"),
        ("[discounts]\nvendors = {}\n", "discounts.vendors is an unknown key"),
        ("[prices]\nx = 1\n", "'prices' is an unknown table"),
        ("models = 3\n", "models is 3; expected a table"),
        ('[models."m"]\ninput = true\noutput = 1\n', "models.'m'.input is True"),
        ("[models.m\n", "not a valid TOML file"),
    ],
)
def test_bad_file_names_file_key_and_form(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)

    with pytest.raises(ValueError, match=re.escape(message)) as raised:
        load_price_overrides(path)

    assert str(raised.value).startswith(str(path))


def test_missing_file_named() -> None:
    with pytest.raises(
        ValueError, match=r"cannot read the price overrides file '/no/such/p\.toml'"
    ):
        load_price_overrides("/no/such/p.toml")


def test_bad_mapping_named() -> None:
    with pytest.raises(ValueError, match=r"^prices mapping: models.'m'.output is missing"):
        load_price_overrides({"models": {"m": {"input": 1}}})


def test_wrong_source_type_raises() -> None:
    with pytest.raises(
        TypeError, match="price overrides must be a path to a TOML file or a mapping"
    ):
        load_price_overrides(42)  # type: ignore[arg-type]


def test_loaded_overrides_describe_contents() -> None:
    overrides = load_price_overrides(
        {
            "models": {"m": {"input": "1.5", "output": 2, "provider": "Gemini"}},
            "discounts": {"models": {"GPT-4o": 5}},
        }
    )

    assert isinstance(overrides, PriceOverrides)
    assert overrides.models["m"].prices == {"input": Decimal("1.5"), "output": Decimal(2)}
    assert overrides.models["m"].provider == "google"
    assert overrides.model_discounts == {"gpt-4o": Decimal(5)}


prices_strategy = st.decimals(min_value=0, max_value=100, places=3, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(
    base=st.fixed_dictionaries(
        {
            "input": prices_strategy,
            "cached_input": prices_strategy,
            "cache_write_5m": prices_strategy,
            "cache_write_1h": prices_strategy,
            "output": prices_strategy,
            "reasoning": prices_strategy,
            "per_request": prices_strategy,
            "per_web_search": prices_strategy,
        }
    ),
    tier_input=prices_strategy,
    tier_output=prices_strategy,
    usage=usages(),
)
def test_custom_price_equals_genai_model_price(
    base: dict[str, Decimal], tier_input: Decimal, tier_output: Decimal, usage: Usage
) -> None:
    entry: dict[str, object] = dict(base)
    entry["tiers"] = [{"above": 100_000, "input": tier_input, "output": tier_output}]
    set_price_overrides({"models": {"custom-model": entry}})
    genai_price = ModelPrice(
        input_mtok=TieredPrices(base["input"], [Tier(100_000, tier_input)]),
        cache_read_mtok=base["cached_input"],
        cache_write_mtok=base["cache_write_5m"],
        cache_write_1h_mtok=base["cache_write_1h"],
        output_mtok=TieredPrices(base["output"], [Tier(100_000, tier_output)]),
        output_reasoning_mtok=base["reasoning"],
        requests_kcount=base["per_request"] * 1000,
        web_searches_kcount=base["per_web_search"] * 1000,
    )

    cost = estimate_cost(usage, "custom-model", "openai")
    try:
        expected = genai_price.calc_price(genai_usage(usage))["total_price"]
    except ValueError:
        assert cost is None
        return

    assert cost is not None
    assert cost.total_usd == expected
