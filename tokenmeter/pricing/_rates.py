"""Rate plans: the per-unit prices of one model and period, and the arithmetic that prices a round.

A plan prices usage the way genai-prices 0.2.3 does (`ModelPrice.calc_price`), so that both give
the same `Decimal` to the last digit, but it does the unit bookkeeping once, when the plan is
built, instead of on every call:

- Usage is split into disjoint leaves. A priced unit counts its own usage key minus the leaves
  of the more specific priced units below it. For example, with input, cache-read and 1-hour
  cache-write prices, only the prompt tokens that are neither read from nor written to the
  cache pay the input rate.
- A tiered price picks the rate of the highest tier whose start the round's `input_tokens`
  exceeds, and applies it to every unit of the round (a cliff, not a marginal rate).
- Each leaf costs `rate * count / per`; `requests` counts 1 per round.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal, getcontext, localcontext
from functools import cache
from itertools import combinations
from typing import Any

from genai_prices.data_units import unit_data
from genai_prices.types import TieredPrices
from genai_prices.units import UnitDef, UnitRegistry
from genai_prices.validation import validate_priced_units

from tokenmeter.usage import Usage

__all__ = [
    "COMPONENT_NAMES",
    "DECIMAL_CONTEXT",
    "DETAIL_ALIASES",
    "REGISTRY",
    "Prices",
    "Rate",
    "RatePlan",
    "UnpriceableUsage",
    "detail_values",
]

REGISTRY = UnitRegistry(unit_data)
"""genai-prices' units: which usage key each price key prices, per how many, and its dimensions."""

# The same precision and rounding as Python's default context, which genai-prices computes
# in, but owned here, so that a caller who changes the thread's decimal context changes
# neither the result nor its agreement with genai-prices.
DECIMAL_CONTEXT = Context(prec=28, rounding=ROUND_HALF_EVEN)
_ZERO = Decimal(0)

INPUT, CACHE_READ, CACHE_WRITE, OUTPUT, OTHER = range(5)
COMPONENT_NAMES = ("input", "cache_read", "cache_write", "output", "other")
"""Names of the `Cost` components, by the index `RatePlan.price` uses."""

DETAIL_ALIASES: Mapping[str, str] = {
    # Anthropic's `server_tool_use.web_search_requests`.
    "web_search_requests": "web_searches",
    # OpenAI bills each `file_search_call` output item at its storage-search rate.
    "file_search_calls": "storage_searches",
}
"""`Usage.details` keys named as a provider names them, mapped to genai-prices' usage key.

An alias counts only when the genai-prices key itself is absent from the details. Code
execution calls have no alias: providers bill them per container session or hour, which a
call count does not measure.
"""

# genai-prices' usage keys of the five normalized fields, in `Usage` order. They are always
# reported, so only `details` keys can be missing.
_FIELD_INDEX = {
    "input_tokens": 0,
    "cache_read_tokens": 1,
    "cache_write_tokens": 2,
    "output_tokens": 3,
    "output_reasoning_tokens": 4,
}
_NO_DETAILS: Mapping[str, int] = {}


Prices = tuple[Decimal, Decimal, Decimal, Decimal, Decimal, Decimal]
"""The cost of a round by component, indexed like `COMPONENT_NAMES`, then the total."""


class UnpriceableUsage(ValueError):
    """The usage contradicts itself under the units that a plan prices."""


@dataclass(frozen=True, slots=True)
class Rate:
    """USD per `per` units, with optional cliff tiers over the round's prompt tokens."""

    base: Decimal
    tiers: tuple[tuple[int, Decimal], ...] = ()
    """`(start, price)` pairs in ascending `start`; a tier applies when `input_tokens > start`."""

    @classmethod
    def from_genai(cls, price: Decimal | TieredPrices) -> Rate:
        if isinstance(price, TieredPrices):
            tiers = sorted((tier.start, tier.price) for tier in price.tiers)
            return cls(price.base, tuple(tiers))
        return cls(price)

    def at(self, input_tokens: int) -> Decimal:
        """Return the price that applies to a round with `input_tokens` prompt tokens."""
        for start, price in reversed(self.tiers):
            if input_tokens > start:
                return price
        return self.base


@dataclass(frozen=True, slots=True)
class _PricedUnit:
    usage_key: str
    field_index: int
    """Index of the normalized field that contains the count, or -1 for a `details` key."""
    per: int
    component: int
    descendants: tuple[int, ...]
    """Indexes, in the plan, of the more specific priced units whose leaves this one excludes."""
    ambiguity_checks: tuple[tuple[str, ...], ...]
    """Groups of usage keys that leave this unit's count unknown when every key of a group is
    positive and this unit's key is absent from the details. Empty for the five fields."""


