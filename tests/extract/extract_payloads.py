"""The recorded provider payloads of `tests/fixtures/payloads` and their manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tokenmeter.usage import Usage

PAYLOADS = Path(__file__).parent.parent / "fixtures" / "payloads"
MANIFEST: list[dict[str, Any]] = json.loads((PAYLOADS / "MANIFEST.json").read_text())


def load(name: str) -> Any:
    """Return the parsed JSON of one payload file."""
    return json.loads((PAYLOADS / name).read_text())


def manifest_entry(name: str) -> dict[str, Any]:
    """Return the manifest entry of one payload file."""
    return next(entry for entry in MANIFEST if entry["file"] == name)


def expected_usage(entry: dict[str, Any]) -> Usage | None:
    """Return the manifest's expected usage; all zeros means no usage was reported."""
    expected = entry["expected"]
    if not any(expected.values()):
        return None
    return Usage(**expected)


def tokens_only(usage: Usage | None) -> Usage | None:
    """Drop `details`, to compare with the manifest, which lists only the five fields."""
    if usage is None:
        return None
    return Usage(
        usage.input_tokens,
        usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        reasoning_tokens=usage.reasoning_tokens,
    )


def is_stream(entry: dict[str, Any]) -> bool:
    return "stream" in entry["api"]
