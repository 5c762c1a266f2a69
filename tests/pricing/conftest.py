"""Fixtures for the pricing tests: a fresh pricing state per test, without a price file."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from genai_prices import data_snapshot

from tokenmeter.pricing import _estimate


@pytest.fixture(autouse=True)
def _fresh_pricing(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Start each test with no overrides, no cache and no warnings given, as a new process."""
    monkeypatch.delenv("TOKENMETER_PRICES", raising=False)
    _estimate._reset()
    yield
    data_snapshot.set_custom_snapshot(None)
    _estimate._reset()
