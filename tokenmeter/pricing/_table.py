"""Look models up in genai-prices' table, by the provider ids and model ids that users write."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from importlib.metadata import version
from typing import Any

from genai_prices import data_snapshot
from genai_prices.data_snapshot import DataSnapshot
from genai_prices.types import (
    ConditionalPrice,
    ModelInfo,
    ModelPrice,
    PriceVariant,
    Provider,
    StartDateConstraint,
    TimeOfDateConstraint,
)

from tokenmeter.pricing._rates import REGISTRY, RatePlan
from tokenmeter.usage import Usage

__all__ = [
    "GENAI_PRICES_SOURCE",
    "PROVIDER_ALIASES",
    "Period",
    "TableModel",
    "find_table_model",
    "model_candidates",
    "table_provider_id",
    "table_source",
]

logger = logging.getLogger("tokenmeter.pricing")

GENAI_PRICES_SOURCE = f"genai-prices {version('genai-prices')}"
"""`Cost.source` of prices that come from the table bundled with genai-prices."""


def table_source(snapshot: DataSnapshot) -> str:
    """Return the `Cost.source` of prices from `snapshot`: the package, and the fetch time of
    a table that genai-prices' `UpdatePrices` downloaded."""
    if not snapshot.from_auto_update:
        return GENAI_PRICES_SOURCE
    # genai-prices stamps a snapshot with datetime.now(), a naive local time.
    fetched = snapshot.timestamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{GENAI_PRICES_SOURCE}, prices updated {fetched}"


PROVIDER_ALIASES: dict[str, str | None] = {
    # tokenmeter's provider ids
    "openai": "openai",
    "azure": "azure",
    "anthropic": "anthropic",
    "google": "google",
    "xai": "x-ai",
    "bedrock": "aws",
    "deepseek": "deepseek",
    "mistral": "mistral",
    "groq": "groq",
    "cohere": "cohere",
    "openrouter": "openrouter",
    # Names used by SDKs, LiteLLM and the OpenTelemetry GenAI conventions (`gen_ai.system`).
    "x-ai": "x-ai",
    "x.ai": "x-ai",
    "grok": "x-ai",
    "gemini": "google",
    "google-genai": "google",
    "google_genai": "google",
    "google-vertex": "google",
    "vertex": "google",
    "vertexai": "google",
    "vertex_ai": "google",
    "vertex_ai_beta": "google",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "aws": "aws",
    "aws.bedrock": "aws",
    "aws_bedrock": "aws",
    "amazon-bedrock": "aws",
    "amazon_bedrock": "aws",
    "bedrock_converse": "aws",
    "azure_ai": "azure",
    "azure-openai": "azure",
    "azure_openai": "azure",
    "az.ai.openai": "azure",
    "azure.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "mistral_ai": "mistral",
    "mistralai": "mistral",
    "cohere_chat": "cohere",
    "together_ai": "together",
    "fireworks_ai": "fireworks",
    "moonshot": "moonshotai",
    # LiteLLM names the real provider in the model id ("anthropic/claude-...").
    "litellm": None,
}
"""Provider ids and aliases, lower case, mapped to genai-prices' provider id.

`None` means the provider is named by the model id's `provider/` prefix. Ids missing here go
through genai-prices' own provider matching (`find_provider_by_id`).
"""

# Bedrock model ids: an optional cross-region profile ("us.", "global."), the vendor, the
# model, and a version suffix ("-v1:0"). Inference profile ARNs end with such an id.
_BEDROCK_REGION = re.compile(r"^(?:us|us-gov|eu|apac|ap|jp|au|ca|global)\.")
_BEDROCK_VENDOR = re.compile(
    r"^(?:anthropic|amazon|meta|mistral|cohere|ai21|deepseek|openai|qwen|writer|"
    r"twelvelabs|stability|moonshot|moonshotai|minimax|google|nvidia)\."
)
_BEDROCK_VERSION = re.compile(r"(?:-v\d+(?::\d+)?|:\d+)$")


