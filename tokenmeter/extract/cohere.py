"""Usage of Cohere Chat: v2 `usage` and v1 `meta`, billed from `billed_units`."""

from __future__ import annotations

from typing import Any

from tokenmeter.extract._base import add_detail, count_at, make_usage, note_contradiction, view
from tokenmeter.usage import Usage

__all__ = ["cohere_usage"]


def cohere_usage(usage: Any) -> Usage:
    """Normalize a Cohere v2 `usage` (or v1 `meta`) object or dict.

    `billed_units` is what Cohere bills; `tokens` counts everything processed, chat template
    included, and is ignored. `cached_tokens` is measured against `tokens`, so it can exceed
    the billed input: it is kept as reported.
    """
    fields = view(usage)
    billed = view(fields.get("billed_units"))
    input_tokens = count_at(billed, "input_tokens")
    output = count_at(billed, "output_tokens")
    cache_read = count_at(fields, "cached_tokens")

    details: dict[str, int] = {}
    add_detail(details, "rerank_searches", count_at(billed, "search_units"))
    add_detail(details, "classifications", count_at(billed, "classifications"))

    if cache_read > input_tokens:
        note_contradiction(
            "cohere",
            "cached exceeds billed input",
            f"cached_tokens {cache_read} > billed_units.input_tokens {input_tokens}",
        )
    return make_usage(input_tokens, output, cache_read_tokens=cache_read, details=details)
