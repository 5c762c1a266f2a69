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

from tokenmeter._billing import price_context_of, reported_cost_of, with_billing
from tokenmeter._logging import RateLimitedLog
from tokenmeter.extract import (
    MalformedUsage,
    UnrecognizedResponse,
    canonical_provider,
    read_response,
)
from tokenmeter.pricing import PriceSnapshot, current_prices
from tokenmeter.records import (
    SCHEMA_VERSION,
    Cost,
    RoundUsage,
    UsageRecord,
    trusted_model_usage,
    trusted_record,
    trusted_round_usage,
)
from tokenmeter.usage import Usage

__all__ = [
    "Deferred",
    "Round",
    "TurnEvent",
    "TurnOptions",
    "build_record",
    "new_id",
    "read_round",
    "resolve",
]

logger = logging.getLogger("tokenmeter")


class Deferred:
    """A response whose usage is read later, on the delivery thread, to keep callers fast.

    NOTE: a caller that changes the response after returning it changes what is recorded.
    """

    __slots__ = ("batch", "obj", "provider")

    def __init__(self, obj: object, provider: str | None, batch: bool = False) -> None:
        self.obj = obj
        self.provider = provider
        self.batch = batch
        """Whether the caller marked the round as a batch job."""


Round = tuple[Usage | Deferred | None, str | None, str | None]
"""One LLM call of a turn: its usage (None when the response reported none, `Deferred` while
unread), and the model and provider named explicitly for it, if any."""

_metering_logger = logging.getLogger("tokenmeter.metering")
_limited = RateLimitedLog(_metering_logger)


def canonical_or_none(provider: str | None) -> str | None:
    """Return the provider id for `provider` or an alias of it; log and drop an unknown one.

    An unknown provider only loses the hint: the response's own shape still names one.
    """
    if provider is None:
        return None
    try:
        return canonical_provider(provider)
    except ValueError as error:
        _limited.once(logging.ERROR, ("provider", provider), "tokenmeter: %s", error)
        return None


def read_round(
    obj: object, model: str | None, provider: str | None
) -> tuple[Usage | None, str | None, str | None]:
    """Read one round's usage, model and provider; on failure, log and return no usage.

    `model` and `provider` are the ones named explicitly for the round; they win over the
    response's own values. `provider` also decides how the reader interprets the counts.
    """
    provider = canonical_or_none(provider)
    if type(obj) is Usage:
        return (obj, model, provider)
    try:
        reading = read_response(obj, provider)
    except UnrecognizedResponse:
        _limited.once(
            logging.WARNING,
            ("unrecognized", type(obj)),
            "tokenmeter: cannot read token usage from a %s.%s; the round is recorded as "
            "unmeasured. Return an AgentTurn(output, usage=Usage(...)) or a provider response, "
            "or pass provider= if the response comes from a known provider",
            type(obj).__module__,
            type(obj).__qualname__,
        )
        return (None, model, provider)
    except MalformedUsage as error:
        _limited.log(
            logging.WARNING,
            ("malformed", type(obj)),
            "tokenmeter: invalid usage in a %s: %s; the round is recorded as unmeasured",
            type(obj).__qualname__,
            error,
        )
        return (None, model, provider)
    except Exception as error:
        _limited.log(
            logging.ERROR,
            ("extract-bug", type(obj)),
            "tokenmeter: reading usage from a %s failed: %r; the round is recorded as unmeasured",
            type(obj).__qualname__,
            error,
        )
        return (None, model, provider)
    return (reading.usage, model or reading.model, provider or reading.provider)


def resolve(
    round_: Round, default_model: str | None, default_provider: str | None
) -> tuple[Usage | None, str | None, str | None]:
    """Return a round's usage, model and provider, reading a deferred response first.

    Precedence: what was named for the round, then what the response names, then the
    defaults of the decorator or meter.
    """
    usage, model, provider = round_
    if type(usage) is Deferred:
        batch = usage.batch
        usage, model, provider = read_round(usage.obj, model, usage.provider or provider)
        if batch and usage is not None:
            usage = with_billing(usage, batch=True)
    elif provider is not None:
        provider = canonical_or_none(provider)
    return (usage, model or default_model, provider or default_provider)  # type: ignore[return-value]


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