def table_provider_id(
    provider: str, snapshot: DataSnapshot | None = None
) -> tuple[bool, str | None]:
    """Map a provider id or alias to genai-prices' provider id.

    Args:
        provider: A provider id or alias.
        snapshot: The price table to look in; the current one by default.

    Returns:
        `(known, provider_id)`. `known` is false for a provider that genai-prices does not
        list. `provider_id` is `None` for LiteLLM, whose model ids carry the provider.
    """
    normalized = provider.strip().lower()
    if normalized in PROVIDER_ALIASES:
        return True, PROVIDER_ALIASES[normalized]

    snapshot = snapshot or data_snapshot.get_snapshot()
    found = data_snapshot.find_provider_by_id(snapshot.providers, normalized)
    if found is None:
        return False, None
    return True, found.id


def model_candidates(provider_id: str | None, model: str) -> Iterator[tuple[str | None, str]]:
    """Yield `(provider_id, model_ref)` pairs to try, most literal first.

    The rewrites handle how users write model ids: `provider/model` prefixes (LiteLLM,
    OpenRouter, `models/` of the Gemini API), Bedrock ids with cross-region prefixes, vendor
    prefixes, version suffixes and ARNs, and Vertex `model@version` ids. Dated snapshots
    and `-latest` aliases need no rewrite, because genai-prices matches the ones it prices.
    A date is never dropped to reach another release's price.
    """
    ref = model.strip()
    yield provider_id, ref

    if ref.lower().startswith("arn:"):
        ref = ref.rsplit("/", 1)[-1]
        yield provider_id or "aws", ref

    if "/" in ref:
        prefix, rest = ref.split("/", 1)
        known, prefix_provider = table_provider_id(prefix)
        if provider_id is None and known and prefix_provider is not None:
            yield from model_candidates(prefix_provider, rest)
        elif provider_id != "openrouter" or (known and prefix_provider == "openrouter"):
            # OpenRouter's own ids contain a slash ("anthropic/claude-sonnet-4.5"), so only
            # an "openrouter/" prefix is dropped from them.
            yield from model_candidates(provider_id, rest)
        return

    bare = _BEDROCK_REGION.sub("", ref, count=1)
    if _BEDROCK_VENDOR.match(bare):
        if provider_id is None:
            yield "aws", ref
        unversioned = _BEDROCK_VERSION.sub("", bare)
        if provider_id in (None, "aws"):
            yield provider_id, bare
            yield provider_id, unversioned
        yield provider_id, _BEDROCK_VENDOR.sub("", unversioned, count=1)
        return

    if "@" in ref:
        name, _, snapshot = ref.partition("@")
        yield provider_id, f"{name}-{snapshot}"
        yield provider_id, name


@dataclass(frozen=True, slots=True)
class Period:
    """A span of time over which one of a model's prices applies."""

    starts: float
    """POSIX time at which the period starts; `-inf` for the first."""
    ends: float
    """POSIX time at which the next period starts; `inf` for the last."""
    plan: RatePlan | None
    """`None` when the prices of this period cannot be used."""
    index: int
    """Position, in the model's list of prices, of the price that applies in this period."""


