"""`NullSink`: accepts every batch and stores nothing, for `TOKENMETER_SINK=none`."""

from __future__ import annotations

from collections.abc import Sequence

from tokenmeter.records import UsageRecord

__all__ = ["NullSink"]


class NullSink:
    """Discard every record."""

    url = "none"

    def __repr__(self) -> str:
        return "NullSink(url='none')"

    async def write(self, records: Sequence[UsageRecord]) -> None:
        """Discard the batch."""

    async def aclose(self) -> None:
        """Do nothing; there is nothing to release."""
