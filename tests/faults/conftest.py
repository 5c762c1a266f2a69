"""Fixtures of the fault-injection suite: a spool directory and a numbering caller per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.fault_support import Caller


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def caller() -> Caller:
    return Caller()