class TableModel:
    """A genai-prices model with its price periods, and the rate plan of the period last used.

    Thread-safe, because the current period is one immutable object, replaced in one
    assignment. Two threads that change periods at the same moment both build a correct one.
    """

    __slots__ = (
        "_current",
        "_plans",
        "_prices",
        "_variant_plans",
        "_variants",
        "billed_usage",
        "model",
        "model_id",
        "provider_id",
    )

    def __init__(
        self, provider: Provider, model: ModelInfo, snapshot: DataSnapshot | None = None
    ) -> None:
        self.model = model
        self.model_id = model.id
        self.provider_id = _owner_id(provider, model, snapshot)
        # genai-prices applies price variants only when the provider looked up lists the
        # model itself, not when it serves another provider's model (ModelInfo.calc_price).
        owns = any(candidate is model for candidate in provider.models)
        self._variants: tuple[PriceVariant, ...] = tuple(model.price_variants or ()) if owns else ()
        self._variant_plans: dict[tuple[int, tuple[int, ...]], RatePlan | None] = {}
        self.billed_usage: Callable[[Usage], Usage] | None = None
        """Turns reported usage into billed usage, for models with a minimum charge."""
        if provider.id == "groq" and model.id in _GROQ_MINIMUM_10_SECONDS:
            self.billed_usage = _bill_at_least_10_seconds
        if isinstance(model.prices, ModelPrice):
            self._prices = [ConditionalPrice(prices=model.prices)]
        else:
            self._prices = list(model.prices)
        self._plans: dict[int, RatePlan | None] = {}
        self._current = Period(math.inf, -math.inf, None, -1)

    def plan_at(self, timestamp: float) -> RatePlan | None:
        """Return the rate plan in effect at POSIX time `timestamp`, or `None` if unusable."""
        current = self._current
        if current.starts <= timestamp < current.ends:
            return current.plan

        period = self.period_at(timestamp)
        self._current = period
        return period.plan

    def period_at(self, timestamp: float) -> Period:
        """Return the price period that contains POSIX time `timestamp`."""
        index = self._active_index(_utc_datetime(timestamp))
        if index not in self._plans:
            self._plans[index] = self._build_plan(index)

        # The active price can only change where some constraint turns on or off, so the
        # period runs between the nearest such instants around `timestamp`.
        starts, ends = -math.inf, math.inf
        for change in self._changes_around(timestamp):
            if change <= timestamp:
                starts = max(starts, change)
            else:
                ends = min(ends, change)
        return Period(starts, ends, self._plans[index], index)

    def plan_in_context(
        self, timestamp: float, context: Mapping[str, str]
    ) -> tuple[RatePlan | None, frozenset[str]]:
        """Return the rate plan for a round billed in `context`, and the context keys priced.

        `context` contains genai-prices price-variant keys (`processing`, `service_tier`...).
        Each variant that is in effect at `timestamp` and whose conditions are all met replaces
        the standard prices it lists. When several variants list one price, the first in the
        table wins, as in genai-prices' `ModelInfo.get_prices`.

        Returns:
            `(plan, keys)`. `keys` are the context keys of the variants applied; empty when
            none applied and the plan is the standard one.
        """
        if not self._variants:
            return self.plan_at(timestamp), frozenset()

        moment = _utc_datetime(timestamp)
        matched = tuple(
            position
            for position, variant in enumerate(self._variants)
            if (variant.constraint is None or variant.constraint.active(moment))
            and all(context.get(key) == value for key, value in variant.when.items())
        )
        if not matched:
            return self.plan_at(timestamp), frozenset()

        index = self._active_index(moment)
        key = (index, matched)
        if key not in self._variant_plans:
            self._variant_plans[key] = self._build_variant_plan(index, matched)
        keys = frozenset(name for position in matched for name in self._variants[position].when)
        return self._variant_plans[key], keys

    def variants(self) -> tuple[PriceVariant, ...]:
        """Return the genai-prices price variants that apply to this model."""
        return self._variants

    def _build_variant_plan(self, index: int, matched: tuple[int, ...]) -> RatePlan | None:
        overrides: dict[str, Any] = {}
        for position in matched:
            for price_key, price in self._variants[position].prices.__dict__.items():
                if not price_key.startswith("_") and price is not None:
                    overrides.setdefault(price_key, price)
        return self._plan_from(self._prices[index].prices.__dict__ | overrides)

    def _active_index(self, moment: datetime) -> int:
        # genai-prices takes the last price whose constraint holds, and the first when none does.
        for index in range(len(self._prices) - 1, -1, -1):
            constraint = self._prices[index].constraint
            if constraint is None or constraint.active(moment):
                return index
        return 0

    def _changes_around(self, timestamp: float) -> Iterator[float]:
        day = math.floor(timestamp / 86400) * 86400
        for conditional in self._prices:
            constraint = conditional.constraint
            if isinstance(constraint, StartDateConstraint):
                yield _midnight_utc(constraint.start_date)
            elif isinstance(constraint, TimeOfDateConstraint):
                for moment in (constraint.start_time, constraint.end_time):
                    offset = _seconds_into_utc_day(moment)
                    yield from (day - 86400 + offset, day + offset, day + 86400 + offset)

    def _build_plan(self, index: int) -> RatePlan | None:
        return self._plan_from(self._prices[index].prices.__dict__)

    def _plan_from(self, model_prices: Mapping[str, Any]) -> RatePlan | None:
        prices = []
        for price_key, price in model_prices.items():
            if price_key.startswith("_") or price is None:
                continue
            if not _is_price_key(price_key):
                # genai-prices skips price keys it has no unit for, with a warning.
                logger.debug(
                    "genai-prices price key %r of model %r is not a known unit; ignored",
                    price_key,
                    self.model_id,
                )
                continue
            prices.append((price_key, price))

        try:
            return RatePlan(prices)
        except ValueError as error:
            logger.warning(
                "genai-prices' prices for model %r (provider %r) are inconsistent, so its "
                "cost is recorded as unknown: %s",
                self.model_id,
                self.provider_id,
                error,
            )
            return None


