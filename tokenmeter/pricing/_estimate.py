"""`estimate_cost`: price one round from cached rates, with the user's overrides applied first."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

from genai_prices import data_snapshot
from genai_prices.data_snapshot import DataSnapshot

from tokenmeter._billing import (
    BATCH,
    PROCESSING,
    SERVICE_TIER,
    STANDARD_SERVICE_TIERS,
    merge_context,
    price_context_of,
)
from tokenmeter._logging import RateLimitedLog
from tokenmeter.pricing._overrides import (
    CustomModel,
    PriceOverrides,
    canonical_provider,
    load_price_overrides,
)
from tokenmeter.pricing._rates import DECIMAL_CONTEXT, Rate, RatePlan, UnpriceableUsage
from tokenmeter.pricing._table import (
    GENAI_PRICES_SOURCE,
    TableModel,
    find_table_model,
    model_candidates,
    table_provider_id,
    table_source,
)
from tokenmeter.pricing._updates import start_price_updates_if_enabled
from tokenmeter.records import Cost
from tokenmeter.usage import Usage

__all__ = [
    "PRICES_ENV",
    "PUBLISHED_BATCH_DISCOUNTS",
    "PriceSnapshot",
    "PublishedDiscount",
    "Resolved",
    "current_overrides",
    "current_prices",
    "estimate_cost",
    "resolve",
    "set_price_overrides",
    "utc_timestamp",
]

logger = logging.getLogger("tokenmeter.pricing")

PRICES_ENV: Final = "TOKENMETER_PRICES"
"""Environment variable naming a TOML file of price overrides."""

# Caps the caches and the warned set. A process that prices many distinct model strings
# (ids with a per-request suffix, say) would otherwise grow them without bound.
_MAX_ENTRIES = 4096
_ONE_HUNDRED = Decimal(100)

_usage_warnings = RateLimitedLog(logger, interval_s=300.0)
_context_warnings = RateLimitedLog(logger, interval_s=300.0)


@dataclass(frozen=True, slots=True)
class PublishedDiscount:
    """A discount that a provider publishes for a way of processing, and the page that shows it."""

    percent_off: Decimal
    """Percent off every token price; fees per request or per search are not discounted."""
    source: str
    """The provider's page, named in `Cost.source` of the rounds priced with it."""


PUBLISHED_BATCH_DISCOUNTS: Mapping[str, PublishedDiscount] = {
    "openai": PublishedDiscount(
        Decimal(50), "OpenAI's Batch API pricing, platform.openai.com/docs/guides/batch"
    ),
    "anthropic": PublishedDiscount(
        Decimal(50),
        "Anthropic's Message Batches pricing, "
        "docs.anthropic.com/en/docs/build-with-claude/batch-processing",
    ),
}
"""Batch discounts by genai-prices provider id, used when the table has no batch price for a
model at the time of the round (genai-prices lists batch prices from their start dates only)."""


@dataclass(frozen=True, slots=True)
class Resolved:
    """The source and rates of one (provider, model) pair's price, cached for every round."""

    plan: RatePlan | None
    """Fixed rates of a custom model; `None` when they come from `table`."""
    table: TableModel | None
    """The genai-prices model, whose rates depend on the time of the round."""
    model_id: str
    provider_id: str | None
    source: str
    discount: Decimal | None
    """Percent off, from the overrides."""
    kept_percent: Decimal | None
    """`100 - discount`, or `None` without a discount."""


class _Cache:
    """Everything derived from one genai-prices snapshot and one set of overrides."""

    __slots__ = ("batch_plans", "entries", "overrides", "snapshot", "source")

    def __init__(self, snapshot: DataSnapshot, overrides: PriceOverrides | None) -> None:
        self.snapshot = snapshot
        self.overrides = overrides
        self.source = table_source(snapshot)
        """`Cost.source` of the table's prices."""
        self.entries: dict[tuple[str | None, str], Resolved | None] = {}
        self.batch_plans: dict[int, tuple[RatePlan, RatePlan]] = {}
        """Token-discounted plans by `id()` of the standard plan, which is kept beside its
        derived plan so that the id stays taken."""


class PriceSnapshot:
    """The price table and overrides in effect when it was taken, to price a turn's rounds alike.

    Background price updates and `set_price_overrides` install new prices for later
    snapshots; a snapshot already taken keeps pricing with the prices it started with.
    """

    __slots__ = ("_cache",)

    def __init__(self, cache: _Cache) -> None:
        self._cache = cache

    @property
    def table_source(self) -> str:
        """`Cost.source` of the table's prices in this snapshot, with the table's version."""
        return self._cache.source

    def estimate(
        self,
        usage: Usage,
        model: str,
        provider: str | None,
        at: float,
        price_context: Mapping[str, str] | None = None,
    ) -> Cost | None:
        """Price one round, as `estimate_cost` does, at POSIX time `at`.

        `price_context` defaults to the one `usage` carries (`BilledUsage`).
        """
        context = price_context_of(usage) if price_context is None else price_context
        return _estimate(self._cache, usage, model, provider, at, context)


