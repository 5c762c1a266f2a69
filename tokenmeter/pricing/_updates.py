"""Opt-in price updates: genai-prices' `UpdatePrices` in the background, when the user asks for it.

tokenmeter prices from the table bundled with genai-prices and opens no network connection
unless asked to. With `TOKENMETER_PRICES_UPDATE=1`, the first price lookup starts genai-prices'
background updater, which downloads the latest table (from genai-prices' GitHub repository)
once an hour and installs it as a new snapshot. Each turn is priced from one snapshot, taken
when its pricing starts, so an update never lands between two rounds of a turn.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Final

from genai_prices import UpdatePrices

__all__ = [
    "PRICES_UPDATE_ENV",
    "price_updates_running",
    "start_price_updates",
    "start_price_updates_if_enabled",
    "stop_price_updates",
]

logger = logging.getLogger("tokenmeter.pricing")

PRICES_UPDATE_ENV: Final = "TOKENMETER_PRICES_UPDATE"
"""Environment variable that turns background price updates on (`1`, `true`, `yes`, `on`)."""

_ON = frozenset({"1", "true", "yes", "on"})
_OFF = frozenset({"", "0", "false", "no", "off"})

_lock = threading.Lock()
_checked = False
_updater: UpdatePrices | None = None


def start_price_updates_if_enabled() -> bool:
    """Start background price updates once per process if `TOKENMETER_PRICES_UPDATE` is on.

    Reads the variable on the first call only. An invalid value is logged as an error and
    leaves updates off, because pricing runs on behalf of metered calls, which must not fail.

    Returns:
        Whether updates are running.
    """
    global _checked
    if _checked:
        return _updater is not None

    with _lock:
        if _checked:
            return _updater is not None
        _checked = True
        raw = os.environ.get(PRICES_UPDATE_ENV, "")
        value = raw.strip().lower()
        if value in _OFF:
            return False
        if value not in _ON:
            logger.error(
                "%s=%r is invalid: expected 1, true, yes or on to update prices in the "
                "background, or 0, false, no, off or unset for the bundled prices only; "
                "updates stay off",
                PRICES_UPDATE_ENV,
                raw,
            )
            return False
        _start_locked()
        return True


def start_price_updates() -> None:
    """Start genai-prices' background updater now, whatever `TOKENMETER_PRICES_UPDATE` is.

    The updater's thread fetches the table at once and then every hour. A failed fetch is
    logged by genai-prices on its `genai-prices` logger, and the prices in use stay.
    """
    global _checked
    with _lock:
        _checked = True
        if _updater is None:
            _start_locked()


def _start_locked() -> None:
    global _updater
    updater = UpdatePrices()
    updater.start(wait=False)
    _updater = updater
    logger.info(
        "background price updates started: genai-prices fetches the latest prices every "
        "%.0f s from %s",
        updater.update_interval,
        updater.url,
    )


def stop_price_updates() -> None:
    """Stop the updater this module started, if any. Prices already fetched stay in use."""
    global _updater
    with _lock:
        updater, _updater = _updater, None
    if updater is not None:
        updater.stop()  # type: ignore[no-untyped-call]
        logger.info("background price updates stopped")


def price_updates_running() -> bool:
    """Tell whether this module started background price updates that are still on."""
    return _updater is not None


def _reset() -> None:
    """Stop updates and forget that the environment was read, as in a new process. For tests."""
    global _checked
    stop_price_updates()
    with _lock:
        _checked = False
