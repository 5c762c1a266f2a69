"""User price overrides: custom model prices and discounts, from a TOML file or a mapping."""

from __future__ import annotations

import hashlib
import json
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from itertools import pairwise
from pathlib import Path
from typing import Any

from tokenmeter.pricing._rates import Rate, RatePlan
from tokenmeter.pricing._table import table_provider_id

__all__ = [
    "CustomModel",
    "PriceOverrides",
    "canonical_provider",
    "load_price_overrides",
]

TOKEN_PRICE_KEYS: Mapping[str, str] = {
    "input": "input_mtok",
    "cached_input": "cache_read_mtok",
    "cache_write_5m": "cache_write_mtok",
    "cache_write_1h": "cache_write_1h_mtok",
    "output": "output_mtok",
    "reasoning": "output_reasoning_mtok",
}
"""Override keys priced in USD per million tokens, and the genai-prices price key of each."""

FEE_KEYS: Mapping[str, str] = {
    "per_request": "requests_kcount",
    "per_web_search": "web_searches_kcount",
}
"""Override keys priced in USD per item, and the genai-prices price key (per thousand) of each."""

_MODEL_KEYS = (*TOKEN_PRICE_KEYS, *FEE_KEYS, "provider", "tiers")
_TIER_KEYS = ("above", *TOKEN_PRICE_KEYS)
_REQUIRES = {"cache_write_1h": "cache_write_5m", "reasoning": "output"}

_EXAMPLE = """\
[models."my-model"]
provider = "openai"      # optional: the price applies only to calls with this provider
input = 3.0              # USD per million prompt tokens not read from or written to a cache
cached_input = 0.3       # USD per million cache-read tokens
cache_write_5m = 3.75    # USD per million cache-write tokens, unless reported as 1-hour
cache_write_1h = 6.0     # USD per million 1-hour cache-write tokens
output = 15.0            # USD per million completion tokens, reasoning included
reasoning = 15.0         # USD per million reasoning tokens, if billed apart from output
per_request = 0.001      # USD per request
per_web_search = 0.01    # USD per web search
tiers = [{ above = 200000, input = 6.0, output = 22.5 }]  # over 200k prompt tokens

[discounts]
providers = { openai = 10 }     # percent off every price of the provider
models = { "gpt-4o" = 25 }      # percent off the model, instead of its provider's discount"""


@dataclass(frozen=True, slots=True)
class CustomModel:
    """The prices a user gave for one model."""

    name: str
    """The model id as written in the overrides."""
    provider: str | None
    """genai-prices' provider id (or the id as written, lower case, when genai-prices lacks
    it) that the price is limited to; `None` for every provider."""
    prices: Mapping[str, Decimal]
    """Base prices by override key (`input`, `per_request`...), in the units of that key."""
    tiers: tuple[tuple[int, Mapping[str, Decimal]], ...]
    """`(above, prices)` pairs: prices that apply when a round has more than `above` prompt
    tokens, by override key, in ascending `above`."""
    plan: RatePlan = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class PriceOverrides:
    """Validated price overrides, ready to install with `set_price_overrides`."""

    models: Mapping[str, CustomModel]
    """Custom prices by lower-case model id."""
    provider_discounts: Mapping[str, Decimal]
    """Percent off by provider id (as `CustomModel.provider` spells it)."""
    model_discounts: Mapping[str, Decimal]
    """Percent off by lower-case model id; a model's discount replaces its provider's."""
    source: str
    """Provenance for `Cost.source`: `overrides FILE sha256:HASH` or `overrides mapping
    sha256:HASH`, HASH being the first 16 hex digits of the SHA-256 of the file's bytes or of
    the mapping as JSON."""


def canonical_provider(provider: str) -> str:
    """Return genai-prices' id for `provider`, or the id in lower case if genai-prices lacks it."""
    known, provider_id = table_provider_id(provider)
    if known and provider_id is not None:
        return provider_id
    return provider.strip().lower()


