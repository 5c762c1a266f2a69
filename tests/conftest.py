"""Fixtures shared by the whole suite: an isolated tokenmeter engine per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import tokenmeter
from tokenmeter.config import Settings
from tokenmeter.delivery import replace_engine
from tokenmeter.testing import MemorySink


@pytest.fixture(autouse=True)
def _isolated_engine(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Give each test its own spool directory and a default sink that writes nowhere useful."""
    spool = tmp_path_factory.mktemp("spool")
    monkeypatch.setenv("TOKENMETER_SPOOL_DIR", str(spool))
    monkeypatch.setenv("TOKENMETER_SINK", "none")
    replace_engine(Settings(sink=("none",), spool_dir=spool))
    yield
    tokenmeter.shutdown(timeout=5)


@pytest.fixture
def memory_sink(tmp_path: Path) -> MemorySink:
    """A `MemorySink` configured as the only sink, with fast retries."""
    sink = MemorySink()
    tokenmeter.configure(
        sink=sink,
        spool_dir=tmp_path / "spool",
        retry_initial_s=0.001,
        retry_max_s=0.01,
        flush_interval_s=0.05,
    )
    return sink


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)