class RatePlan:
    """The prices of one model for one price period, ready to price rounds.

    Thread-safe, because it is immutable after construction.

    Raises:
        ValueError: from the constructor, if the prices name an unknown unit or lack a price
            that genai-prices requires beside another (for example a cache-read price without
            an input price).
    """

    __slots__ = (
        "_band_rates",
        "_band_requests",
        "_band_starts",
        "_fast_path",
        "_units",
        "prices",
    )

    def __init__(self, prices: Iterable[tuple[str, Decimal | TieredPrices | Rate]]) -> None:
        resolved: list[tuple[UnitDef, Rate]] = []
        for price_key, price in prices:
            try:
                unit = REGISTRY.unit_for_price_key(price_key)
            except KeyError:
                raise ValueError(f"unknown price key {price_key!r}") from None
            rate = price if isinstance(price, Rate) else Rate.from_genai(price)
            resolved.append((unit, rate))
        validate_priced_units([unit for unit, _ in resolved], REGISTRY)

        self.prices: tuple[tuple[UnitDef, Rate], ...] = tuple(resolved)
        """Every priced unit and its rate, requests included, in the order given."""

        # Most specific units first, as genai-prices orders them, so that every descendant's
        # leaf is known before its ancestor subtracts it.
        ordered = sorted(
            (pair for pair in resolved if pair[0].usage_key != "requests"),
            key=lambda pair: (-len(pair[0].dimensions), pair[0].usage_key),
        )
        units: list[_PricedUnit] = []
        for index, (unit, _) in enumerate(ordered):
            descendants = tuple(
                other_index
                for other_index, (other, _) in enumerate(ordered[:index])
                if unit.dimensions.items() <= other.dimensions.items()
            )
            units.append(
                _PricedUnit(
                    usage_key=unit.usage_key,
                    field_index=_FIELD_INDEX.get(unit.usage_key, -1),
                    per=unit.per,
                    component=_component(unit),
                    descendants=descendants,
                    ambiguity_checks=_ambiguity_checks(unit.usage_key),
                )
            )
        self._units = tuple(units)
        has_requests = any(unit.usage_key == "requests" for unit, _ in resolved)
        self._fast_path = _compile_fast_path(self._units, has_requests)

        # Every tier starts at a prompt-token threshold, so the thresholds of all units cut
        # the prompt sizes into bands, and each band has one rate per unit.
        starts = sorted({start for _, rate in resolved for start, _ in rate.tiers})
        self._band_starts = tuple(starts)
        band_inputs = [0, *(start + 1 for start in starts)]
        self._band_rates = tuple(
            tuple(rate.at(tokens) for _, rate in ordered) for tokens in band_inputs
        )
        request_rate = next((rate for unit, rate in resolved if unit.usage_key == "requests"), None)
        self._band_requests = tuple(
            None if request_rate is None else DECIMAL_CONTEXT.divide(request_rate.at(tokens), 1000)
            for tokens in band_inputs
        )

    def price(self, usage: Usage, kept_percent: Decimal | None = None) -> Prices:
        """Return the cost of one round by component, indexed like `COMPONENT_NAMES`, and in total.

        Args:
            usage: The round's usage.
            kept_percent: The percentage of the price to charge, to apply a discount.

        Raises:
            UnpriceableUsage: if a part is larger than its whole (cache reads over
                `input_tokens`, say), or a count that the plan needs is ambiguous.
        """
        context = getcontext()
        if context.prec != DECIMAL_CONTEXT.prec or context.rounding != DECIMAL_CONTEXT.rounding:
            with localcontext(DECIMAL_CONTEXT):
                return self._price(usage, kept_percent)
        return self._price(usage, kept_percent)

    def _price(self, usage: Usage, kept_percent: Decimal | None) -> Prices:
        input_tokens = usage.input_tokens
        details = detail_values(usage.details) if usage.details else _NO_DETAILS
        band = 0
        for start in self._band_starts:
            if input_tokens <= start:
                break
            band += 1
        rates = self._band_rates[band]
        request_cost = self._band_requests[band]

        prices = self._fast_path(
            input_tokens,
            usage.cache_read_tokens,
            usage.cache_write_tokens,
            usage.output_tokens,
            usage.reasoning_tokens,
            details,
            rates,
            request_cost,
            _ZERO,
        )
        if prices is None:
            prices = self._price_checked(usage, details, rates, request_cost)
        if kept_percent is None:
            return prices

        # Multiplying by the percentage and then dividing by 100 keeps the digits short:
        # $0.0045 at 80% is 0.0036, not the 0.00360 that multiplying by 0.8 gives.
        parts = [part * kept_percent / 100 if part else part for part in prices[:5]]
        total = parts[0] + parts[1] + parts[2] + parts[3] + parts[4]
        return parts[0], parts[1], parts[2], parts[3], parts[4], total

    def _price_checked(
        self,
        usage: Usage,
        details: Mapping[str, int],
        rates: tuple[Decimal, ...],
        request_cost: Decimal | None,
    ) -> Prices:
        """Price a round step by step, raising `UnpriceableUsage` with the cause of a problem.

        `_fast_path` computes the same, and defers to this method whenever it finds a problem.
        """
        fields = (
            usage.input_tokens,
            usage.cache_read_tokens,
            usage.cache_write_tokens,
            usage.output_tokens,
            usage.reasoning_tokens,
        )
        parts = [_ZERO, _ZERO, _ZERO, _ZERO, _ZERO]
        leaves: list[int] = []
        for index, unit in enumerate(self._units):
            if unit.field_index >= 0:
                count = fields[unit.field_index]
            else:
                found = details.get(unit.usage_key)
                if found is None:
                    _check_not_ambiguous(unit.usage_key, unit.ambiguity_checks, fields, details)
                    found = 0
                count = found
            leaf = count
            for descendant in unit.descendants:
                leaf -= leaves[descendant]
            if leaf < 0:
                raise UnpriceableUsage(self._overflow_message(index, count, leaves))
            leaves.append(leaf)

            if leaf:
                # The same operations, in the same order, as genai-prices' calc_unit_price.
                parts[unit.component] += rates[index] * leaf / unit.per

        if request_cost is not None:
            parts[OTHER] += request_cost
        total = parts[0] + parts[1] + parts[2] + parts[3] + parts[4]
        return parts[0], parts[1], parts[2], parts[3], parts[4], total

    def _overflow_message(self, index: int, count: int, leaves: list[int]) -> str:
        unit = self._units[index]
        parts = [
            f"{_public_key(self._units[descendant].usage_key)}={leaves[descendant]}"
            for descendant in unit.descendants
            if leaves[descendant]
        ]
        if len(parts) == 1:
            verb, pronoun = "is", "it"
        else:
            verb, pronoun = "add up to", "them"
        return (
            f"{' + '.join(parts)} {verb} more than {_public_key(unit.usage_key)}={count}, "
            f"which should include {pronoun}"
        )


