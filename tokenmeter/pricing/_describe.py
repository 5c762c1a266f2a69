"""`describe_prices`: the rates that `estimate_cost` would apply to a model, as text."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from decimal import Decimal

from genai_prices.types import PriceVariant, StartDateConstraint

from tokenmeter.pricing._estimate import (
    PRICES_ENV,
    PUBLISHED_BATCH_DISCOUNTS,
    current_prices,
    resolve,
    utc_timestamp,
)
from tokenmeter.pricing._rates import REGISTRY, Rate, RatePlan
from tokenmeter.pricing._table import TableModel

__all__ = ["describe_prices"]

_PER_NAMES = {1_000_000: "million", 1_000: "thousand", 1_000_000_000: "billion", 3600: "3,600"}
_NAMES = {
    "output_reasoning_tokens": "reasoning_tokens",
    "requests": "requests (a fee per round)",
}


def describe_prices(model: str, provider: str | None = None, *, at: datetime | None = None) -> str:
    """Describe the rates that `estimate_cost` would apply to `model`, and where they come from.

    Args:
        model: The model id, written as for `estimate_cost`.
        provider: The provider id or alias, or `None`.
        at: The moment whose prices to describe; naive datetimes are UTC. Defaults to now.

    Returns:
        Several lines of text: the matched model and provider, the source of the prices, one
        line per priced unit with its tiers, the table's batch and service-tier prices, the
        discount, and the `Cost.source` of costs priced this way. For an unpriced model, a
        line saying so and how to add a price.
    """
    timestamp = time.time() if at is None else utc_timestamp(at)
    moment = _format_time(timestamp)
    table_source = current_prices().table_source
    resolved = resolve(provider, model)
    if resolved is None:
        return (
            f"No price for model {model!r} (provider {provider!r}) in {table_source} "
            f"or the price overrides. Add one in a TOML file named by {PRICES_ENV}, or pass "
            "it to tokenmeter.configure(prices=...)."
        )

    lines = [
        f"Model {resolved.model_id!r} of provider {resolved.provider_id!r}, "
        f"requested as {model!r} (provider {provider!r})."
    ]
    plan = resolved.plan
    if resolved.table is not None:
        period = resolved.table.period_at(timestamp)
        plan = period.plan
        when = f"Prices from {table_source}, in effect at {moment}"
        if math.isfinite(period.ends):
            when += f" until {_format_time(period.ends)}"
        lines.append(when + ".")
    else:
        lines.append(f"Prices from {resolved.source}.")

    if plan is None:
        lines.append("The table's prices for this period are inconsistent, so none apply.")
    else:
        lines.extend(_rate_lines(plan))
    lines.extend(_batch_and_tier_lines(resolved.table, resolved.provider_id))
    if resolved.discount is not None:
        lines.append(f"Discount: {resolved.discount}% off every price above.")
    lines.append(f"Costs record the source {resolved.source!r}.")
    return "\n".join(lines)


def _rate_lines(plan: RatePlan) -> list[str]:
    lines = ["Rates in USD; each token pays the most specific rate listed for it:"]
    priced = {unit.usage_key for unit, _ in plan.prices}
    for unit, rate in plan.prices:
        name = _NAMES.get(unit.usage_key, unit.usage_key)
        if unit.usage_key == "cache_write_tokens" and "cache_write_1h_tokens" in priced:
            name += " (other than 1-hour writes)"
        per = _PER_NAMES.get(unit.per, f"{unit.per:,}")
        line = f"  {name}: {_usd(rate.base)} per {per}"
        line += "".join(
            f"; {_usd(price)} per {per} when a round has over {start:,} prompt tokens"
            for start, price in rate.tiers
        )
        lines.append(line)
    return lines


def _batch_and_tier_lines(table: TableModel | None, provider_id: str | None) -> list[str]:
    variants = () if table is None else table.variants()
    lines = []
    if variants:
        lines.append("Prices that replace the rates above for some rounds:")
        lines.extend(_variant_line(variant) for variant in variants)
    batch_variants = [variant for variant in variants if variant.when.get("processing") == "batch"]
    if any(variant.constraint is None for variant in batch_variants):
        return lines

    rounds = (
        "Batch rounds before the batch prices above start" if batch_variants else "Batch rounds"
    )
    published = PUBLISHED_BATCH_DISCOUNTS.get(provider_id or "")
    if published is not None:
        lines.append(
            f"{rounds}: {published.percent_off}% off every token rate, per {published.source}."
        )
    else:
        lines.append(f"{rounds}: no batch price known, so the standard rates apply.")
    return lines


def _variant_line(variant: PriceVariant) -> str:
    condition = ", ".join(f"{key} = {value}" for key, value in variant.when.items())
    if isinstance(variant.constraint, StartDateConstraint):
        condition += f", from {variant.constraint.start_date.isoformat()}"
    elif variant.constraint is not None:
        condition += ", at some times of day"
    prices = [
        (price_key, price)
        for price_key, price in variant.prices.__dict__.items()
        if not price_key.startswith("_") and price is not None
    ]
    if not prices:
        return f"  {condition}: the standard rates"
    rates = []
    for price_key, price in prices:
        unit = REGISTRY.unit_for_price_key(price_key)
        per = _PER_NAMES.get(unit.per, f"{unit.per:,}")
        rate = Rate.from_genai(price)
        text = f"{_NAMES.get(unit.usage_key, unit.usage_key)} {_usd(rate.base)} per {per}"
        if rate.tiers:
            text += " (tiered)"
        rates.append(text)
    return f"  {condition}: {'; '.join(rates)}"


def _usd(amount: Decimal) -> str:
    # Plain notation without trailing zeros: $10, not $1E+1 or $10.000.
    return f"${amount.normalize():f}"


def _format_time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