class TurnOptions:
    """The options of a decorator or meter, shared by all its turns."""

    __slots__ = ("agent", "batch", "metadata", "model", "name", "provider", "tags")

    def __init__(
        self,
        name: str | None,
        agent: str | None,
        model: str | None,
        provider: str | None,
        tags: tuple[str, ...],
        metadata: dict[str, Any] | None,
        batch: bool = False,
    ) -> None:
        self.name = name
        self.agent = agent
        self.model = model
        self.provider = provider
        self.tags = tags
        self.metadata = metadata
        self.batch = batch
        """Whether every round of these turns ran as a batch job, at batch prices."""


class TurnEvent:
    """One finished turn as the caller queues it: raw counts, no pricing, no validation."""

    __slots__ = (
        "duration_ns",
        "error_type",
        "id",
        "options",
        "parent_id",
        "rounds",
        "run_id",
        "started_ns",
        "status",
    )

    def __init__(
        self,
        id: int,
        run_id: int,
        parent_id: int | None,
        options: TurnOptions,
        started_ns: int,
        duration_ns: int,
        status: str,
        error_type: str | None,
        rounds: list[Round],
    ) -> None:
        self.id = id
        self.run_id = run_id
        self.parent_id = parent_id
        self.options = options
        self.started_ns = started_ns
        self.duration_ns = duration_ns
        self.status = status
        self.error_type = error_type
        self.rounds = rounds


def _price_round(
    prices: PriceSnapshot, usage: Usage, model: str | None, provider: str | None, at: float
) -> Cost | None:
    if model is None:
        return None
    return prices.estimate(usage, model, provider, at)


class _ModelTotals:
    __slots__ = ("cost", "priced", "rounds", "usage")

    def __init__(self) -> None:
        self.rounds = 0
        self.usage: Usage | None = None
        self.cost = Decimal(0)
        self.priced = True


class _TurnCosts:
    """The costs of a turn's measured rounds, by component, and the provider-reported costs."""

    __slots__ = ("components", "reported", "reported_rounds", "sources", "unpriced")

    def __init__(self) -> None:
        self.components = [Decimal(0)] * 5
        self.reported = Decimal(0)
        self.reported_rounds = 0
        self.sources: set[str] = set()
        self.unpriced = 0

    def add(self, cost: Cost | None, usage: Usage) -> None:
        reported = reported_cost_of(usage)
        if reported is not None:
            self.reported += reported
            self.reported_rounds += 1
        if cost is None:
            self.unpriced += 1
            return
        components = self.components
        components[0] += cost.input_usd
        components[1] += cost.cache_read_usd
        components[2] += cost.cache_write_usd
        components[3] += cost.output_usd
        components[4] += cost.other_usd
        if cost.source:
            self.sources.add(cost.source)

    @property
    def total(self) -> Decimal:
        components = self.components
        return components[0] + components[1] + components[2] + components[3] + components[4]


def _round_usage(usage: Usage, model: str | None, provider: str | None) -> RoundUsage:
    return trusted_round_usage(
        {
            "model": model,
            "provider": provider,
            "input_tokens": usage.input_tokens,
            "cache_read_tokens": usage.cache_read_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
            "output_tokens": usage.output_tokens,
            "reasoning_tokens": usage.reasoning_tokens,
            "details": dict(usage.details),
            "price_context": dict(price_context_of(usage)),
        }
    )