def current_prices() -> PriceSnapshot:
    """Return a snapshot of the prices in effect now, to price several rounds with them."""
    return PriceSnapshot(_current_cache())


_lock = threading.Lock()
_warned: set[tuple[str | None, str]] = set()
# Overrides set by code; `_FROM_ENV` until `set_price_overrides` is called.
_FROM_ENV: Final = object()
_installed: object = _FROM_ENV
_cache: _Cache | None = None


def estimate_cost(
    usage: Usage,
    model: str,
    provider: str | None = None,
    *,
    at: datetime | None = None,
    batch: bool | None = None,
    service_tier: str | None = None,
) -> Cost | None:
    """Price one round (one LLM call) of `model`.

    Tiered prices apply per round: price each call on its own and add the costs up, since
    the sum of two rounds can cross a tier that neither round reaches.

    A batch round pays the table's batch prices where genai-prices has them for the model
    and the time of the round. Otherwise an OpenAI or Anthropic batch round pays the
    provider's published batch discount (`PUBLISHED_BATCH_DISCOUNTS`), and any other batch
    round the standard prices, as `Cost.source` then records. A service tier pays the
    table's prices for that tier, or the standard prices when the table has none.

    Args:
        usage: The round's usage in tokenmeter's normalized convention.
        model: The model id as the API or the user names it: dated snapshots, `provider/`
            prefixes, Bedrock ids (`us.anthropic.claude-...-v1:0`) and Vertex ids
            (`claude-sonnet-4-5@20250929`) are understood.
        provider: A tokenmeter provider id (`openai`, `bedrock`...) or an alias (`gemini`,
            `aws`...). `None` lets the model id decide.
        at: When the call happened, for prices that change over time. Naive datetimes are
            UTC. Defaults to now.
        batch: Whether the round ran as a batch job. `None` keeps the flag of `usage`, which
            a `BilledUsage` read from a batch result sets; a plain `Usage` is not batch.
        service_tier: The service tier the response reported (`flex`, `priority`...).
            `None` keeps the tier recorded in `usage`, if any.

    Returns:
        The cost, or `None` when the model has no price, in the overrides or in genai-prices,
        or when `usage` contradicts itself (more cache reads than prompt tokens, say). Either
        case logs a warning on `tokenmeter.pricing`: once per (provider, model) for a
        missing price, at most every five minutes per (provider, model) for bad usage.

    Raises:
        TypeError: if `usage` is not a `Usage`.
    """
    if not isinstance(usage, Usage):
        raise TypeError(
            f"usage must be a tokenmeter.Usage, got {usage!r} ({type(usage).__name__}); "
            "read provider responses with tokenmeter.extract_usage() first"
        )

    context = price_context_of(usage)
    if batch is not None or service_tier is not None:
        context = merge_context(context, batch=batch, service_tier=service_tier)
    timestamp = time.time() if at is None else utc_timestamp(at)
    return _estimate(_current_cache(), usage, model, provider, timestamp, context)


def _estimate(
    cache: _Cache,
    usage: Usage,
    model: str,
    provider: str | None,
    timestamp: float,
    context: Mapping[str, str],
) -> Cost | None:
    try:
        resolved = cache.entries[provider, model]
    except KeyError:
        resolved = _resolve_into(cache, provider, model)
    if resolved is None:
        return None

    plan = resolved.plan
    table = resolved.table
    priced_keys: frozenset[str] = frozenset()
    if table is not None:
        if context:
            plan, priced_keys = table.plan_in_context(timestamp, context)
        else:
            plan = table.plan_at(timestamp)
        if table.billed_usage is not None:
            usage = table.billed_usage(usage)
    if plan is None:
        return None

    source = resolved.source
    if context:
        plan, source = _apply_context(cache, resolved, plan, context, priced_keys, model)

    try:
        prices = plan.price(usage, resolved.kept_percent)
    except UnpriceableUsage as error:
        _usage_warnings.log(
            logging.WARNING,
            (provider, model),
            "cannot price a round of model %r (provider %r), so its cost is recorded as "
            "unknown: %s",
            model,
            provider,
            error,
        )
        return None

    input_usd, cache_read_usd, cache_write_usd, output_usd, other_usd, total = prices
    return Cost(
        total_usd=total,
        input_usd=input_usd,
        cache_read_usd=cache_read_usd,
        cache_write_usd=cache_write_usd,
        output_usd=output_usd,
        other_usd=other_usd,
        model_id=resolved.model_id,
        provider_id=resolved.provider_id,
        source=source,
    )


