"""Turn events, built cheaply on the caller's side, and their conversion to priced records."""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from tokenmeter.pricing import estimate_cost
from tokenmeter.records import SCHEMA_VERSION, Cost, ModelUsage, UsageRecord
from tokenmeter.usage import Usage

__all__ = ["Round", "TurnEvent", "build_record", "new_id"]

logger = logging.getLogger("tokenmeter")

Round = tuple[Usage | None, str | None, str | None]
"""One LLM call of a turn: its usage (None when the response reported none), model, provider."""

# Record ids are UUIDv8: 64 random bits per process (redrawn after fork) and a counter, so a
# caller pays one addition for an id instead of the 2 µs of uuid4().
_VERSION_8 = 0x8 << 76
_VARIANT = 0b10 << 62
_prefix = 0
_counter: Iterator[int] = itertools.count(1)


def _reset_ids() -> None:
    global _prefix, _counter
    random_high = int.from_bytes(os.urandom(8), "big")
    _prefix = ((random_high << 64) & ~(0xF << 76)) | _VERSION_8 | _VARIANT
    _counter = itertools.count(1)


_reset_ids()
os.register_at_fork(after_in_child=_reset_ids)


def new_id() -> int:
    """Return a new 128-bit record id as an int; `UUID(int=...)` turns it into a UUID."""
    return _prefix | next(_counter)


class TurnEvent:
    """What the caller hands to the delivery thread: raw counts, no pricing, no validation."""

    __slots__ = (
        "agent",
        "duration_ns",
        "error_type",
        "id",
        "metadata",
        "model",
        "name",
        "parent_id",
        "provider",
        "rounds",
        "run_id",
        "started_ns",
        "status",
        "tags",
    )

    def __init__(
        self,
        id: int,
        run_id: int,
        parent_id: int | None,
        name: str | None,
        agent: str | None,
        model: str | None,
        provider: str | None,
        tags: tuple[str, ...],
        metadata: dict[str, Any] | None,
        started_ns: int,
        duration_ns: int,
        status: str,
        error_type: str | None,
        rounds: list[Round],
    ) -> None:
        self.id = id
        self.run_id = run_id
        self.parent_id = parent_id
        self.name = name
        self.agent = agent
        self.model = model
        self.provider = provider
        self.tags = tags
        self.metadata = metadata
        self.started_ns = started_ns
        self.duration_ns = duration_ns
        self.status = status
        self.error_type = error_type
        self.rounds = rounds


def _price_round(usage: Usage, model: str | None, provider: str | None) -> Cost | None:
    if model is None:
        return None
    return estimate_cost(usage, model, provider)


class _ModelTotals:
    __slots__ = ("cost", "priced", "rounds", "usage")

    def __init__(self) -> None:
        self.rounds = 0
        self.usage: Usage | None = None
        self.cost = Decimal(0)
        self.priced = True


def build_record(event: TurnEvent) -> UsageRecord:
    """Price each round of `event` with its own model and sum them into one record."""
    totals: dict[tuple[str | None, str | None], _ModelTotals] = {}
    turn_usage: Usage | None = None
    turn_cost = Decimal(0)
    unmeasured = 0
    unpriced = 0
    sources: set[str] = set()

    for usage, model, provider in event.rounds:
        model = model or event.model
        provider = provider or event.provider
        per_model = totals.setdefault((model, provider), _ModelTotals())
        per_model.rounds += 1
        if usage is None:
            unmeasured += 1
            continue

        per_model.usage = usage if per_model.usage is None else per_model.usage + usage
        turn_usage = usage if turn_usage is None else turn_usage + usage
        cost = _price_round(usage, model, provider)
        if cost is None:
            per_model.priced = False
            unpriced += 1
        else:
            per_model.cost += cost.total_usd
            turn_cost += cost.total_usd
            if cost.source:
                sources.add(cost.source)

    measured = len(event.rounds) - unmeasured
    if measured == 0:
        price_status = "unmeasured"
    elif unpriced == 0:
        price_status = "priced"
    elif unpriced < measured:
        price_status = "partial"
    else:
        price_status = "unpriced"

    # model_construct skips validation: every value here comes from validated Usage objects
    # and the price table, and validation would double the delivery thread's work per record.
    by_model = [
        ModelUsage.model_construct(
            model=model,
            provider=provider,
            rounds=item.rounds,
            input_tokens=item.usage.input_tokens if item.usage else 0,
            cache_read_tokens=item.usage.cache_read_tokens if item.usage else 0,
            cache_write_tokens=item.usage.cache_write_tokens if item.usage else 0,
            output_tokens=item.usage.output_tokens if item.usage else 0,
            reasoning_tokens=item.usage.reasoning_tokens if item.usage else 0,
            details=dict(item.usage.details) if item.usage else {},
            cost_usd=item.cost if item.priced and item.usage is not None else None,
        )
        for (model, provider), item in totals.items()
    ]
    main_model, main_provider = _main_model(totals, event)

    return UsageRecord.model_construct(
        id=UUID(int=event.id),
        timestamp=datetime.fromtimestamp(event.started_ns / 1e9, tz=UTC),
        duration_ms=event.duration_ns / 1e6,
        run_id=UUID(int=event.run_id),
        parent_id=None if event.parent_id is None else UUID(int=event.parent_id),
        agent=event.agent,
        name=event.name,
        model=main_model,
        provider=main_provider,
        status=event.status,  # type: ignore[arg-type]
        error_type=event.error_type,
        rounds=len(event.rounds),
        unmeasured_rounds=unmeasured,
        input_tokens=turn_usage.input_tokens if turn_usage else None,
        cache_read_tokens=turn_usage.cache_read_tokens if turn_usage else None,
        cache_write_tokens=turn_usage.cache_write_tokens if turn_usage else None,
        output_tokens=turn_usage.output_tokens if turn_usage else None,
        reasoning_tokens=turn_usage.reasoning_tokens if turn_usage else None,
        details=dict(turn_usage.details) if turn_usage else {},
        cost_usd=turn_cost if price_status == "priced" else None,
        price_status=price_status,  # type: ignore[arg-type]
        price_source="; ".join(sorted(sources)) or None,
        by_model=by_model,
        tags=list(event.tags),
        metadata=event.metadata or {},
        schema_version=SCHEMA_VERSION,
    )


def _main_model(
    totals: dict[tuple[str | None, str | None], _ModelTotals], event: TurnEvent
) -> tuple[str | None, str | None]:
    if not totals:
        return event.model, event.provider
    # The model that served the most rounds names the turn; the first one wins a tie.
    (model, provider), _ = max(totals.items(), key=lambda item: item[1].rounds)
    return model, provider
