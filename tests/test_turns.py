"""Records of metered turns: cost components, provenance, reported costs, batch rounds."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from anthropic.types.messages import MessageBatchIndividualResponse
from genai_prices import __version__ as GENAI_PRICES_VERSION
from genai_prices import data_snapshot
from genai_prices.data_snapshot import DataSnapshot
from genai_prices.types import ModelPrice

import tokenmeter
from tokenmeter import AgentTurn, Usage, UsageRecord, meter, metered_turn
from tokenmeter.pricing import _estimate as pricing_state
from tokenmeter.pricing import estimate_cost, set_price_overrides
from tokenmeter.testing import MemorySink

PAYLOADS = Path(__file__).parent / "fixtures" / "payloads"
TABLE = f"genai-prices {GENAI_PRICES_VERSION}"

ANTHROPIC_CACHED = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [{"type": "text", "text": "done"}],
    "stop_reason": "end_turn",
    "usage": {
        "input_tokens": 40,
        "cache_creation_input_tokens": 2000,
        "cache_read_input_tokens": 9000,
        "output_tokens": 300,
    },
}

# One line of an OpenAI Batch API output file (platform.openai.com/docs/guides/batch).
OPENAI_BATCH_LINE = {
    "id": "batch_req_1",
    "custom_id": "request-1",
    "response": {
        "status_code": 200,
        "request_id": "req_1",
        "body": {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1780000000,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "hi"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500},
            "service_tier": "default",
        },
    },
    "error": None,
}
OPENAI_BATCH_ERROR_LINE = {
    "id": "batch_req_2",
    "custom_id": "request-2",
    "response": None,
    "error": {"code": "batch_expired", "message": "This request could not be executed"},
}

# One result of an Anthropic Message Batch (docs.anthropic.com, Message Batches results).
ANTHROPIC_BATCH_RESULT = {
    "custom_id": "request-1",
    "result": {
        "type": "succeeded",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-3-5-haiku-20241022",
            "content": [{"type": "text", "text": "hi"}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {
                "input_tokens": 1000,
                "output_tokens": 500,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "service_tier": "batch",
            },
        },
    },
}
ANTHROPIC_BATCH_ERRORED = {
    "custom_id": "request-2",
    "result": {"type": "errored", "error": {"type": "invalid_request", "message": "bad"}},
}


@pytest.fixture(autouse=True)
def _fresh_pricing() -> Any:
    pricing_state._reset()
    yield
    data_snapshot.set_custom_snapshot(None)
    pricing_state._reset()


def records_of(sink: MemorySink) -> list[UsageRecord]:
    assert tokenmeter.flush(timeout=10)
    return list(sink.records)


def payload(name: str) -> Any:
    return json.loads((PAYLOADS / f"{name}.json").read_text())


def openai_chat(prompt: int, completion: int, model: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-2",
        "object": "chat.completion",
        "model": model,
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
        **extra,
    }


def test_components_add_up(memory_sink: MemorySink) -> None:
    with meter(agent="bot") as m:
        m.add(ANTHROPIC_CACHED)
    [record] = records_of(memory_sink)

    # Anthropic's list prices for Claude Sonnet 4.5 ($3, $0.30 read, $3.75 write, $15 out):
    # 40 * 3 + 9,000 * 0.30 + 2,000 * 3.75 + 300 * 15 millionths.
    assert record.input_cost_usd == Decimal("0.00012")
    assert record.cache_read_cost_usd == Decimal("0.0027")
    assert record.cache_write_cost_usd == Decimal("0.0075")
    assert record.output_cost_usd == Decimal("0.0045")
    assert record.other_cost_usd == 0
    assert record.cost_usd == Decimal("0.01482")


def test_provenance_fields(memory_sink: MemorySink) -> None:
    with meter(agent="bot") as m:
        m.add(ANTHROPIC_CACHED)
    [record] = records_of(memory_sink)

    assert record.price_source == TABLE
    assert record.priced_at == record.timestamp
    assert record.reported_cost_usd is None
    assert record.schema_version == 2
    assert record.repriced_cost_usd is None


def test_rounds_usage_kept_per_round(memory_sink: MemorySink) -> None:
    with meter(agent="bot", model="gpt-4o", provider="openai") as m:
        m.add(Usage(120_000, 10))
        m.add(Usage(130_000, 20, cache_read_tokens=1000), model="gpt-4o-mini", batch=True)
        m.add({"error": {"message": "overloaded"}})
    [record] = records_of(memory_sink)

    assert record.rounds_usage is not None
    assert [(r.model, r.input_tokens, r.output_tokens) for r in record.rounds_usage] == [
        ("gpt-4o", 120_000, 10),
        ("gpt-4o-mini", 130_000, 20),
    ]
    assert record.rounds_usage[0].price_context == {}
    assert record.rounds_usage[1].price_context == {"processing": "batch"}
    assert record.rounds_usage[1].cache_read_tokens == 1000
    assert record.unmeasured_rounds == 1


def test_unmeasured_turn_has_no_price_time(memory_sink: MemorySink) -> None:
    with meter(agent="bot"):
        pass
    [record] = records_of(memory_sink)

    assert record.price_status == "unmeasured"
    assert record.priced_at is None
    assert record.rounds_usage == []
    assert record.input_cost_usd is None


def test_unpriced_model_stays_unknown(memory_sink: MemorySink) -> None:
    with meter(agent="bot") as m:
        m.add(Usage(1000, 500), model="in-house-llm", provider="openai")
    [record] = records_of(memory_sink)

    assert record.cost_usd is None
    assert record.price_status == "unpriced"
    assert record.price_source is None
    for name in ("input", "cache_read", "cache_write", "output", "other"):
        assert getattr(record, f"{name}_cost_usd") is None, name
    assert record.by_model[0].cost_usd is None
    assert record.rounds_usage is not None
    assert record.rounds_usage[0].model == "in-house-llm"


def test_partly_priced_turn_has_no_components(memory_sink: MemorySink) -> None:
    with meter(agent="bot") as m:
        m.add(Usage(1000, 500), model="in-house-llm")
        m.add(Usage(1000, 500), model="gpt-4o", provider="openai")
    [record] = records_of(memory_sink)

    assert record.price_status == "partial"
    assert record.cost_usd is None
    assert record.output_cost_usd is None


def test_openrouter_cost_kept_exactly(memory_sink: MemorySink) -> None:
    response = payload("openrouter_gemini_read_write_overlap")

    with meter(agent="bot") as m:
        m.add(response, provider="openrouter")
    [record] = records_of(memory_sink)

    assert str(record.reported_cost_usd) == "0.0004970133333333333"
    assert record.reported_cost_usd == Decimal("0.0004970133333333333")


def test_openrouter_cost_beside_estimate(memory_sink: MemorySink) -> None:
    response = payload("openrouter_anthropic_cache_read_and_write")

    with meter(agent="bot") as m:
        m.add(response)
    [record] = records_of(memory_sink)

    assert record.provider == "openrouter"
    assert record.reported_cost_usd == Decimal("0.00219855")
    assert record.cost_usd is not None
    assert record.price_status == "priced"


def test_xai_ticks_become_usd(memory_sink: MemorySink) -> None:
    # 15,878,000 ticks of 1e-10 USD.
    with meter(agent="bot") as m:
        m.add(payload("xai_chat_reasoning"), provider="xai")
    [record] = records_of(memory_sink)

    assert record.reported_cost_usd == Decimal("0.0015878")
    assert record.details["cost_in_usd_ticks"] == 15_878_000


def test_reported_cost_needs_every_round(memory_sink: MemorySink) -> None:
    with meter(agent="bot") as m:
        m.add(payload("xai_chat_reasoning"), provider="xai")
        m.add(Usage(10, 10), model="grok-3-mini", provider="xai")
    [record] = records_of(memory_sink)

    assert record.reported_cost_usd is None


def test_reported_costs_sum_over_rounds(memory_sink: MemorySink) -> None:
    response = payload("xai_chat_reasoning")

    with meter(agent="bot") as m:
        m.add(response, provider="xai")
        m.add(response, provider="xai")
    [record] = records_of(memory_sink)

    assert record.reported_cost_usd == Decimal("0.0031756")


def test_meter_add_batch(memory_sink: MemorySink) -> None:
    # Claude Haiku 3.5 at $0.80/$4 has no batch price in the table: Anthropic's 50% applies.
    with meter(agent="bot") as m:
        m.add(Usage(1000, 500), model="claude-3-5-haiku-latest", provider="anthropic", batch=True)
        running = m.cost
    [record] = records_of(memory_sink)

    assert record.cost_usd == Decimal("0.0014")
    assert running is not None
    assert running.total_usd == Decimal("0.0014")
    assert record.price_source is not None
    assert "batch at 50% off tokens per Anthropic's Message Batches pricing" in (
        record.price_source
    )


def test_agent_turn_batch_usage(memory_sink: MemorySink) -> None:
    @metered_turn(agent="bot")
    def step() -> AgentTurn[str]:
        return AgentTurn(
            "done",
            usage=Usage(1000, 500),
            model="claude-3-5-haiku-latest",
            provider="anthropic",
            batch=True,
        )

    step()
    [record] = records_of(memory_sink)

    assert record.cost_usd == Decimal("0.0014")


def test_agent_turn_batch_response(memory_sink: MemorySink) -> None:
    @metered_turn(agent="bot")
    def step() -> AgentTurn[str]:
        message = copy.deepcopy(ANTHROPIC_BATCH_RESULT["result"]["message"])  # type: ignore[index]
        del message["usage"]["service_tier"]
        return AgentTurn("done", usage=message, batch=True)

    step()
    [record] = records_of(memory_sink)

    assert record.rounds_usage is not None
    assert record.rounds_usage[0].price_context == {"processing": "batch"}
    assert record.cost_usd == Decimal("0.0014")


def test_metered_turn_batch_option(memory_sink: MemorySink) -> None:
    @metered_turn(agent="bot", model="claude-3-5-haiku-latest", provider="anthropic", batch=True)
    def step() -> Usage:
        return Usage(1000, 500)

    with meter(agent="outer") as outer:
        step()
        running = outer.cost
    records = records_of(memory_sink)

    step_record = next(record for record in records if record.agent == "bot")
    assert step_record.cost_usd == Decimal("0.0014")
    assert running is not None
    assert running.total_usd == Decimal("0.0014")


def test_openai_batch_line_priced_as_batch(memory_sink: MemorySink) -> None:
    with meter(agent="bot") as m:
        m.add(copy.deepcopy(OPENAI_BATCH_LINE))
        m.add(copy.deepcopy(OPENAI_BATCH_ERROR_LINE))
    [record] = records_of(memory_sink)

    # gpt-4o-mini at $0.15/$0.60, batch half: 1,000 * 0.075 + 500 * 0.30 millionths.
    assert record.model == "gpt-4o-mini-2024-07-18"
    assert record.provider == "openai"
    assert record.cost_usd == Decimal("0.000225")
    assert record.unmeasured_rounds == 1
    assert record.rounds_usage is not None
    assert record.rounds_usage[0].price_context == {"processing": "batch"}


def test_anthropic_batch_result_priced_as_batch(memory_sink: MemorySink) -> None:
    sdk_result = MessageBatchIndividualResponse.model_validate(ANTHROPIC_BATCH_RESULT)

    with meter(agent="bot") as m:
        m.add(copy.deepcopy(ANTHROPIC_BATCH_RESULT))
        m.add(sdk_result)
        m.add(copy.deepcopy(ANTHROPIC_BATCH_ERRORED))
    [record] = records_of(memory_sink)

    assert record.cost_usd == Decimal("0.0028")
    assert record.unmeasured_rounds == 1
    assert record.model == "claude-3-5-haiku-20241022"


def test_flex_tier_from_response(memory_sink: MemorySink) -> None:
    response = openai_chat(2000, 3000, "gpt-5-2025-08-07", service_tier="flex")

    with meter(agent="bot") as m:
        m.add(response)
    [record] = records_of(memory_sink)

    expected = estimate_cost(
        Usage(2000, 3000), "gpt-5-2025-08-07", "openai", at=record.timestamp, service_tier="flex"
    )
    assert expected is not None
    assert record.cost_usd == expected.total_usd
    assert record.price_source == expected.source
    assert record.rounds_usage is not None
    assert record.rounds_usage[0].price_context == {"service_tier": "flex"}


def test_default_tier_keeps_standard_price(memory_sink: MemorySink) -> None:
    with meter(agent="bot") as m:
        m.add(openai_chat(1000, 100, "gpt-4o", service_tier="default"))
    [record] = records_of(memory_sink)

    assert record.cost_usd == Decimal("0.0035")
    assert record.price_source == TABLE
    assert record.rounds_usage is not None
    assert record.rounds_usage[0].price_context == {}


class _SwapsPricesWhenRead(dict[str, Any]):
    """A response that installs a new price table when its usage is read."""

    def get(self, key: str, default: Any = None) -> Any:
        if key == "usage":
            data_snapshot.set_custom_snapshot(_table_with_gpt_4o_input("100"))
        return super().get(key, default)


def _table_with_gpt_4o_input(price: str) -> DataSnapshot:
    providers = copy.deepcopy(data_snapshot.get_snapshot().providers)
    openai = next(provider for provider in providers if provider.id == "openai")
    model = next(model for model in openai.models if model.id == "gpt-4o")
    model.prices = ModelPrice(input_mtok=Decimal(price), output_mtok=Decimal(10))
    return DataSnapshot(providers, from_auto_update=True)


def test_turn_priced_from_one_snapshot(memory_sink: MemorySink) -> None:
    @metered_turn(agent="bot", provider="openai")
    def step() -> Any:
        return _SwapsPricesWhenRead(openai_chat(1_000_000, 0, "gpt-4o"))

    step()
    [record] = records_of(memory_sink)
    after = estimate_cost(Usage(1_000_000, 0), "gpt-4o", "openai")

    # The response is read on the delivery thread after the turn's prices were taken.
    assert record.cost_usd == Decimal("2.5")
    assert record.price_source == TABLE
    assert after is not None
    assert after.total_usd == Decimal(100)


def test_override_change_reaches_next_turn(memory_sink: MemorySink) -> None:
    with meter(agent="bot") as m:
        m.add(Usage(1000, 0), model="gpt-4o", provider="openai")
    assert tokenmeter.flush(timeout=10)
    set_price_overrides({"models": {"gpt-4o": {"input": 1, "output": 1}}})
    with meter(agent="bot") as m:
        m.add(Usage(1000, 0), model="gpt-4o", provider="openai")
    first, second = records_of(memory_sink)

    assert first.cost_usd == Decimal("0.0025")
    assert second.cost_usd == Decimal("0.001")
    assert second.price_source is not None
    assert second.price_source.startswith("overrides mapping sha256:")
