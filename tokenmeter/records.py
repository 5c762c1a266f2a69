"""`UsageRecord`, the row every sink receives, and `Cost`, the price of some usage."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal, NamedTuple, TypeVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "SCHEMA_VERSION",
    "Cost",
    "ModelUsage",
    "Repricing",
    "RoundUsage",
    "UsageRecord",
    "json_line",
    "record_from_json",
    "record_to_json",
]

SCHEMA_VERSION = 2
"""Version of the record layout; readers accept records up to this version.

Version 2 added the cost components, `priced_at`, `reported_cost_usd`, `rounds_usage` and the
`repriced_*` fields. Version 1 records read back with those fields `None`.
"""

M = TypeVar("M", bound=BaseModel)

Status = Literal["ok", "error", "incomplete"]
PriceStatus = Literal["priced", "partial", "unpriced", "unmeasured"]


@dataclass(frozen=True, slots=True)
class Cost:
    """The price of some usage in US dollars, by component, and where the price came from.

    `total_usd` is the sum of the components. Components are exact `Decimal`s computed from
    per-million-token prices, never rounded.
    """

    total_usd: Decimal
    input_usd: Decimal = Decimal(0)
    """Uncached prompt tokens."""
    cache_read_usd: Decimal = Decimal(0)
    cache_write_usd: Decimal = Decimal(0)
    output_usd: Decimal = Decimal(0)
    """Completion tokens, reasoning included."""
    other_usd: Decimal = Decimal(0)
    """Per-request fees and billable units beside the tokens (web searches, audio...)."""
    model_id: str | None = None
    """The price table's id of the model that was priced."""
    provider_id: str | None = None
    """The price table's id of the provider whose price was used."""
    source: str = ""
    """The price table and its version, for example `genai-prices 0.2.3`."""

    def __add__(self, other: object) -> Cost:
        if not isinstance(other, Cost):
            return NotImplemented
        same_model = self.model_id == other.model_id and self.provider_id == other.provider_id
        return Cost(
            total_usd=self.total_usd + other.total_usd,
            input_usd=self.input_usd + other.input_usd,
            cache_read_usd=self.cache_read_usd + other.cache_read_usd,
            cache_write_usd=self.cache_write_usd + other.cache_write_usd,
            output_usd=self.output_usd + other.output_usd,
            other_usd=self.other_usd + other.other_usd,
            model_id=self.model_id if same_model else None,
            provider_id=self.provider_id if same_model else None,
            source=self.source if self.source == other.source else f"{self.source}; {other.source}",
        )

    def __radd__(self, other: object) -> Cost:
        if other == 0:
            return self
        return NotImplemented


Cost.__module__ = "tokenmeter"


class ModelUsage(BaseModel):
    """Usage and cost of the rounds of one turn that one model served."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    model: str | None
    provider: str | None
    rounds: int
    input_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    details: dict[str, int] = Field(default_factory=dict)
    cost_usd: Decimal | None = None
    """`None` when the model is not in the price table."""


class RoundUsage(BaseModel):
    """The token counts of one measured round, kept so that `tokenmeter reprice` can price it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    model: str | None
    provider: str | None
    input_tokens: int
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    details: dict[str, int] = Field(default_factory=dict)
    price_context: dict[str, str] = Field(default_factory=dict)
    """genai-prices price-variant keys and values of the round's billing: `{"processing":
    "batch"}`, `{"service_tier": "flex"}`. Empty for a standard round."""


class UsageRecord(BaseModel):
    """One metered turn: what every sink stores, one per `metered_turn` call or `meter()` block.

    Token fields sum the turn's measured rounds; they are `None` when no round reported
    usage, because unknown is not zero. `cost_usd` is `None` when some measured round could
    not be priced; `price_status` gives the reason.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: UUID
    """Unique per record; SQL sinks use it to insert idempotently."""
    timestamp: datetime
    """When the turn started, in UTC."""
    duration_ms: float | None = None
    run_id: UUID
    """Shared by every turn of one run: nested meters and steps inside one top-level meter."""
    parent_id: UUID | None = None
    """The record id of the enclosing `meter()` block, if any."""
    agent: str | None = None
    name: str | None = None
    """The decorated function's qualified name, or the meter's name."""
    model: str | None = None
    """The model of the turn's rounds; the most used one when several served the turn."""
    provider: str | None = None
    status: Status = "ok"
    error_type: str | None = None
    """The exception's class name when `status` is `error`."""
    rounds: int = 0
    """How many LLM calls (rounds) the turn made, measured or not."""
    unmeasured_rounds: int = 0
    """Rounds whose response reported no usage: counted here, never as zero tokens."""
    input_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    output_tokens: int | None = None
    reasoning_tokens: int | None = None
    details: dict[str, int] = Field(default_factory=dict)
    cost_usd: Decimal | None = None
    """Our estimate from the price table and the overrides; `None` when some measured round
    has no price."""
    input_cost_usd: Decimal | None = None
    """The part of `cost_usd` for uncached prompt tokens; `None` exactly when `cost_usd` is."""
    cache_read_cost_usd: Decimal | None = None
    """The part of `cost_usd` for prompt tokens read from a cache."""
    cache_write_cost_usd: Decimal | None = None
    """The part of `cost_usd` for prompt tokens written to a cache."""
    output_cost_usd: Decimal | None = None
    """The part of `cost_usd` for completion tokens, reasoning included."""
    other_cost_usd: Decimal | None = None
    """The part of `cost_usd` for fees and units beside tokens (requests, web searches...)."""
    price_status: PriceStatus = "unmeasured"
    price_source: str | None = None
    """The source of the prices, with versions: `genai-prices 0.2.5`, an overrides file and
    its hash, or several of them joined by `; `."""
    priced_at: datetime | None = None
    """The request time the prices were taken for (the turn's start), in UTC; `None` when no
    round was measured."""
    reported_cost_usd: Decimal | None = None
    """The cost the provider reported for the turn, exactly as reported (OpenRouter's
    `usage.cost`, xAI's `cost_in_usd_ticks` at 1e-10 USD a tick). `None` unless every
    measured round reported one."""
    rounds_usage: list[RoundUsage] | None = None
    """The token counts of each measured round, for re-pricing; `None` in version 1 records."""
    repriced_cost_usd: Decimal | None = None
    """The cost that `tokenmeter reprice` computed last; `cost_usd` keeps the original."""
    repriced_at: datetime | None = None
    """When `tokenmeter reprice` last ran over this record, in UTC."""
    repriced_source: str | None = None
    """The source of the prices of `repriced_cost_usd`, in the form of `price_source`."""
    by_model: list[ModelUsage] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    @field_validator("timestamp", "priced_at", "repriced_at")
    @classmethod
    def _timestamp_in_utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    @property
    def total_tokens(self) -> int | None:
        """`input_tokens + output_tokens`, or `None` when the turn reported no usage."""
        if self.input_tokens is None or self.output_tokens is None:
            return None
        return self.input_tokens + self.output_tokens


