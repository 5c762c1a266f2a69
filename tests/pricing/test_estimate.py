"""Tests of `estimate_cost`: the prices it gives, what it does with unknown models, its caches."""

from __future__ import annotations

import copy
import logging
import threading
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, localcontext

import pytest
from genai_prices import Usage as GenaiUsage
from genai_prices import __version__ as GENAI_PRICES_VERSION
from genai_prices import calc_price, data_snapshot
from genai_prices.types import ModelPrice

from tokenmeter import Cost, Usage
from tokenmeter.pricing import estimate_cost

SONNET = "claude-sonnet-4-5"


def test_gpt_4o_seven_prompt_tokens() -> None:
    cost = estimate_cost(Usage(7), "gpt-4o", "openai")

    assert cost is not None
    assert cost.total_usd == Decimal("0.0000175")
    assert str(cost.total_usd) == "0.0000175"
    assert cost.input_usd == Decimal("0.0000175")


def test_anthropic_cache_write_and_read() -> None:
    usage = Usage(11040, 300, cache_write_tokens=2000, cache_read_tokens=9000)

    cost = estimate_cost(usage, SONNET, "anthropic")

    assert cost == Cost(
        total_usd=Decimal("0.01482"),
        input_usd=Decimal("0.00012"),
        cache_read_usd=Decimal("0.0027"),
        cache_write_usd=Decimal("0.0075"),
        output_usd=Decimal("0.0045"),
        other_usd=Decimal(0),
        model_id=SONNET,
        provider_id="anthropic",
        source=f"genai-prices {GENAI_PRICES_VERSION}",
    )


def test_xai_reasoning_billed_as_output() -> None:
    cost = estimate_cost(Usage(200, 450, reasoning_tokens=400), "grok-3-mini", "xai")

    assert cost is not None
    assert cost.total_usd == Decimal("0.000285")
    assert cost.provider_id == "x-ai"


def test_gemini_flash_with_thoughts() -> None:
    cost = estimate_cost(Usage(1000, 600, reasoning_tokens=500), "gemini-2.5-flash", "google")

    assert cost is not None
    assert cost.total_usd == Decimal("0.0018")


def test_tiers_apply_per_round() -> None:
    round_usage = Usage(120_000, 0)

    one_round = estimate_cost(round_usage, SONNET, "anthropic")
    both_as_one = estimate_cost(round_usage + round_usage, SONNET, "anthropic")

    assert one_round is not None
    assert both_as_one is not None
    assert one_round.total_usd * 2 == Decimal("0.72")
    assert both_as_one.total_usd == Decimal("1.44")


def test_tier_starts_just_over_threshold() -> None:
    at_threshold = estimate_cost(Usage(200_000, 1000), SONNET, "anthropic")
    over_threshold = estimate_cost(Usage(200_001, 1000), SONNET, "anthropic")

    assert at_threshold is not None
    assert over_threshold is not None
    assert at_threshold.input_usd == Decimal("0.6")
    assert at_threshold.output_usd == Decimal("0.015")
    assert over_threshold.input_usd == Decimal("1.200006")
    assert over_threshold.output_usd == Decimal("0.0225")


def test_one_hour_cache_writes_priced_apart() -> None:
    usage = Usage(
        10_000,
        0,
        cache_write_tokens=3000,
        details={"cache_write_1h_tokens": 1000},
    )

    cost = estimate_cost(usage, SONNET, "anthropic")

    assert cost is not None
    # 2000 five-minute writes at $3.75 and 1000 one-hour writes at $6 per million.
    assert cost.cache_write_usd == Decimal("0.0135")
    assert cost.input_usd == Decimal("0.021")


def test_web_searches_in_other() -> None:
    usage = Usage(1000, 100, details={"web_searches": 3})

    cost = estimate_cost(usage, SONNET, "anthropic")

    assert cost is not None
    assert cost.other_usd == Decimal("0.03")
    assert cost.total_usd == Decimal("0.003") + Decimal("0.0015") + Decimal("0.03")