def build_record(event: TurnEvent) -> UsageRecord:
    """Price each round of `event` with its own model and sum them into one record.

    Every round of the turn is priced from one snapshot of the prices, taken here, so that a
    price update or new overrides never split a turn between two sets of prices.
    """
    options = event.options
    # Prices are taken for the time the turn started, not for when delivery caught up.
    started = datetime.fromtimestamp(event.started_ns / 1e9, tz=UTC)
    at = event.started_ns / 1e9
    prices = current_prices()
    totals: dict[tuple[str | None, str | None], _ModelTotals] = {}
    turn_usage: Usage | None = None
    costs = _TurnCosts()
    rounds_usage: list[RoundUsage] = []
    unmeasured = 0

    for round_ in event.rounds:
        usage, model, provider = resolve(round_, options.model, options.provider)
        per_model = totals.setdefault((model, provider), _ModelTotals())
        per_model.rounds += 1
        if usage is None:
            unmeasured += 1
            continue
        if options.batch:
            usage = with_billing(usage, batch=True)

        per_model.usage = usage if per_model.usage is None else per_model.usage + usage
        turn_usage = usage if turn_usage is None else turn_usage + usage
        rounds_usage.append(_round_usage(usage, model, provider))
        cost = _price_round(prices, usage, model, provider, at)
        costs.add(cost, usage)
        if cost is None:
            per_model.priced = False
        else:
            per_model.cost += cost.total_usd

    measured = len(event.rounds) - unmeasured
    if measured == 0:
        price_status = "unmeasured"
    elif costs.unpriced == 0:
        price_status = "priced"
    elif costs.unpriced < measured:
        price_status = "partial"
    else:
        price_status = "unpriced"
    priced = price_status == "priced"

    # Trusted construction skips validation: every value comes from validated Usage objects
    # and the price table, and validation would double the delivery thread's work per record.
    by_model = []
    for (model, provider), item in totals.items():
        usage = item.usage
        by_model.append(
            trusted_model_usage(
                {
                    "model": model,
                    "provider": provider,
                    "rounds": item.rounds,
                    "input_tokens": usage.input_tokens if usage else 0,
                    "cache_read_tokens": usage.cache_read_tokens if usage else 0,
                    "cache_write_tokens": usage.cache_write_tokens if usage else 0,
                    "output_tokens": usage.output_tokens if usage else 0,
                    "reasoning_tokens": usage.reasoning_tokens if usage else 0,
                    "details": dict(usage.details) if usage else {},
                    "cost_usd": item.cost if item.priced and usage is not None else None,
                }
            )
        )
    main_model, main_provider = _main_model(totals, event)
    measured_usage = turn_usage is not None
    components = costs.components

    return trusted_record(
        {
            "id": UUID(int=event.id),
            "timestamp": started,
            "duration_ms": event.duration_ns / 1e6,
            "run_id": UUID(int=event.run_id),
            "parent_id": None if event.parent_id is None else UUID(int=event.parent_id),
            "agent": options.agent,
            "name": options.name,
            "model": main_model,
            "provider": main_provider,
            "status": event.status,
            "error_type": event.error_type,
            "rounds": len(event.rounds),
            "unmeasured_rounds": unmeasured,
            "input_tokens": turn_usage.input_tokens if turn_usage else None,
            "cache_read_tokens": turn_usage.cache_read_tokens if turn_usage else None,
            "cache_write_tokens": turn_usage.cache_write_tokens if turn_usage else None,
            "output_tokens": turn_usage.output_tokens if turn_usage else None,
            "reasoning_tokens": turn_usage.reasoning_tokens if turn_usage else None,
            "details": dict(turn_usage.details) if measured_usage and turn_usage else {},
            "cost_usd": costs.total if priced else None,
            "input_cost_usd": components[0] if priced else None,
            "cache_read_cost_usd": components[1] if priced else None,
            "cache_write_cost_usd": components[2] if priced else None,
            "output_cost_usd": components[3] if priced else None,
            "other_cost_usd": components[4] if priced else None,
            "price_status": price_status,
            "price_source": "; ".join(sorted(costs.sources)) or None,
            "priced_at": started if measured else None,
            "reported_cost_usd": (
                costs.reported if measured and costs.reported_rounds == measured else None
            ),
            "rounds_usage": rounds_usage,
            "repriced_cost_usd": None,
            "repriced_at": None,
            "repriced_source": None,
            "by_model": by_model,
            "tags": list(options.tags),
            "metadata": dict(options.metadata) if options.metadata else {},
            "schema_version": SCHEMA_VERSION,
        }
    )


def _main_model(
    totals: dict[tuple[str | None, str | None], _ModelTotals], event: TurnEvent
) -> tuple[str | None, str | None]:
    if not totals:
        return event.options.model, event.options.provider
    # The model that served the most rounds names the turn; the first one wins a tie.
    (model, provider), _ = max(totals.items(), key=lambda item: item[1].rounds)
    return model, provider