def find_table_model(
    provider_id: str | None, model: str, snapshot: DataSnapshot | None = None
) -> TableModel | None:
    """Find `model` in genai-prices' table, trying the rewrites of `model_candidates`.

    Args:
        provider_id: genai-prices' provider id, or `None` to let genai-prices guess the
            provider from the model id.
        model: The model id as the user wrote it.
        snapshot: The price table to look in; the current one by default.
    """
    snapshot = snapshot or data_snapshot.get_snapshot()
    tried: set[tuple[str | None, str]] = set()

    for candidate in model_candidates(provider_id, model):
        key = (candidate[0], candidate[1].lower())
        if key in tried or not key[1]:
            continue
        tried.add(key)

        try:
            provider, found = snapshot.find_provider_model(key[1], None, key[0], None)
        except LookupError:
            continue
        return TableModel(provider, found, snapshot)
    return None


# Groq bills each transcription request for at least 10 seconds of audio; genai-prices 0.2.3
# applies the minimum in code (ModelInfo.calc_price), not in its table.
_GROQ_MINIMUM_10_SECONDS = frozenset({"whisper-large-v3", "whisper-large-v3-turbo"})


def _bill_at_least_10_seconds(usage: Usage) -> Usage:
    details = usage.details
    reported = details.get("audio_seconds") or details.get("input_audio_seconds")
    if reported is None:
        return usage
    billed = max(reported, 10) if reported > 0 else 0
    return Usage(
        usage.input_tokens,
        usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        details={**details, "audio_seconds": billed, "input_audio_seconds": billed},
    )


def _is_price_key(price_key: str) -> bool:
    try:
        REGISTRY.unit_for_price_key(price_key)
    except KeyError:
        return False
    return True


def _owner_id(provider: Provider, model: ModelInfo, snapshot: DataSnapshot | None) -> str:
    # A provider may serve another provider's models (Google serves Anthropic's). The owner
    # of the price is the provider whose list contains the model.
    if any(candidate is model for candidate in provider.models):
        return provider.id
    snapshot = snapshot or data_snapshot.get_snapshot()
    for candidate_provider in snapshot.providers:
        if any(candidate is model for candidate in candidate_provider.models):
            return candidate_provider.id
    return provider.id


def _utc_datetime(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def _midnight_utc(day: date) -> float:
    return datetime.combine(day, time(0), UTC).timestamp()


def _seconds_into_utc_day(moment: time) -> float:
    if moment.tzinfo is not None:
        moment = datetime.combine(date(1970, 1, 1), moment).astimezone(UTC).time()
    delta = timedelta(
        hours=moment.hour,
        minutes=moment.minute,
        seconds=moment.second,
        microseconds=moment.microsecond,
    )
    return delta.total_seconds()