def test_web_search_requests_alias() -> None:
    named = estimate_cost(Usage(1000, 100, details={"web_searches": 2}), SONNET, "anthropic")
    aliased = estimate_cost(
        Usage(1000, 100, details={"web_search_requests": 2}), SONNET, "anthropic"
    )

    assert named is not None
    assert aliased == named


def test_file_search_calls_alias() -> None:
    cost = estimate_cost(Usage(1000, 100, details={"file_search_calls": 4}), "gpt-4o", "openai")

    assert cost is not None
    assert cost.other_usd == Decimal("0.01")


def test_audio_tokens_priced_apart() -> None:
    usage = Usage(1000, 500, details={"input_audio_tokens": 400, "output_audio_tokens": 100})

    cost = estimate_cost(usage, "gpt-realtime", "openai")

    assert cost is not None
    # 600 text at $4 + 400 audio at $32 in, 400 text at $16 + 100 audio at $64 out.
    assert cost.input_usd == Decimal("0.0152")
    assert cost.output_usd == Decimal("0.0128")


def test_components_add_up_to_total() -> None:
    usage = Usage(
        50_000,
        2000,
        cache_read_tokens=20_000,
        cache_write_tokens=5000,
        details={"web_searches": 1},
    )

    cost = estimate_cost(usage, SONNET, "anthropic")

    assert cost is not None
    parts = (
        cost.input_usd,
        cost.cache_read_usd,
        cost.cache_write_usd,
        cost.output_usd,
        cost.other_usd,
    )
    assert sum(parts) == cost.total_usd


def test_unknown_model_returns_none() -> None:
    assert estimate_cost(Usage(10, 10), "no-such-model-xyz", "openai") is None


def test_unknown_model_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="tokenmeter.pricing")

    for _ in range(3):
        estimate_cost(Usage(10, 10), "no-such-model-xyz", "openai")

    warnings = [r for r in caplog.records if r.name == "tokenmeter.pricing"]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "'no-such-model-xyz'" in message
    assert "TOKENMETER_PRICES" in message
    assert '[models."no-such-model-xyz"]' in message


def test_unknown_model_warns_per_provider(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="tokenmeter.pricing")

    estimate_cost(Usage(10, 10), "no-such-model-xyz", "openai")
    estimate_cost(Usage(10, 10), "no-such-model-xyz", "anthropic")
    estimate_cost(Usage(10, 10), "no-such-model-xyz", "openai")

    assert len(caplog.records) == 2


def test_unknown_provider_returns_none() -> None:
    assert estimate_cost(Usage(10, 10), "gpt-4o", "my-own-gateway") is None


def test_empty_model_returns_none() -> None:
    assert estimate_cost(Usage(10, 10), "", "openai") is None
    assert estimate_cost(Usage(10, 10), "   ", None) is None


def test_usage_of_wrong_type_raises() -> None:
    with pytest.raises(TypeError, match=r"usage must be a tokenmeter\.Usage, got \{'input_tokens'"):
        estimate_cost({"input_tokens": 1}, "gpt-4o", "openai")  # type: ignore[arg-type]


def test_inconsistent_usage_returns_none(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="tokenmeter.pricing")

    cost = estimate_cost(Usage(100, 10, cache_read_tokens=500), "gpt-4o", "openai")

    assert cost is None
    message = caplog.records[0].getMessage()
    assert "cache_read_tokens=500 is more than input_tokens=100, which should include it" in message


def test_inconsistent_usage_warning_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="tokenmeter.pricing")

    for _ in range(5):
        estimate_cost(Usage(100, 10, cache_read_tokens=500), "gpt-4o-mini", "openai")

    assert len(caplog.records) == 1


def test_ambiguous_audio_cache_reads_return_none() -> None:
    # Audio input and cache reads are both reported, but not how many cache reads were audio.
    usage = Usage(1000, 10, cache_read_tokens=200, details={"input_audio_tokens": 300})

    assert estimate_cost(usage, "gpt-realtime", "openai") is None