def load_price_overrides(source: str | os.PathLike[str] | Mapping[str, Any]) -> PriceOverrides:
    """Read and validate price overrides from a TOML file or a mapping of the same shape.

    Args:
        source: The path of a TOML file, or a mapping with `models` and `discounts` tables
            as the file has them. Prices may be numbers or decimal strings.

    Raises:
        ValueError: if the file cannot be read or parsed, or a key or value is invalid. The
            message names the file (or the mapping), the key and the accepted form.
    """
    if isinstance(source, Mapping):
        origin = "prices mapping"
        data = source
        digest = hashlib.sha256(
            json.dumps(source, sort_keys=True, default=str).encode()
        ).hexdigest()
        provenance = f"overrides mapping sha256:{digest[:16]}"
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        origin = str(path)
        try:
            raw = path.read_bytes()
        except OSError as error:
            raise ValueError(
                f"cannot read the price overrides file {origin!r}: {error.strerror or error}"
            ) from error
        try:
            data = tomllib.loads(raw.decode("utf-8"), parse_float=Decimal)
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
            raise ValueError(
                f"{origin}: not a valid TOML file ({error}); expected a file like:\n{_EXAMPLE}"
            ) from error
        provenance = f"overrides {origin} sha256:{hashlib.sha256(raw).hexdigest()[:16]}"
    else:
        raise TypeError(
            f"price overrides must be a path to a TOML file or a mapping, got {source!r} "
            f"({type(source).__name__})"
        )

    return _Parser(origin).parse(data, provenance)