def detail_values(details: Mapping[str, int]) -> Mapping[str, int]:
    """Return `Usage.details` under genai-prices' usage keys.

    The provider names in `DETAIL_ALIASES` fill in for genai-prices keys that are absent, and
    keys of the five normalized fields are dropped: the fields are their only source.
    """
    if not any(key in DETAIL_ALIASES or key in _FIELD_INDEX for key in details):
        return details
    values: dict[str, int] = {}
    for key, count in details.items():
        alias = DETAIL_ALIASES.get(key)
        if key in _FIELD_INDEX:
            continue
        if alias is None:
            values[key] = count
        elif alias not in details:
            values[alias] = values.get(alias, 0) + count
    return values


def _public_key(usage_key: str) -> str:
    if usage_key == "output_reasoning_tokens":
        return "reasoning_tokens"
    if usage_key in _FIELD_INDEX:
        return usage_key
    return f"details[{usage_key!r}]"


def _component(unit: UnitDef) -> int:
    dimensions = unit.dimensions
    if dimensions.get("family") != "tokens":
        return OTHER
    if dimensions.get("direction") == "output":
        return OUTPUT
    token_type = dimensions.get("token_type")
    if token_type == "cache_read":
        return CACHE_READ
    if token_type == "cache_write":
        return CACHE_WRITE
    return INPUT


@cache
def _ambiguity_checks(usage_key: str) -> tuple[tuple[str, ...], ...]:
    """Return the key groups whose positive counts leave `usage_key` unknown when it is absent.

    genai-prices raises instead of assuming zero for an absent key in two cases. One is a
    more specific key that is reported (audio cache reads without audio input). The other is
    two reported keys that overlap exactly on it (audio input and cache reads, but no audio
    cache reads). The five normalized fields are always reported, so they need no check.
    """
    if usage_key in _FIELD_INDEX:
        return ()

    requested = REGISTRY.units[usage_key]
    reported = [unit for unit in REGISTRY.units.values() if unit.usage_key != "requests"]
    checks: list[tuple[str, ...]] = [
        (unit.usage_key,)
        for unit in reported
        if unit is not requested and requested.dimensions.items() <= unit.dimensions.items()
    ]
    for left, right in combinations(reported, 2):
        if not left.is_compatible_with(right):
            continue
        if left.dimensions.items() <= right.dimensions.items():
            continue
        if right.dimensions.items() <= left.dimensions.items():
            continue
        if dict(requested.dimensions) == {**left.dimensions, **right.dimensions}:
            checks.append((left.usage_key, right.usage_key))
    return tuple(checks)


