"""Price token usage one round at a time: genai-prices rates, cached, with user overrides first.

`estimate_cost` looks each (provider, model) pair up once, in the overrides and then in
genai-prices' table, caches the rates of each price period, and prices later rounds from the
cache in `Decimal`. The result equals genai-prices' `calc_price` to the last digit.
"""

from tokenmeter.pricing._describe import describe_prices
from tokenmeter.pricing._estimate import PRICES_ENV, estimate_cost, set_price_overrides
from tokenmeter.pricing._overrides import CustomModel, PriceOverrides, load_price_overrides
from tokenmeter.pricing._table import PROVIDER_ALIASES

__all__ = [
    "PRICES_ENV",
    "PROVIDER_ALIASES",
    "CustomModel",
    "PriceOverrides",
    "describe_prices",
    "estimate_cost",
    "load_price_overrides",
    "set_price_overrides",
]