class _Parser:
    def __init__(self, origin: str) -> None:
        self.origin = origin

    def fail(self, key: str, problem: str, expected: str) -> ValueError:
        return ValueError(f"{self.origin}: {key} {problem}; expected {expected}")

    def parse(self, data: Mapping[str, Any], provenance: str) -> PriceOverrides:
        unknown = sorted(set(data) - {"models", "discounts"})
        if unknown:
            raise self.fail(
                repr(unknown[0]),
                "is an unknown table",
                f'only [models."NAME"] and [discounts] tables, as in:\n{_EXAMPLE}',
            )

        models: dict[str, CustomModel] = {}
        for name, table in self.table(data, "models").items():
            model = self.model(str(name), table)
            key = model.name.strip().lower()
            if key in models:
                raise self.fail(
                    f"models.{name!r}",
                    f"repeats the model {models[key].name!r} (ids are not case-sensitive)",
                    "one entry per model",
                )
            models[key] = model

        discounts = self.table(data, "discounts")
        unknown = sorted(set(discounts) - {"providers", "models"})
        if unknown:
            raise self.fail(
                f"discounts.{unknown[0]}",
                "is an unknown key",
                "discounts.providers and discounts.models tables of percentages",
            )
        provider_discounts = {
            canonical_provider(str(provider)): self.percent(
                f"discounts.providers.{provider}", value
            )
            for provider, value in self.table(discounts, "providers", "discounts.").items()
        }
        model_discounts = {
            str(model).strip().lower(): self.percent(f"discounts.models.{model!r}", value)
            for model, value in self.table(discounts, "models", "discounts.").items()
        }
        return PriceOverrides(models, provider_discounts, model_discounts, provenance)

    def table(self, data: Mapping[str, Any], key: str, prefix: str = "") -> Mapping[str, Any]:
        value = data.get(key, {})
        if not isinstance(value, Mapping):
            raise self.fail(f"{prefix}{key}", f"is {value!r}", "a table")
        return value

    def model(self, name: str, table: object) -> CustomModel:
        where = f"models.{name!r}"
        if not name.strip():
            raise self.fail(where, "has an empty model id", "the model id as the API names it")
        if not isinstance(table, Mapping):
            raise self.fail(where, f"is {table!r}", f"a table of prices, as in:\n{_EXAMPLE}")

        unknown = sorted(set(table) - set(_MODEL_KEYS))
        if unknown:
            raise self.fail(
                f"{where}.{unknown[0]}", "is an unknown key", f"one of {', '.join(_MODEL_KEYS)}"
            )
        for required in ("input", "output"):
            if required not in table:
                raise self.fail(
                    f"{where}.{required}",
                    "is missing",
                    "USD per million tokens for both input and output (0 is allowed)",
                )
        for key, needed in _REQUIRES.items():
            if key in table and needed not in table:
                raise self.fail(f"{where}.{key}", f"is set without {needed}", f"{needed} as well")

        provider = table.get("provider")
        if provider is not None and (not isinstance(provider, str) or not provider.strip()):
            raise self.fail(
                f"{where}.provider", f"is {provider!r}", "a provider id such as 'openai'"
            )

        prices = {
            key: self.price(f"{where}.{key}", table[key])
            for key in (*TOKEN_PRICE_KEYS, *FEE_KEYS)
            if key in table
        }
        tiers = self.tiers(where, table.get("tiers", []), prices)
        plan = RatePlan(self.rates(prices, tiers))
        return CustomModel(
            name=name,
            provider=None if provider is None else canonical_provider(provider),
            prices=prices,
            tiers=tiers,
            plan=plan,
        )

    def tiers(
        self, where: str, value: object, prices: Mapping[str, Decimal]
    ) -> tuple[tuple[int, Mapping[str, Decimal]], ...]:
        expected = "a list of tables such as [{ above = 200000, input = 6.0, output = 22.5 }]"
        if not isinstance(value, list):
            raise self.fail(f"{where}.tiers", f"is {value!r}", expected)

        tiers: list[tuple[int, Mapping[str, Decimal]]] = []
        for index, tier in enumerate(value):
            tier_where = f"{where}.tiers[{index}]"
            if not isinstance(tier, Mapping):
                raise self.fail(tier_where, f"is {tier!r}", expected)
            unknown = sorted(set(tier) - set(_TIER_KEYS))
            if unknown:
                raise self.fail(
                    f"{tier_where}.{unknown[0]}",
                    "is an unknown key",
                    f"one of {', '.join(_TIER_KEYS)}",
                )

            above = tier.get("above")
            if type(above) is not int or above < 0:
                raise self.fail(
                    f"{tier_where}.above",
                    f"is {above!r}",
                    "a whole number of prompt tokens (>= 0) above which the tier applies",
                )
            tier_prices = {}
            for key in TOKEN_PRICE_KEYS:
                if key not in tier:
                    continue
                if key not in prices:
                    raise self.fail(
                        f"{tier_where}.{key}", "has no base price", f"{where}.{key} as well"
                    )
                tier_prices[key] = self.price(f"{tier_where}.{key}", tier[key])
            if not tier_prices:
                raise self.fail(
                    tier_where, "sets no price", f"one of {', '.join(TOKEN_PRICE_KEYS)}"
                )
            tiers.append((above, tier_prices))

        tiers.sort(key=lambda pair: pair[0])
        for (first, _), (second, _) in pairwise(tiers):
            if first == second:
                raise self.fail(f"{where}.tiers", f"repeats above = {first}", "distinct thresholds")
        return tuple(tiers)

    @staticmethod
    def rates(
        prices: Mapping[str, Decimal], tiers: tuple[tuple[int, Mapping[str, Decimal]], ...]
    ) -> list[tuple[str, Rate]]:
        rates: list[tuple[str, Rate]] = []
        for key, price in prices.items():
            if key in FEE_KEYS:
                # genai-prices prices per-item fees per thousand items.
                rates.append((FEE_KEYS[key], Rate(price * 1000)))
                continue
            key_tiers = tuple((above, tier[key]) for above, tier in tiers if key in tier)
            rates.append((TOKEN_PRICE_KEYS[key], Rate(price, key_tiers)))
        return rates

    def price(self, key: str, value: object) -> Decimal:
        return self.decimal(key, value, "a price in USD: a number >= 0 or a decimal string")

    def percent(self, key: str, value: object) -> Decimal:
        number = self.decimal(key, value, "a percentage from 0 to 100")
        if number > 100:
            raise self.fail(key, f"is {value!r}", "a percentage from 0 to 100")
        return number

    def decimal(self, key: str, value: object, expected: str) -> Decimal:
        if isinstance(value, bool):
            raise self.fail(key, f"is {value!r}", expected)
        number: Decimal | None = None
        if isinstance(value, Decimal):
            number = value
        elif isinstance(value, int):
            number = Decimal(value)
        elif isinstance(value, float) and math.isfinite(value):
            # repr() gives the shortest string that reads back as this float: 0.3, not 0.2999...
            number = Decimal(repr(value))
        elif isinstance(value, str):
            try:
                number = Decimal(value.strip())
            except InvalidOperation:
                number = None
        if number is None or not number.is_finite() or number < 0:
            raise self.fail(key, f"is {value!r}", expected)
        return number
