"""Opt-in background price updates, and one snapshot of the prices per turn. No network."""

from __future__ import annotations

import copy
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC
from decimal import Decimal

import pytest
from genai_prices import UpdatePrices, data_snapshot, wait_prices_updated_sync
from genai_prices import __version__ as GENAI_PRICES_VERSION
from genai_prices.data_snapshot import DataSnapshot
from genai_prices.types import ModelPrice

from tokenmeter import Usage
from tokenmeter.pricing import (
    PRICES_UPDATE_ENV,
    _updates,
    current_prices,
    estimate_cost,
    set_price_overrides,
)

ROUND = Usage(1_000_000, 0)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail any real download, and stop updates after each test."""

    def fail_download(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a test tried to download prices: {args!r}")

    monkeypatch.setattr("genai_prices.update_prices.httpx2.get", fail_download)
    monkeypatch.delenv(PRICES_UPDATE_ENV, raising=False)
    _updates._reset()
    yield
    _updates._reset()
    data_snapshot.set_custom_snapshot(None)


def snapshot_with_gpt_4o_input(price: str) -> DataSnapshot:
    """A copy of the bundled table where gpt-4o costs `price` per million prompt tokens."""
    providers = copy.deepcopy(data_snapshot.get_snapshot().providers)
    openai = next(provider for provider in providers if provider.id == "openai")
    model = next(model for model in openai.models if model.id == "gpt-4o")
    model.prices = ModelPrice(input_mtok=Decimal(price), output_mtok=Decimal(10))
    return DataSnapshot(providers, from_auto_update=True)


def record_starts(monkeypatch: pytest.MonkeyPatch) -> list[UpdatePrices]:
    started: list[UpdatePrices] = []
    monkeypatch.setattr(UpdatePrices, "start", lambda self, *, wait=False: started.append(self))
    return started


def test_no_update_without_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    started = record_starts(monkeypatch)

    estimate_cost(ROUND, "gpt-4o", "openai")

    assert started == []
    assert not _updates.price_updates_running()


@pytest.mark.parametrize("value", ["0", "false", "off", ""])
def test_no_update_when_variable_off(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(PRICES_UPDATE_ENV, value)
    started = record_starts(monkeypatch)

    estimate_cost(ROUND, "gpt-4o", "openai")

    assert started == []


def test_invalid_variable_logs_and_stays_off(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(PRICES_UPDATE_ENV, "hourly")
    started = record_starts(monkeypatch)

    with caplog.at_level(logging.ERROR, logger="tokenmeter.pricing"):
        estimate_cost(ROUND, "gpt-4o", "openai")

    assert started == []
    assert f"{PRICES_UPDATE_ENV}='hourly' is invalid" in caplog.text


def test_variable_starts_updater_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PRICES_UPDATE_ENV, "1")
    started = record_starts(monkeypatch)

    estimate_cost(ROUND, "gpt-4o", "openai")
    set_price_overrides(None)
    estimate_cost(ROUND, "gpt-4o", "openai")

    assert len(started) == 1
    assert _updates.price_updates_running()


def test_import_starts_no_thread() -> None:
    # A new interpreter, with downloads made to fail before tokenmeter is imported.
    script = (
        "import threading\n"
        "import genai_prices.update_prices as updates\n"
        "def fail_download(*args, **kwargs):\n"
        "    raise SystemExit('download attempted')\n"
        "updates.httpx2.get = fail_download\n"
        "import tokenmeter, tokenmeter.pricing\n"
        "print(sorted(thread.name for thread in threading.enumerate()))\n"
    )
    env = {**os.environ, PRICES_UPDATE_ENV: "1"}

    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['MainThread']"


def test_first_lookup_starts_updater(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PRICES_UPDATE_ENV, "1")
    started = record_starts(monkeypatch)

    current_prices()

    assert len(started) == 1
    _updates._reset()
    assert not _updates.price_updates_running()


def test_fetched_prices_used_with_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PRICES_UPDATE_ENV, "true")
    fetched = snapshot_with_gpt_4o_input("7")
    monkeypatch.setattr(UpdatePrices, "fetch", lambda self: fetched)
    before = estimate_cost(ROUND, "gpt-4o", "openai")

    assert wait_prices_updated_sync(timeout=30)
    after = estimate_cost(ROUND, "gpt-4o", "openai")

    assert before is not None
    assert before.total_usd == Decimal("2.5")
    assert after is not None
    assert after.total_usd == Decimal(7)
    stamp = fetched.timestamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert after.source == f"genai-prices {GENAI_PRICES_VERSION}, prices updated {stamp}"


def test_snapshot_keeps_prices_of_its_turn() -> None:
    prices = current_prices()
    data_snapshot.set_custom_snapshot(snapshot_with_gpt_4o_input("7"))

    in_turn = prices.estimate(ROUND, "gpt-4o", "openai", 1_790_000_000.0)
    next_turn = current_prices().estimate(ROUND, "gpt-4o", "openai", 1_790_000_000.0)

    assert in_turn is not None
    assert in_turn.total_usd == Decimal("2.5")
    assert next_turn is not None
    assert next_turn.total_usd == Decimal(7)
    assert "prices updated" in next_turn.source
    assert "prices updated" not in in_turn.source


def test_snapshot_keeps_overrides_of_its_turn() -> None:
    prices = current_prices()
    set_price_overrides({"models": {"gpt-4o": {"input": 1, "output": 1}}})

    in_turn = prices.estimate(ROUND, "gpt-4o", "openai", 1_790_000_000.0)
    next_turn = current_prices().estimate(ROUND, "gpt-4o", "openai", 1_790_000_000.0)

    assert in_turn is not None
    assert in_turn.total_usd == Decimal("2.5")
    assert next_turn is not None
    assert next_turn.total_usd == Decimal(1)
