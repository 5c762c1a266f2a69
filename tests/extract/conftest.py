"""Fixtures for the extraction tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tokenmeter.extract import _reset_log_state


@pytest.fixture(autouse=True)
def _fresh_log_state() -> Iterator[None]:
    """Make every once-only warning log again in each test."""
    _reset_log_state()
    yield
    _reset_log_state()
