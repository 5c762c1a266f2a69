"""UsageRecord, Cost and their JSON form; Usage validation and arithmetic."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tokenmeter import Cost, Usage, UsageRecord
from tokenmeter.records import (
    SCHEMA_VERSION,
    ModelUsage,
    RoundUsage,
    record_from_json,
    record_to_json,
    trusted_model_usage,
    trusted_record,
    trusted_round_usage,
)


def record_values(cost: Decimal | None = Decimal("0.01482")) -> dict[str, object]:
    return {
        "id": uuid4(),
        "timestamp": datetime(2026, 12, 4, 12, 0, tzinfo=UTC),
        "duration_ms": 12.5,
        "run_id": uuid4(),
        "parent_id": None,
        "agent": "bot",
        "name": "step",
        "model": "claude-sonnet-4-5",
        "provider": "anthropic",
        "status": "ok",
        "error_type": None,
        "rounds": 1,
        "unmeasured_rounds": 0,
        "input_tokens": 11040,
        "cache_read_tokens": 9000,
        "cache_write_tokens": 2000,
        "output_tokens": 300,
        "reasoning_tokens": 0,
        "details": {"web_searches": 1},
        "cost_usd": cost,
        "input_cost_usd": None if cost is None else Decimal("0.00012"),
        "cache_read_cost_usd": None if cost is None else Decimal("0.0027"),
        "cache_write_cost_usd": None if cost is None else Decimal("0.0075"),
        "output_cost_usd": None if cost is None else Decimal("0.0045"),
        "other_cost_usd": None if cost is None else Decimal(0),
        "price_status": "priced" if cost is not None else "unpriced",
        "price_source": "genai-prices 0.2.3",
        "priced_at": datetime(2026, 12, 4, 12, 0, tzinfo=UTC),
        "reported_cost_usd": Decimal("1.482E-2"),
        "rounds_usage": [
            trusted_round_usage(
                {
                    "model": "claude-sonnet-4-5",
                    "provider": "anthropic",
                    "input_tokens": 11040,
                    "cache_read_tokens": 9000,
                    "cache_write_tokens": 2000,
                    "output_tokens": 300,
                    "reasoning_tokens": 0,
                    "details": {"web_searches": 1},
                    "price_context": {"processing": "batch"},
                }
            )
        ],
        "repriced_cost_usd": None,
        "repriced_at": None,
        "repriced_source": None,
        "by_model": [
            trusted_model_usage(
                {
                    "model": "claude-sonnet-4-5",
                    "provider": "anthropic",
                    "rounds": 1,
                    "input_tokens": 11040,
                    "cache_read_tokens": 9000,
                    "cache_write_tokens": 2000,
                    "output_tokens": 300,
                    "reasoning_tokens": 0,
                    "details": {},
                    "cost_usd": cost,
                }
            )
        ],
        "tags": ["prod"],
        "metadata": {"ticket": 7},
        "schema_version": 2,
    }


def test_trusted_record_equals_validated() -> None:
    values = record_values()

    trusted = trusted_record(dict(values))
    validated = UsageRecord.model_validate(values)

    assert trusted == validated
    assert trusted.model_fields_set == validated.model_fields_set
    assert trusted.model_dump() == validated.model_dump()


def test_trusted_constructors_cover_every_field() -> None:
    assert set(record_values()) == set(UsageRecord.model_fields)
    assert set(record_values()["by_model"][0].__dict__) == set(ModelUsage.model_fields)  # type: ignore[index]
    assert set(record_values()["rounds_usage"][0].__dict__) == set(RoundUsage.model_fields)  # type: ignore[index]


def test_schema_version_is_two() -> None:
    assert SCHEMA_VERSION == 2
    assert UsageRecord.model_fields["schema_version"].default == 2


def test_version_one_record_reads_back() -> None:
    # A line as tokenmeter wrote it before schema version 2: none of the newer fields.
    line = (
        '{"id":"6f1c2c8e-8f4e-4a8e-9a39-1d4c7b9e2f10","timestamp":"2026-05-01T12:00:00+00:00",'
        '"duration_ms":12.5,"run_id":"6f1c2c8e-8f4e-4a8e-9a39-1d4c7b9e2f10","parent_id":null,'
        '"agent":"bot","name":"step","model":"gpt-4o","provider":"openai","status":"ok",'
        '"error_type":null,"rounds":1,"unmeasured_rounds":0,"input_tokens":7,'
        '"cache_read_tokens":0,"cache_write_tokens":0,"output_tokens":0,"reasoning_tokens":0,'
        '"details":{},"cost_usd":0.0000175,"price_status":"priced",'
        '"price_source":"genai-prices 0.2.3","by_model":[],"tags":[],"metadata":{},'
        '"schema_version":1}'
    )

    record = record_from_json(line)

    assert record.schema_version == 1
    assert record.cost_usd == Decimal("0.0000175")
    for name in (
        "input_cost_usd",
        "cache_read_cost_usd",
        "cache_write_cost_usd",
        "output_cost_usd",
        "other_cost_usd",
        "priced_at",
        "reported_cost_usd",
        "rounds_usage",
        "repriced_cost_usd",
        "repriced_at",
        "repriced_source",
    ):
        assert getattr(record, name) is None, name


def test_json_round_trip_keeps_provenance() -> None:
    record = trusted_record(record_values())

    back = record_from_json(record_to_json(record))

    assert back == record
    assert str(back.reported_cost_usd) == "0.01482"
    assert back.rounds_usage is not None
    assert back.rounds_usage[0].price_context == {"processing": "batch"}
    assert back.priced_at == datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def test_priced_at_normalized_to_utc() -> None:
    values = record_values()
    values["priced_at"] = datetime(2026, 12, 4, 13, 0, tzinfo=timezone(timedelta(hours=1)))
    values["repriced_at"] = datetime(2026, 12, 5, 8, 30)

    record = UsageRecord.model_validate(values)

    assert record.priced_at == datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    assert record.priced_at is not None
    assert record.priced_at.utcoffset() == timedelta(0)
    assert record.repriced_at == datetime(2026, 12, 5, 8, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    "cost",
    [
        Decimal("0.01482"),
        Decimal("0.0000175"),
        Decimal("1.75E-11"),
        Decimal("123456789.123456789123456789"),
        None,
    ],
)
def test_json_round_trip_keeps_exact_cost(cost: Decimal | None) -> None:
    record = trusted_record(record_values(cost))

    line = record_to_json(record)
    back = record_from_json(line)

    assert back == record
    assert back.cost_usd == cost
    assert str(back.cost_usd) == str(cost) if cost is not None else back.cost_usd is None


def test_json_writes_cost_as_number() -> None:
    line = record_to_json(trusted_record(record_values(Decimal("0.01482"))))

    assert '"cost_usd":0.01482' in line
    assert "\\u0000" not in line


def test_timestamp_normalized_to_utc() -> None:
    values = record_values()
    values["timestamp"] = datetime(2026, 12, 4, 13, 0, tzinfo=timezone(timedelta(hours=1)))

    record = UsageRecord.model_validate(values)

    assert record.timestamp == datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    assert record.timestamp.tzinfo is UTC


def test_record_from_json_rejects_non_object() -> None:
    with pytest.raises(ValueError, match="expected a JSON object, got list"):
        record_from_json("[1, 2]")


def test_usage_rejects_negative() -> None:
    with pytest.raises(ValueError, match=r"Usage.input_tokens must be a non-negative int, got -1"):
        Usage(-1, 0)


@pytest.mark.parametrize("value", [1.5, "10", True, None])
def test_usage_rejects_non_int(value: object) -> None:
    with pytest.raises(TypeError, match=r"Usage\.output_tokens must be a non-negative int"):
        Usage(0, value)  # type: ignore[arg-type]


def test_usage_is_immutable() -> None:
    usage = Usage(1, 2)

    with pytest.raises(AttributeError, match="Usage is immutable"):
        usage.input_tokens = 5  # type: ignore[misc]


def test_usage_adds_fields_and_details() -> None:
    first = Usage(10, 5, cache_read_tokens=4, details={"web_searches": 1})
    second = Usage(20, 1, reasoning_tokens=1, details={"web_searches": 2, "input_audio_tokens": 3})

    total = first + second

    assert total == Usage(
        30,
        6,
        cache_read_tokens=4,
        reasoning_tokens=1,
        details={"web_searches": 3, "input_audio_tokens": 3},
    )
    assert sum([first, second]) == total


def test_usage_pickles() -> None:
    usage = Usage(1, 2, cache_write_tokens=1, details={"web_searches": 1})

    assert pickle.loads(pickle.dumps(usage)) == usage


counts = st.integers(min_value=0, max_value=10**9)
usages = st.builds(
    Usage,
    counts,
    counts,
    cache_read_tokens=counts,
    cache_write_tokens=counts,
    reasoning_tokens=counts,
    details=st.dictionaries(
        st.sampled_from(["web_searches", "input_audio_tokens"]), counts, max_size=2
    ),
)


@given(usages, usages, usages)
def test_usage_addition_is_associative(a: Usage, b: Usage, c: Usage) -> None:
    assert (a + b) + c == a + (b + c)


def test_cost_sums_components() -> None:
    first = Cost(total_usd=Decimal("0.3"), input_usd=Decimal("0.3"), source="genai-prices 0.2.3")
    second = Cost(
        total_usd=Decimal("0.45"), output_usd=Decimal("0.45"), source="genai-prices 0.2.3"
    )

    total = first + second

    assert total.total_usd == Decimal("0.75")
    assert total.input_usd == Decimal("0.3")
    assert total.output_usd == Decimal("0.45")
    assert total.source == "genai-prices 0.2.3"
