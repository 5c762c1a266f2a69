"""The `Sink` protocol: what tokenmeter's delivery thread calls to store a batch of records."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from tokenmeter.records import UsageRecord

__all__ = ["Sink"]


@runtime_checkable
class Sink(Protocol):
    """Anything that stores usage records.

    Both methods are awaited on tokenmeter's delivery thread, in its own event loop, never on
    the caller's. `write` gets whole batches; raising from it means the whole batch failed,
    and the delivery thread retries it with backoff and then spools it. A sink may therefore
    see a record more than once, and should store it once (SQL sinks dedupe by `record.id`).
    """

    async def write(self, records: Sequence[UsageRecord]) -> None:
        """Store every record of the batch, or raise."""
        ...

    async def aclose(self) -> None:
        """Release files, connections and pools. Called once, at shutdown."""
        ...