def _apply_context(
    cache: _Cache,
    resolved: Resolved,
    plan: RatePlan,
    context: Mapping[str, str],
    priced_keys: frozenset[str],
    model: str,
) -> tuple[RatePlan, str]:
    """Return the plan and `Cost.source` for a round billed in `context`."""
    notes: list[str] = []
    if context.get(PROCESSING) == BATCH:
        published = PUBLISHED_BATCH_DISCOUNTS.get(resolved.provider_id or "")
        if PROCESSING in priced_keys:
            notes.append("batch prices")
        elif published is not None:
            plan = _tokens_discounted(cache, plan, published.percent_off)
            notes.append(f"batch at {published.percent_off}% off tokens per {published.source}")
        else:
            notes.append("no batch price known, so standard prices")
            _context_warnings.log(
                logging.WARNING,
                ("batch", resolved.provider_id, resolved.model_id),
                "no batch price for model %r (provider %r): the table has none and the "
                "provider publishes no batch discount that tokenmeter knows, so its batch "
                "rounds are priced at the standard prices, an upper bound",
                model,
                resolved.provider_id,
            )

    tier = context.get(SERVICE_TIER)
    if tier is not None and tier not in STANDARD_SERVICE_TIERS:
        if SERVICE_TIER in priced_keys:
            notes.append(f"service tier {tier} prices")
        else:
            notes.append(f"no service tier {tier} price known, so standard prices")

    for key in sorted(priced_keys - {PROCESSING, SERVICE_TIER}):
        notes.append(f"{key} {context[key]} prices")
    if not notes:
        return plan, resolved.source
    return plan, f"{resolved.source}, {', '.join(notes)}"


def _tokens_discounted(cache: _Cache, plan: RatePlan, percent_off: Decimal) -> RatePlan:
    found = cache.batch_plans.get(id(plan))
    if found is not None and found[0] is plan:
        return found[1]

    kept_percent = 100 - percent_off
    prices: list[tuple[str, Rate]] = []
    for unit, rate in plan.prices:
        if unit.dimensions.get("family") == "tokens":
            rate = Rate(
                _percent_of(rate.base, kept_percent),
                tuple((start, _percent_of(price, kept_percent)) for start, price in rate.tiers),
            )
        prices.append((unit.price_key, rate))
    discounted = RatePlan(prices)

    with _lock:
        if len(cache.batch_plans) >= _MAX_ENTRIES:
            cache.batch_plans.clear()
        cache.batch_plans[id(plan)] = (plan, discounted)
    return discounted


def set_price_overrides(
    source: str | os.PathLike[str] | Mapping[str, Any] | PriceOverrides | None,
) -> PriceOverrides | None:
    """Install price overrides for every later `estimate_cost` call, replacing earlier ones.

    Args:
        source: A TOML file path, a mapping of the same shape, a `PriceOverrides` from
            `load_price_overrides`, or `None` to remove every override, including the file
            that `TOKENMETER_PRICES` names.

    Returns:
        The installed overrides.

    Raises:
        ValueError: if the file or mapping is invalid; the overrides in use stay unchanged.
    """
    global _installed, _cache

    overrides = (
        source
        if source is None or isinstance(source, PriceOverrides)
        else load_price_overrides(source)
    )
    with _lock:
        _installed = overrides
        _cache = None
    return overrides


def current_overrides() -> PriceOverrides | None:
    """Return the overrides in use, reading `TOKENMETER_PRICES` if no code has set any."""
    return _current_cache().overrides


def resolve(provider: str | None, model: str) -> Resolved | None:
    """Return where the price of `model` comes from, as `estimate_cost` would, or `None`."""
    cache = _current_cache()
    try:
        return cache.entries[provider, model]
    except KeyError:
        return _resolve_into(cache, provider, model)


def _current_cache() -> _Cache:
    cache = _cache
    if cache is None or cache.snapshot is not data_snapshot.get_snapshot():
        cache = _renew_cache()
    return cache


def _new_lock_in_child() -> None:
    # A thread of the parent may have held the lock at fork time; the child has no such thread.
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_in_child)


def _reset() -> None:
    """Forget overrides, caches and warnings, as in a new process. For tests."""
    global _installed, _cache
    with _lock:
        _installed = _FROM_ENV
        _cache = None
        _warned.clear()


def _renew_cache() -> _Cache:
    global _cache
    # The first price lookup of the process, not the import, may start the updater.
    start_price_updates_if_enabled()
    with _lock:
        snapshot = data_snapshot.get_snapshot()
        if _cache is not None and _cache.snapshot is snapshot:
            return _cache

        if _cache is not None:
            overrides = _cache.overrides
        elif _installed is _FROM_ENV:
            overrides = _overrides_from_env()
        else:
            assert _installed is None or isinstance(_installed, PriceOverrides)
            overrides = _installed
        _cache = _Cache(snapshot, overrides)
        return _cache