_FastPath = Callable[..., Prices | None]
# Argument names of the generated code for the five fields, in `_FIELD_INDEX` order.
_FIELD_ARGUMENTS = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
)


def _compile_fast_path(units: tuple[_PricedUnit, ...], has_requests: bool) -> _FastPath:
    """Generate a function that prices a round with the plan's units unrolled.

    A loop over the units spends most of its time on interpreter overhead. The generated
    straight-line code is about four times faster: 1.2 µs against 4.5 µs for the plan of
    claude-sonnet-4-5, measured once with `timeit` on a 2-core virtual machine.

    The function takes the five normalized counts, the details, the band's rates and request
    fee, and a zero. It returns the five components and the total. When the usage needs
    checking (a negative leaf or an ambiguous absent key), it returns `None`, so that
    `RatePlan._price_checked` finds and reports the cause. The source contains only names
    made here and `repr()` literals of genai-prices' usage keys.
    """

    lines = [
        f"def fast_path({', '.join(_FIELD_ARGUMENTS)}, details, rates, request_cost, zero):",
    ]
    for index, unit in enumerate(units):
        if unit.field_index >= 0:
            lines.append(f"    count{index} = {_FIELD_ARGUMENTS[unit.field_index]}")
            continue
        lines.append(f"    count{index} = details.get({unit.usage_key!r})")
        lines.append(f"    if count{index} is None:")
        lines.append(f"        count{index} = 0")
        if unit.ambiguity_checks:
            condition = " or ".join(_group_condition(group) for group in unit.ambiguity_checks)
            lines.append(f"        if {condition}:")
            lines.append("            return None")

    for index, unit in enumerate(units):
        subtracted = "".join(f" - leaf{descendant}" for descendant in unit.descendants)
        lines.append(f"    leaf{index} = count{index}{subtracted}")
        if unit.descendants:
            lines.append(f"    if leaf{index} < 0:")
            lines.append("        return None")

    lines.append("    part0 = part1 = part2 = part3 = part4 = zero")
    for index, unit in enumerate(units):
        part = f"part{unit.component}"
        lines.append(f"    if leaf{index}:")
        lines.append(f"        {part} = {part} + rates[{index}] * leaf{index} / {unit.per}")
    used = sorted({unit.component for unit in units})
    if has_requests:
        lines.append(f"    part{OTHER} = part{OTHER} + request_cost")
        used = sorted({*used, OTHER})
    # Components that no unit prices stay zero and need no addition.
    total = " + ".join(f"part{component}" for component in used) or "zero"
    lines.append(f"    return part0, part1, part2, part3, part4, {total}")

    namespace: dict[str, Any] = {}
    exec(compile("\n".join(lines), "<tokenmeter rate plan>", "exec"), namespace)
    fast_path: _FastPath = namespace["fast_path"]
    return fast_path


def _group_condition(group: tuple[str, ...]) -> str:
    """Return the source of a test that every key of `group` has a positive count."""
    tests = []
    for usage_key in group:
        index = _FIELD_INDEX.get(usage_key)
        if index is None:
            tests.append(f"details.get({usage_key!r}, 0) > 0")
        else:
            tests.append(f"{_FIELD_ARGUMENTS[index]} > 0")
    if any(usage_key not in _FIELD_INDEX for usage_key in group):
        # Most rounds have no details: one truth test then skips the lookups.
        tests.insert(0, "details")
    return "(" + " and ".join(tests) + ")"


def _check_not_ambiguous(
    usage_key: str,
    checks: tuple[tuple[str, ...], ...],
    fields: tuple[int, ...],
    details: Mapping[str, int],
) -> None:
    def count(key: str) -> int:
        index = _FIELD_INDEX.get(key)
        return details.get(key, 0) if index is None else fields[index]

    for group in checks:
        if all(count(key) > 0 for key in group):
            reported = " and ".join(_public_key(key) for key in group)
            raise UnpriceableUsage(
                f"{_public_key(usage_key)} is missing, but {reported} is reported, so its "
                f"count is unknown; report {_public_key(usage_key)} too"
            )
