"""Read normalized token usage out of provider responses, usage objects and streams.

`read_response` is the strict reader: it raises on objects it cannot read. `StreamReader`
reads a live stream event by event. `extract_usage`
and `extract_stream_usage` are the lenient public readers: they log and return `None`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from tokenmeter.extract import _base
from tokenmeter.extract._base import MalformedUsage, Reading, UnrecognizedResponse
from tokenmeter.extract._dispatch import read
from tokenmeter.extract.providers import PROVIDER_IDS, canonical_provider, provider_from_model
from tokenmeter.extract.streams import StreamReader
from tokenmeter.usage import Usage

__all__ = [
    "PROVIDER_IDS",
    "MalformedUsage",
    "Reading",
    "StreamReader",
    "UnrecognizedResponse",
    "canonical_provider",
    "extract_stream_usage",
    "extract_usage",
    "provider_from_model",
    "read_response",
    "stream_reader",
]

logger = logging.getLogger("tokenmeter.extract")

_warned: set[object] = set()
_MAX_WARNED = 512


def read_response(obj: object, provider: str | None = None) -> Reading:
    """Read the usage, model and provider of one provider response.

    Args:
        obj: A raw response (SDK object or parsed JSON dict), a provider usage object or dict
            alone (`{"prompt_tokens": ...}`, `anthropic.types.Usage`), or a `tokenmeter.Usage`,
            which is returned as is.
        provider: A provider id or alias. It decides between meanings that the shape alone
            leaves open, such as xAI counting reasoning outside `completion_tokens`. When
            `None`, the provider is detected from the shape, the model name and the fields
            that only one provider sends.

    Returns:
        A `Reading` whose `usage` is `None` when the object reports no billed usage: an error
        body, `usage: null`, or a token-count result.

    Raises:
        ValueError: if `provider` is no known provider id or alias.
        UnrecognizedResponse: if `obj` matches no supported shape.
        MalformedUsage: if a usage count is negative or not an integer.
    """
    if type(obj) is Usage:
        return Reading(obj, None, None if provider is None else canonical_provider(provider))
    return read(obj, None if provider is None else canonical_provider(provider))


def extract_usage(obj: object, provider: str | None = None) -> Usage | None:
    """Return the normalized usage of one provider response, or `None` when unknown.

    Accepts what `read_response` accepts. Never raises on the object: when it matches no
    supported shape or carries a malformed count, one WARNING per kind of object is logged on
    the `tokenmeter.extract` logger and `None` is returned. Any other error while reading is
    logged the same way at ERROR level.

    Raises:
        ValueError: if `provider` is no known provider id or alias.
    """
    canonical = None if provider is None else canonical_provider(provider)
    try:
        return read(obj, canonical).usage
    except (UnrecognizedResponse, MalformedUsage) as exc:
        _warn_once(obj, exc)
        return None
    except Exception as exc:
        # A reader bug or an object whose attributes raise: still no exception for the caller.
        _warn_once(obj, exc, logging.ERROR)
        return None


def extract_stream_usage(events: Iterable[object], provider: str | None = None) -> Usage | None:
    """Return the usage of a finished stream from its events or chunks, or `None` if it had none.

    `events` are the SSE events or SDK chunk objects in order, for example a list of parsed
    JSON events. Never raises on the events: problems are logged as by `extract_usage`.

    Raises:
        ValueError: if `provider` is no known provider id or alias.
    """
    reader = stream_reader(provider)
    if isinstance(events, Mapping | str | bytes) or not isinstance(events, Iterable):
        # A single object is not a stream; read it as a one-event stream.
        events = (events,)
    for event in events:
        reader.feed(event)
    try:
        usage = reader.finish().usage
    except MalformedUsage as exc:
        _warn_once(events, exc)
        return None
    except Exception as exc:
        _warn_once(events, exc, logging.ERROR)
        return None
    if usage is None and reader.problem is not None:
        _warn_once(events, reader.problem)
    return usage


def stream_reader(provider: str | None = None) -> StreamReader:
    """Return a `StreamReader` for one stream; `provider=None` detects it from the events.

    Raises:
        ValueError: if `provider` is no known provider id or alias.
    """
    return StreamReader(None if provider is None else canonical_provider(provider))


def _reset_log_state() -> None:
    """Forget which warnings were logged, so the next occurrence logs again (for tests)."""
    _warned.clear()
    _base.contradictions_logged.clear()


def _warn_once(obj: object, exc: Exception, level: int = logging.WARNING) -> None:
    """Log `exc` once per object type (and per key set for dicts)."""
    key: object
    if isinstance(obj, Mapping):
        key = (type(obj), type(exc), tuple(sorted(str(name) for name in obj)[:20]))
    else:
        key = (type(obj), type(exc))
    if key in _warned or len(_warned) >= _MAX_WARNED:
        return
    _warned.add(key)
    logger.log(
        level,
        "no usage recorded for a %s: %s (later objects of this kind are not logged)",
        type(obj).__qualname__,
        exc,
        exc_info=exc if level >= logging.ERROR else None,
    )