def _overrides_from_env() -> PriceOverrides | None:
    path = os.environ.get(PRICES_ENV, "").strip()
    if not path:
        return None
    try:
        return load_price_overrides(path)
    except ValueError as error:
        # Pricing runs on behalf of metered calls, which must not fail over a price file;
        # configure(prices=...) is where a bad file raises.
        logger.error("%s is ignored, so no price overrides apply: %s", PRICES_ENV, error)
        return None


def _percent_of(price: Decimal, percent: Decimal) -> Decimal:
    return DECIMAL_CONTEXT.divide(price * percent, 100)


def _resolve_into(cache: _Cache, provider: str | None, model: str) -> Resolved | None:
    with _lock:
        if (provider, model) in cache.entries:
            return cache.entries[provider, model]

        resolved = _resolve(cache, provider, model)
        if len(cache.entries) >= _MAX_ENTRIES:
            cache.entries.clear()
        cache.entries[provider, model] = resolved

        if resolved is None and (provider, model) not in _warned:
            if len(_warned) < _MAX_ENTRIES:
                _warned.add((provider, model))
            _warn_unpriced(provider, model)
        return resolved


def _resolve(cache: _Cache, provider: str | None, model: object) -> Resolved | None:
    if not isinstance(model, str) or not model.strip():
        return None

    overrides = cache.overrides
    table_provider: str | None = None
    known_provider = True
    if provider is not None:
        known_provider, table_provider = table_provider_id(provider, cache.snapshot)
    call_provider = None if provider is None else canonical_provider(provider)

    table = find_table_model(table_provider, model, cache.snapshot) if known_provider else None

    # Overrides match the id as written, its rewrites, and the table's id for it, so that
    # a price for "gpt-4o" also covers "gpt-4o-2024-08-06".
    names = [ref for _, ref in model_candidates(table_provider, model)]
    if table is not None:
        names.append(table.model_id)

    if overrides is not None:
        custom = _find_custom(overrides, call_provider, names)
        if custom is not None:
            provider_id = custom.provider or call_provider
            discount = _discount(overrides, provider_id, (custom.name,))
            return _resolved(custom.plan, None, custom.name, provider_id, cache, discount)

    if table is None:
        return None
    discount = None
    if overrides is not None:
        discount = _discount(overrides, call_provider or table.provider_id, names)
    return _resolved(None, table, table.model_id, table.provider_id, cache, discount)


def _resolved(
    plan: RatePlan | None,
    table: TableModel | None,
    model_id: str,
    provider_id: str | None,
    cache: _Cache,
    discount: Decimal | None,
) -> Resolved:
    overrides = cache.overrides
    source = cache.source if table is not None else ""
    if plan is not None and overrides is not None:
        source = overrides.source
    elif discount is not None and overrides is not None:
        source = f"{cache.source}, {discount}% off per {overrides.source}"

    kept_percent = None if discount is None else _ONE_HUNDRED - discount
    return Resolved(plan, table, model_id, provider_id, source, discount, kept_percent)


def _find_custom(
    overrides: PriceOverrides, call_provider: str | None, names: Iterable[str]
) -> CustomModel | None:
    if not overrides.models:
        return None
    for name in names:
        custom = overrides.models.get(name.strip().lower())
        if custom is None:
            continue
        if custom.provider is None or call_provider is None or custom.provider == call_provider:
            return custom
    return None


def _discount(
    overrides: PriceOverrides, provider_id: str | None, model_names: Iterable[str]
) -> Decimal | None:
    for name in model_names:
        discount = overrides.model_discounts.get(name.strip().lower())
        if discount is not None:
            return discount
    if provider_id is None:
        return None
    return overrides.provider_discounts.get(provider_id)


def _warn_unpriced(provider: str | None, model: object) -> None:
    example = model if isinstance(model, str) and model.strip() else "MODEL"
    where = "%s or the price overrides"
    if provider is not None and not table_provider_id(provider)[0]:
        where = "the price overrides, and the provider is not in %s"
    logger.warning(
        "no price for model %r (provider %r) in " + where + ", so its cost is "
        "recorded as unknown. To add one, write a TOML file such as\n"
        '  [models."%s"]\n'
        "  input = 1.0    # USD per million prompt tokens\n"
        "  output = 2.0   # USD per million completion tokens\n"
        "and name it in %s or pass it to tokenmeter.configure(prices=...)",
        model,
        provider,
        GENAI_PRICES_SOURCE,
        example,
        PRICES_ENV,
    )


def utc_timestamp(moment: datetime) -> float:
    """Return the POSIX time of `moment`, reading a naive datetime as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
