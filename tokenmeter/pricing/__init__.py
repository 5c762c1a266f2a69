"""Price token usage one round at a time: genai-prices rates, cached, with user overrides first.

`estimate_cost` looks each (provider, model) pair up once, in the overrides and then in
genai-prices' table, caches the rates of each price period, and prices later rounds from the
cache in `Decimal`. The result equals genai-prices' `calc_price` to the last digit, except
for batch rounds that fall back on a provider's published batch discount.
"""

from tokenmeter.pricing._describe import describe_prices
from tokenmeter.pricing._estimate import (
    PRICES_ENV,
    PUBLISHED_BATCH_DISCOUNTS,
    PriceSnapshot,
    PublishedDiscount,
    current_prices,
    estimate_cost,
    set_price_overrides,
)
from tokenmeter.pricing._overrides import CustomModel, PriceOverrides, load_price_overrides
from tokenmeter.pricing._table import PROVIDER_ALIASES
from tokenmeter.pricing._updates import (
    PRICES_UPDATE_ENV,
    start_price_updates,
    stop_price_updates,
)

__all__ = [
    "PRICES_ENV",
    "PRICES_UPDATE_ENV",
    "PROVIDER_ALIASES",
    "PUBLISHED_BATCH_DISCOUNTS",
    "CustomModel",
    "PriceOverrides",
    "PriceSnapshot",
    "PublishedDiscount",
    "current_prices",
    "describe_prices",
    "estimate_cost",
    "load_price_overrides",
    "set_price_overrides",
    "start_price_updates",
    "stop_price_updates",
]
