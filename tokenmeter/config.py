"""Settings of the delivery engine, read from `TOKENMETER_*` environment variables."""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import platformdirs

__all__ = ["DEFAULT_SINK", "Settings", "settings_from_env"]

logger = logging.getLogger("tokenmeter")

DEFAULT_SINK = "jsonl:./tokenmeter.jsonl"

N = TypeVar("N", int, float)


def _default_spool_dir() -> Path:
    return Path(platformdirs.user_state_dir("tokenmeter", appauthor=False)) / "spool"


@dataclass(frozen=True)
class Settings:
    """Delivery settings: batching, retries, spooling and flushing.

    Every field has an environment variable, named in its comment, and a `configure()`
    keyword of the same name.
    """

    sink: tuple[Any, ...] = (DEFAULT_SINK,)
    """Sink URLs and `Sink` objects; records fan out to each. `TOKENMETER_SINK`."""
    sink_from_env: bool = True
    """Whether `sink` came from `TOKENMETER_SINK` (checked late, with a fallback to the
    default sink) rather than from `configure()` (checked there, raising)."""
    batch_size: int = 200
    """Records per sink write. `TOKENMETER_BATCH_SIZE`."""
    flush_interval_s: float = 1.0
    """Maximum time a record waits for its batch to fill. `TOKENMETER_FLUSH_INTERVAL`."""
    flush_timeout_s: float = 5.0
    """Maximum wait for delivery at exit before spooling. `TOKENMETER_FLUSH_TIMEOUT`."""
    max_queue: int = 100_000
    """Records held in memory per sink before the oldest go to the spool. `TOKENMETER_MAX_QUEUE`."""
    max_queue_bytes: int = 256 * 1024 * 1024
    """Estimated bytes of records held in memory per sink before the oldest go to the spool.
    `TOKENMETER_MAX_QUEUE_BYTES`."""
    retry_attempts: int = 5
    """Write attempts per batch before it is spooled. `TOKENMETER_RETRY_ATTEMPTS`."""
    retry_initial_s: float = 0.2
    """First backoff between attempts; it doubles, with jitter. `TOKENMETER_RETRY_INITIAL`."""
    retry_max_s: float = 10.0
    """Maximum backoff between attempts. `TOKENMETER_RETRY_MAX`."""
    write_timeout_s: float = 30.0
    """Maximum time one write attempt may take before it fails. `TOKENMETER_WRITE_TIMEOUT`."""
    spool_dir: Path = field(default_factory=_default_spool_dir)
    """Directory where undeliverable batches wait for replay. `TOKENMETER_SPOOL_DIR`."""
    enabled: bool = True
    """`TOKENMETER_DISABLED=1` turns metering off: no records, no thread."""

    def with_changes(self, **changes: Any) -> Settings:
        return replace(self, **changes)


def _parse_number(
    env: Mapping[str, str],
    name: str,
    kind: Callable[[str], N],
    default: N,
    minimum: N,
) -> N:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = kind(raw.strip())
    except ValueError:
        value = None
    if value is None or value < minimum or not math.isfinite(value):
        logger.error(
            "%s=%r is invalid: expected a %s of at least %s; using the default %s",
            name,
            raw,
            "whole number" if kind is int else "number",
            minimum,
            default,
        )
        return default
    return value


_SINK_START = re.compile(
    r"^\s*(?:jsonl:|sqlite:|stdout(?::|\s*$)|none\s*$|[A-Za-z][A-Za-z0-9+.\-]*://|[^,]*\.jsonl\s*$)",
    re.IGNORECASE,
)


def split_sink_urls(raw: str) -> tuple[str, ...]:
    """Split a comma-separated `TOKENMETER_SINK` value into URLs, dropping blanks.

    A comma only separates sinks when the text after it starts a sink URL (`jsonl:`,
    `sqlite:`, `stdout`, `none`, any `scheme://`, or a `.jsonl` path). Other commas stay in
    the URL, so a password or a multi-host PostgreSQL URL may contain one.
    """
    parts: list[str] = []
    for piece in raw.split(","):
        if not piece.strip():
            continue
        if parts and not _SINK_START.match(piece):
            parts[-1] = f"{parts[-1]},{piece}"
        else:
            parts.append(piece)
    return tuple(part.strip() for part in parts if part.strip())


def settings_from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Read settings from `env` (default: `os.environ`), logging each invalid value once.

    Invalid values never raise: the variable, the value and the accepted form are logged on
    the `tokenmeter` logger and the default is used, so a typo cannot stop an agent. Sink URLs
    are only split here; they are checked when the delivery engine opens them.
    """
    env = os.environ if env is None else env
    defaults = Settings()

    sink_raw = env.get("TOKENMETER_SINK", "")
    sinks = split_sink_urls(sink_raw) or defaults.sink

    spool_raw = env.get("TOKENMETER_SPOOL_DIR", "").strip()
    spool_dir = Path(spool_raw).expanduser() if spool_raw else defaults.spool_dir

    disabled = env.get("TOKENMETER_DISABLED", "").strip().lower() in {"1", "true", "yes", "on"}

    return Settings(
        sink=sinks,
        batch_size=_parse_number(env, "TOKENMETER_BATCH_SIZE", int, defaults.batch_size, 1),
        flush_interval_s=_parse_number(
            env, "TOKENMETER_FLUSH_INTERVAL", float, defaults.flush_interval_s, 0.001
        ),
        flush_timeout_s=_parse_number(
            env, "TOKENMETER_FLUSH_TIMEOUT", float, defaults.flush_timeout_s, 0.0
        ),
        max_queue=_parse_number(env, "TOKENMETER_MAX_QUEUE", int, defaults.max_queue, 1),
        max_queue_bytes=_parse_number(
            env, "TOKENMETER_MAX_QUEUE_BYTES", int, defaults.max_queue_bytes, 1
        ),
        retry_attempts=_parse_number(
            env, "TOKENMETER_RETRY_ATTEMPTS", int, defaults.retry_attempts, 1
        ),
        retry_initial_s=_parse_number(
            env, "TOKENMETER_RETRY_INITIAL", float, defaults.retry_initial_s, 0.0
        ),
        retry_max_s=_parse_number(env, "TOKENMETER_RETRY_MAX", float, defaults.retry_max_s, 0.0),
        write_timeout_s=_parse_number(
            env, "TOKENMETER_WRITE_TIMEOUT", float, defaults.write_timeout_s, 0.001
        ),
        spool_dir=spool_dir,
        enabled=not disabled,
    )
