"""`BilledUsage`: one round's usage together with how the provider billed it.

A round can be billed at other rates than the standard ones (a batch job, a service tier)
and some providers report what they charged. Both facts belong to the round, and the round
travels as its `Usage` from the response reader to the pricing on the delivery thread, so
they ride on the usage object as a `Usage` subclass.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final

from tokenmeter.usage import Usage

__all__ = [
    "BATCH",
    "PROCESSING",
    "SERVICE_TIER",
    "STANDARD_SERVICE_TIERS",
    "BilledUsage",
    "billed_as_reported",
    "merge_context",
    "price_context_of",
    "reported_cost_of",
    "with_billing",
]

PROCESSING: Final = "processing"
"""genai-prices' price-variant key for how a request was processed; `BATCH` is its value."""
BATCH: Final = "batch"
SERVICE_TIER: Final = "service_tier"
"""genai-prices' price-variant key for the service tier a response reports."""

STANDARD_SERVICE_TIERS = frozenset({"default", "standard", "auto", "on_demand"})
"""Service tier names that mean the standard price: OpenAI's `default` and `auto`,
Anthropic's and Gemini's `standard`, Groq's `on_demand`. Readers do not keep them."""

# 1 xAI tick is 1e-10 USD (xAI's API reference for `cost_in_usd_ticks`).
_XAI_TICKS_KEY = "cost_in_usd_ticks"
_EMPTY: Mapping[str, str] = {}


class BilledUsage(Usage):
    """Usage of one round, with its price context and the cost the provider reported.

    Equality and hashing compare the token counts only, as for `Usage`. Adding two
    `BilledUsage` objects gives a plain `Usage`, because the sum of rounds is no round.
    """

    __slots__ = ("price_context", "reported_cost_usd")

    price_context: Mapping[str, str]
    """genai-prices price-variant keys and values: `{"processing": "batch"}`,
    `{"service_tier": "flex"}`. Empty for a standard round."""
    reported_cost_usd: Decimal | None
    """The cost the provider reported for the round, exactly; `None` when not reported."""

    @classmethod
    def of(
        cls,
        usage: Usage,
        price_context: Mapping[str, str],
        reported_cost_usd: Decimal | None,
    ) -> BilledUsage:
        """Return `usage`'s counts with the given price context and reported cost."""
        billed = cls.__new__(cls)
        setter = object.__setattr__
        setter(billed, "input_tokens", usage.input_tokens)
        setter(billed, "output_tokens", usage.output_tokens)
        setter(billed, "cache_read_tokens", usage.cache_read_tokens)
        setter(billed, "cache_write_tokens", usage.cache_write_tokens)
        setter(billed, "reasoning_tokens", usage.reasoning_tokens)
        setter(billed, "details", usage.details)
        setter(billed, "price_context", dict(price_context) if price_context else _EMPTY)
        setter(billed, "reported_cost_usd", reported_cost_usd)
        return billed

    def __repr__(self) -> str:
        counts = super().__repr__()
        parts = [counts[counts.index("(") + 1 : -1]] if not counts.endswith("()") else []
        if self.price_context:
            parts.append(f"price_context={dict(self.price_context)!r}")
        if self.reported_cost_usd is not None:
            parts.append(f"reported_cost_usd={self.reported_cost_usd!r}")
        return f"BilledUsage({', '.join(parts)})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_billed_usage,
            (self.as_dict(), dict(self.price_context), self.reported_cost_usd),
        )


def _rebuild_billed_usage(
    data: dict[str, Any], price_context: dict[str, str], reported_cost_usd: Decimal | None
) -> BilledUsage:
    return BilledUsage.of(Usage(**data), price_context, reported_cost_usd)


def with_billing(
    usage: Usage,
    *,
    batch: bool | None = None,
    service_tier: str | None = None,
    speed: str | None = None,
    reported_cost_usd: Decimal | None = None,
) -> Usage:
    """Return `usage` with billing facts added to those it carries; `usage` itself if none.

    Arguments left `None` keep what `usage` carries; `batch=False` removes a batch mark.
    """
    if batch is None and service_tier is None and speed is None and reported_cost_usd is None:
        return usage

    context = merge_context(price_context_of(usage), batch=batch, service_tier=service_tier)
    if speed is not None:
        context["speed"] = speed.strip().lower()
    if reported_cost_usd is None and isinstance(usage, BilledUsage):
        reported_cost_usd = usage.reported_cost_usd
    if not context and reported_cost_usd is None and not isinstance(usage, BilledUsage):
        return usage
    return BilledUsage.of(usage, context, reported_cost_usd)


def billed_as_reported(usage: Usage, service_tier: object = None, speed: object = None) -> Usage:
    """Return `usage` with the service tier and speed a response reported, when not standard.

    Values that are not non-empty strings are ignored. The standard tier is not kept, so a
    standard round stays a plain `Usage` and takes pricing's fast path.
    """
    tier = service_tier.strip().lower() if isinstance(service_tier, str) else ""
    mode = speed.strip().lower() if isinstance(speed, str) else ""
    if tier in STANDARD_SERVICE_TIERS:
        tier = ""
    if mode in STANDARD_SERVICE_TIERS:
        mode = ""
    if not tier and not mode:
        return usage
    return with_billing(usage, service_tier=tier or None, speed=mode or None)


def merge_context(
    context: Mapping[str, str], *, batch: bool | None = None, service_tier: str | None = None
) -> dict[str, str]:
    """Return a copy of a price context with a batch mark and a service tier applied.

    `batch=None` keeps the context's batch mark, `True` sets it and `False` removes it. A
    `service_tier` of `"batch"` (what Anthropic reports for Message Batches results) means
    batch processing, not a tier, unless `batch=False` is given. Tiers are kept in
    lower case, as genai-prices lists them.
    """
    merged = dict(context)
    if service_tier is not None:
        tier = service_tier.strip().lower()
        if tier == BATCH:
            if batch is None:
                batch = True
        elif tier:
            merged[SERVICE_TIER] = tier
    if batch:
        merged[PROCESSING] = BATCH
    elif batch is False:
        merged.pop(PROCESSING, None)
    return merged


def price_context_of(usage: Usage) -> Mapping[str, str]:
    """Return the price context that `usage` carries; empty for a plain `Usage`."""
    if isinstance(usage, BilledUsage):
        return usage.price_context
    return _EMPTY


def reported_cost_of(usage: Usage) -> Decimal | None:
    """Return the cost the provider reported for the round, or `None` if it reported none.

    Reads `BilledUsage.reported_cost_usd`, or else xAI's `details["cost_in_usd_ticks"]`.
    """
    if isinstance(usage, BilledUsage) and usage.reported_cost_usd is not None:
        return usage.reported_cost_usd
    ticks = usage.details.get(_XAI_TICKS_KEY)
    if ticks is None:
        return None
    return Decimal(ticks).scaleb(-10)