def test_unpriced_detail_keys_ignored() -> None:
    plain = estimate_cost(Usage(1000, 100), "gpt-4o", "openai")
    extra = estimate_cost(
        Usage(1000, 100, details={"advisor_input_tokens": 50, "num_sources_used": 2}),
        "gpt-4o",
        "openai",
    )

    assert plain is not None
    assert extra == plain


@pytest.mark.parametrize(
    ("provider", "expected"),
    [
        ("openai", "openai"),
        ("azure", "openai"),
        ("anthropic", "anthropic"),
        ("google", "google"),
        ("gemini", "google"),
        ("vertex_ai", "google"),
        ("xai", "x-ai"),
        ("x-ai", "x-ai"),
        ("bedrock", "aws"),
        ("aws", "aws"),
        ("aws.bedrock", "aws"),
        ("deepseek", "deepseek"),
        ("mistral", "mistral"),
        ("groq", "groq"),
        ("cohere", "cohere"),
        ("openrouter", "openrouter"),
        ("OpenAI", "openai"),
        (None, None),
    ],
)
def test_provider_ids_and_aliases(provider: str | None, expected: str | None) -> None:
    models = {
        "openai": "gpt-4o",
        "azure": "gpt-4o",
        "anthropic": SONNET,
        "google": "gemini-2.5-flash",
        "x-ai": "grok-3-mini",
        "aws": "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "deepseek": "deepseek-chat",
        "mistral": "mistral-large-latest",
        "groq": "llama-3.3-70b-versatile",
        "cohere": "command-r-plus",
        "openrouter": "openai/gpt-4o",
    }
    model = models[expected or "openai"]
    if provider in ("azure",):
        model = "gpt-4o"

    cost = estimate_cost(Usage(1000, 100), model, provider)

    assert cost is not None
    assert cost.provider_id == (expected or "openai")
    assert cost.total_usd > 0


def test_price_period_by_time_of_day() -> None:
    usage = Usage(1_000_000, 0)
    peak = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    off_peak = datetime(2026, 6, 1, 17, 0, tzinfo=UTC)

    at_peak = estimate_cost(usage, "deepseek-chat", "deepseek", at=peak)
    at_off_peak = estimate_cost(usage, "deepseek-chat", "deepseek", at=off_peak)
    at_peak_again = estimate_cost(usage, "deepseek-chat", "deepseek", at=peak)

    assert at_peak is not None
    assert at_off_peak is not None
    assert at_peak.total_usd == Decimal("0.27")
    assert at_off_peak.total_usd == Decimal("0.135")
    assert at_peak_again == at_peak


def test_price_period_boundaries_match_genai_prices() -> None:
    usage = Usage(1_000_000, 1000, cache_read_tokens=10_000)
    start = datetime(2026, 6, 1, 0, 0, tzinfo=UTC)
    moments = [start + timedelta(minutes=15 * step) for step in range(4 * 48)]
    moments += [datetime(2026, 6, 1, 16, 30, tzinfo=UTC) - timedelta(microseconds=1)]
    moments += [datetime(2026, 6, 2, 0, 30, 0, tzinfo=timezone(timedelta(hours=2)))]
    genai_usage = GenaiUsage(input_tokens=1_000_000, output_tokens=1000, cache_read_tokens=10_000)

    for moment in moments:
        cost = estimate_cost(usage, "deepseek-chat", "deepseek", at=moment)
        expected = calc_price(
            genai_usage, "deepseek-chat", provider_id="deepseek", genai_request_timestamp=moment
        )
        assert cost is not None
        assert cost.total_usd == expected.total_price, moment