UsageRecord.__module__ = "tokenmeter"


class Repricing(NamedTuple):
    """The `repriced_*` fields that `tokenmeter reprice` sets on the stored record `id`."""

    id: UUID
    cost_usd: Decimal | None
    repriced_at: datetime
    source: str | None


_RECORD_FIELDS = frozenset(UsageRecord.model_fields)
_MODEL_USAGE_FIELDS = frozenset(ModelUsage.model_fields)
_ROUND_USAGE_FIELDS = frozenset(RoundUsage.model_fields)


def _construct(cls: type[M], values: dict[str, Any], fields: frozenset[str]) -> M:
    # What BaseModel.model_construct does for a model without aliases, extras, private
    # attributes or post-init hooks, at a third of its cost: `values` must name every field
    # with a valid value. tests/test_records.py checks the result against model_validate.
    instance = cls.__new__(cls)
    object.__setattr__(instance, "__dict__", values)
    object.__setattr__(instance, "__pydantic_fields_set__", set(fields))
    object.__setattr__(instance, "__pydantic_extra__", None)
    object.__setattr__(instance, "__pydantic_private__", None)
    return instance


def trusted_record(values: dict[str, Any]) -> UsageRecord:
    """Build a `UsageRecord` without validation from values that name every field."""
    return _construct(UsageRecord, values, _RECORD_FIELDS)


def trusted_model_usage(values: dict[str, Any]) -> ModelUsage:
    """Build a `ModelUsage` without validation from values that name every field."""
    return _construct(ModelUsage, values, _MODEL_USAGE_FIELDS)


def trusted_round_usage(values: dict[str, Any]) -> RoundUsage:
    """Build a `RoundUsage` without validation from values that name every field."""
    return _construct(RoundUsage, values, _ROUND_USAGE_FIELDS)


# Decimals are written as JSON numbers with their exact digits. The json module can only
# write floats, so each Decimal goes out as a marked string and the marks are removed after.
_DECIMAL_MARK = "\x00tokenmeter-decimal:"
_MARKED_DECIMAL = re.compile(r'"\\u0000tokenmeter-decimal:([^"]+)"')
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=lambda value: _to_json_value(value))


def _to_json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        if not value.is_finite():
            return str(value)
        return _DECIMAL_MARK + str(value)
    if isinstance(value, (UUID, datetime)):
        return str(value) if isinstance(value, UUID) else value.isoformat()
    if isinstance(value, BaseModel):
        return dict(value.__dict__)
    return str(value)


def record_to_json(record: UsageRecord) -> str:
    """Serialize a record as one line of JSON, costs as numbers with their exact digits."""
    # Reading the fields directly is about five times faster than model_dump().
    text = _ENCODER.encode(record.__dict__)
    if _DECIMAL_MARK[1:] in text:
        text = _MARKED_DECIMAL.sub(r"\1", text)
    return text


def json_line(data: Mapping[str, Any]) -> str:
    """Serialize a JSON object as `record_to_json` writes records: compact, on one line,
    Decimals as numbers with their exact digits."""
    text = _ENCODER.encode(data)
    if _DECIMAL_MARK[1:] in text:
        text = _MARKED_DECIMAL.sub(r"\1", text)
    return text


def record_from_json(line: str | bytes) -> UsageRecord:
    """Parse one line written by `record_to_json`; costs come back as the same `Decimal`.

    Raises:
        ValueError: if the line is not JSON or not a tokenmeter record.
    """
    data = json.loads(line, parse_float=Decimal)
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    return UsageRecord.model_validate(data)
