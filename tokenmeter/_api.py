"""The process-wide controls: `configure()`, `flush()`, `aflush()`, `shutdown()`, `stats()`."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio.to_thread

from tokenmeter.config import Settings, split_sink_urls
from tokenmeter.delivery import DeliveryStats, get_engine, replace_engine
from tokenmeter.sinks.base import Sink

__all__ = ["aflush", "configure", "flush", "shutdown", "stats"]

logger = logging.getLogger("tokenmeter")

_ACCEPTED_SINKS = (
    "a sink URL (jsonl:PATH, sqlite:///PATH, postgresql://..., stdout, stdout:json, none), "
    "a comma-separated string of them, an object with async write(records) and aclose() "
    "methods, or a list of these"
)


def _check_sinks(sink: Any) -> tuple[Any, ...]:
    from tokenmeter.sinks import open_sink
    from tokenmeter.sinks.urls import mask_url

    if isinstance(sink, str):
        specs: list[Any] = list(split_sink_urls(sink))
    elif isinstance(sink, Sink):
        specs = [sink]
    elif isinstance(sink, Sequence):
        specs = list(sink)
    else:
        raise ValueError(f"configure(sink=...) got {sink!r}; expected {_ACCEPTED_SINKS}")
    if not specs:
        raise ValueError(f"configure(sink=...) got no sink in {sink!r}; expected {_ACCEPTED_SINKS}")

    checked: list[Any] = []
    for spec in specs:
        if isinstance(spec, str):
            try:
                # Opening is lazy: this validates the URL and checks that a file sink's
                # directory is writable, without creating anything.
                open_sink(spec, check=True)
            except (ValueError, OSError) as error:
                raise ValueError(
                    f"configure(sink=...) got an invalid sink URL {mask_url(spec)!r}: {error}"
                ) from None
            checked.append(spec.strip())
        elif isinstance(spec, Sink):
            checked.append(spec)
        else:
            raise ValueError(
                f"configure(sink=...) got {spec!r} ({type(spec).__name__}) in its list; "
                f"expected {_ACCEPTED_SINKS}"
            )
    return tuple(checked)


def _check_positive(name: str, value: Any, kind: type, *, allow_zero: bool = False) -> Any:
    valid_type = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        valid_type = isinstance(value, int) and not isinstance(value, bool)
    if not valid_type or not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = "zero or more" if allow_zero else "greater than zero"
        raise ValueError(
            f"configure({name}=...) got {value!r}; "
            f"expected {'an int' if kind is int else 'a number'} {bound}"
        )
    return value


def configure(
    sink: Any = None,
    *,
    batch_size: int | None = None,
    flush_interval_s: float | None = None,
    flush_timeout_s: float | None = None,
    max_queue: int | None = None,
    max_queue_bytes: int | None = None,
    retry_attempts: int | None = None,
    retry_initial_s: float | None = None,
    retry_max_s: float | None = None,
    write_timeout_s: float | None = None,
    spool_dir: str | os.PathLike[str] | None = None,
    enabled: bool | None = None,
    prices: str | os.PathLike[str] | Mapping[str, Any] | None = None,
) -> None:
    """Set where records go and how they are delivered, for the whole process.

    Arguments left as None keep their value from the environment (`TOKENMETER_*`). Records
    already queued are delivered to the previous sinks first, within `flush_timeout_s`.

    Args:
        sink: A sink URL (`jsonl:PATH`, `sqlite:///PATH`, `postgresql://...`, `stdout`,
            `stdout:json`, `none`), a comma-separated string of URLs, a `Sink` object, or a
            list mixing URLs and objects. Each record goes to every sink.
        batch_size: Records per sink write.
        flush_interval_s: Maximum time a record waits for its batch to fill, in seconds.
        flush_timeout_s: Maximum time `shutdown()` and interpreter exit wait for delivery.
        max_queue: Records held in memory per sink before the oldest are spooled.
        max_queue_bytes: Estimated bytes of records held in memory per sink before the
            oldest are spooled.
        retry_attempts: Write attempts per batch before it is spooled.
        retry_initial_s: First backoff between write attempts, in seconds; it doubles.
        retry_max_s: Maximum backoff between write attempts, in seconds.
        write_timeout_s: Maximum time one write attempt may take, in seconds.
        spool_dir: Directory for batches no sink could take.
        enabled: False turns metering off: decorated functions run unmetered.
        prices: A TOML file of price overrides, or the same data as a mapping.

    Raises:
        ValueError: if an argument is invalid; the message names it and the accepted forms.
    """
    changes: dict[str, Any] = {}
    if sink is not None:
        changes["sink"] = _check_sinks(sink)
        changes["sink_from_env"] = False
    for name, value, kind, allow_zero in (
        ("batch_size", batch_size, int, False),
        ("flush_interval_s", flush_interval_s, float, False),
        ("flush_timeout_s", flush_timeout_s, float, True),
        ("max_queue", max_queue, int, False),
        ("max_queue_bytes", max_queue_bytes, int, False),
        ("retry_attempts", retry_attempts, int, False),
        ("retry_initial_s", retry_initial_s, float, True),
        ("retry_max_s", retry_max_s, float, True),
        ("write_timeout_s", write_timeout_s, float, False),
    ):
        if value is not None:
            changes[name] = _check_positive(name, value, kind, allow_zero=allow_zero)
    if spool_dir is not None:
        if not isinstance(spool_dir, (str, os.PathLike)):
            raise ValueError(
                f"configure(spool_dir=...) got {spool_dir!r}; expected a path (str or PathLike)"
            )
        changes["spool_dir"] = Path(spool_dir).expanduser()
    if enabled is not None:
        if not isinstance(enabled, bool):
            raise ValueError(f"configure(enabled=...) got {enabled!r}; expected True or False")
        changes["enabled"] = enabled
    if prices is not None:
        from tokenmeter import pricing

        pricing.set_price_overrides(prices)

    base = get_engine().settings
    new_settings: Settings = base.with_changes(**changes)
    replace_engine(new_settings, timeout=base.flush_timeout_s)


def _finite_or_none(timeout: float | None) -> float | None:
    # threading.Event.wait rejects infinity; None is its way of waiting without a limit.
    if timeout is None or math.isfinite(timeout):
        return timeout
    return None


def flush(timeout: float | None = None) -> bool:
    """Block until every record metered so far is delivered or spooled.

    Returns True if that happened within `timeout` seconds (None waits as long as it takes).
    Blocks the calling thread: in async code, use `await aflush()`.
    """
    return get_engine().flush(_finite_or_none(timeout))


async def aflush(timeout: float | None = None) -> bool:  # noqa: ASYNC109 - mirrors flush()
    """Like `flush()`, awaited without blocking the event loop (asyncio or trio)."""
    engine = get_engine()
    return await anyio.to_thread.run_sync(
        engine.flush, _finite_or_none(timeout), abandon_on_cancel=True
    )


def shutdown(timeout: float | None = None) -> bool:
    """Deliver pending records within `timeout` seconds (default `TOKENMETER_FLUSH_TIMEOUT`),
    spool what is left, and close the sinks. Idempotent.

    Metering after shutdown starts delivery again. Returns True when nothing was left over.
    """
    return get_engine().shutdown(_finite_or_none(timeout))


def stats() -> DeliveryStats:
    """Counts of records produced, delivered, retried, spooled, replayed and dropped, per sink."""
    return get_engine().stats()