def test_price_period_by_start_date() -> None:
    usage = Usage(1_000_000, 0, cache_read_tokens=1_000_000)
    before = datetime(2026, 10, 18, 23, 59, tzinfo=UTC)
    after = datetime(2026, 10, 19, 0, 0, tzinfo=UTC)

    old = estimate_cost(usage, "openai/gpt-4o", "openrouter", at=before)
    new = estimate_cost(usage, "openai/gpt-4o", "openrouter", at=after)

    assert old is not None
    assert new is not None
    assert old.cache_read_usd == 0
    assert old.total_usd == Decimal("2.5")
    assert new.cache_read_usd == Decimal("1.25")


def test_naive_at_is_utc() -> None:
    usage = Usage(1_000_000, 0)
    naive = datetime(2026, 6, 1, 17, 0)

    cost = estimate_cost(usage, "deepseek-chat", "deepseek", at=naive)

    assert cost is not None
    assert cost.total_usd == Decimal("0.135")


def test_caller_decimal_context_ignored() -> None:
    usage = Usage(11040, 300, cache_write_tokens=2000, cache_read_tokens=9000)

    with localcontext() as context:
        context.prec = 3
        cost = estimate_cost(usage, SONNET, "anthropic")

    assert cost is not None
    assert cost.total_usd == Decimal("0.01482")


def test_audio_hours_rounded_like_genai_prices() -> None:
    usage = Usage(0, 0, details={"audio_seconds": 7, "input_audio_seconds": 7})

    cost = estimate_cost(usage, "whisper-large-v3", "groq")
    expected = calc_price(
        GenaiUsage(audio_seconds=7, input_audio_seconds=7), "whisper-large-v3", provider_id="groq"
    )

    assert cost is not None
    assert cost.total_usd == expected.total_price


def test_new_snapshot_replaces_cached_prices() -> None:
    before = estimate_cost(Usage(1_000_000, 0), "gpt-4o", "openai")
    snapshot = data_snapshot.get_snapshot()
    providers = copy.deepcopy(snapshot.providers)
    openai = next(provider for provider in providers if provider.id == "openai")
    gpt_4o = next(model for model in openai.models if model.id == "gpt-4o")
    gpt_4o.prices = ModelPrice(input_mtok=Decimal("1"), output_mtok=Decimal("2"))

    data_snapshot.set_custom_snapshot(
        data_snapshot.DataSnapshot(providers=providers, from_auto_update=True)
    )
    after = estimate_cost(Usage(1_000_000, 0), "gpt-4o", "openai")

    assert before is not None
    assert before.total_usd == Decimal("2.5")
    assert after is not None
    assert after.total_usd == Decimal("1")


def test_threads_get_the_same_costs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="tokenmeter.pricing")
    cases = [
        (Usage(11040, 300, cache_write_tokens=2000, cache_read_tokens=9000), SONNET, "anthropic"),
        (Usage(1000, 600, reasoning_tokens=500), "gemini-2.5-flash", "google"),
        (Usage(7), "gpt-4o", "openai"),
        (Usage(300_000, 10), "gemini-2.5-pro", "gemini"),
        (Usage(10, 10), "unknown-model-for-threads", "openai"),
    ]
    expected = [
        calc_price(
            GenaiUsage(
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cache_read_tokens=usage.cache_read_tokens,
                cache_write_tokens=usage.cache_write_tokens,
            ),
            model,
            provider_id={"google": "google", "gemini": "google"}.get(provider, provider),
        ).total_price
        if model != "unknown-model-for-threads"
        else None
        for usage, model, provider in cases
    ]
    results: list[list[Decimal | None]] = []
    barrier = threading.Barrier(8)

    def price_all() -> None:
        barrier.wait()
        mine: list[Decimal | None] = []
        for _ in range(200):
            for usage, model, provider in cases:
                cost = estimate_cost(usage, model, provider)
                mine.append(None if cost is None else cost.total_usd)
        results.append(mine)

    threads = [threading.Thread(target=price_all) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(results) == 8
    for mine in results:
        assert mine == expected * 200
    assert len(caplog.records) == 1
