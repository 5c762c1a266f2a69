"""Helpers for testing agents that use tokenmeter: a sink that keeps records in memory."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tokenmeter.records import UsageRecord

__all__ = ["MemorySink", "capture_records"]


class MemorySink:
    """A sink that appends every record to `records`. Not for production: it only grows."""

    def __init__(self) -> None:
        self.records: list[UsageRecord] = []
        self.batches = 0
        self.closed = False

    async def write(self, records: Sequence[UsageRecord]) -> None:
        self.records.extend(records)
        self.batches += 1

    async def aclose(self) -> None:
        self.closed = True

    def __repr__(self) -> str:
        return f"<tokenmeter.testing.MemorySink records={len(self.records)}>"


@contextmanager
def capture_records(spool_dir: str | Path | None = None, **settings: Any) -> Iterator[MemorySink]:
    """Send every record metered inside the block to a `MemorySink`, flushed at exit.

    Example:
        with capture_records() as sink:
            my_agent.run()
        assert sink.records[0].cost_usd > 0

    Reconfigures the whole process (tokenmeter's settings are global) and restores the
    environment's sinks afterwards.
    """
    import tempfile

    from tokenmeter import _api
    from tokenmeter.config import settings_from_env
    from tokenmeter.delivery import replace_engine

    sink = MemorySink()
    with tempfile.TemporaryDirectory(prefix="tokenmeter-spool-") as default_spool:
        _api.configure(sink=sink, spool_dir=spool_dir or default_spool, **settings)
        try:
            yield sink
        finally:
            _api.flush()
            replace_engine(settings_from_env())
