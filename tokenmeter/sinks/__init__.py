"""Sinks store usage records: the `Sink` protocol, the built-in sinks and `open_sink(url)`."""

from __future__ import annotations

import importlib
import os
from typing import Any, cast

from tokenmeter.sinks.base import Sink
from tokenmeter.sinks.jsonl import JsonlSink
from tokenmeter.sinks.null import NullSink
from tokenmeter.sinks.sqlite import SqliteSink
from tokenmeter.sinks.stdout import StdoutSink
from tokenmeter.sinks.urls import (
    ACCEPTED_FORMS,
    is_jsonl_url,
    mask_url,
    parse_table_options,
    sink_scheme,
)

__all__ = [
    "ACCEPTED_FORMS",
    "JsonlSink",
    "NullSink",
    "Sink",
    "SqliteSink",
    "StdoutSink",
    "mask_url",
    "open_sink",
]

_POSTGRES_EXTRA = "pip install 'tokenmeter[postgres]'"


def open_sink(url: str | os.PathLike[str], *, check: bool = False) -> Sink:
    """Open the sink that a URL names. Files and connections open on the first write.

    Accepted forms:

    - `jsonl:PATH`, `jsonl:PATH?fsync=true`, a bare path ending in `.jsonl`, and `jsonl`
      alone for `./tokenmeter.jsonl`.
    - `sqlite:///RELATIVE/PATH` and `sqlite:////ABSOLUTE/PATH`.
    - `postgresql://...` or `postgres://...`.
    - `stdout` (a readable line per record), `stdout:json`, and `none`, which discards
      records.

    SQL URLs take `table` and `schema` query parameters. Surrounding whitespace is ignored.

    Args:
        url: The sink URL, or a path to a `.jsonl` file.
        check: Also run the sink's cheap `check()`, which raises `OSError` when a JSONL or
            SQLite file obviously cannot be written (a parent path is a file, a directory is
            not writable). It does no network I/O and creates nothing.

    Raises:
        ValueError: if the URL has an unknown form, or an invalid parameter such as a `table`
            that is not an SQL identifier. The message masks credentials.
        ImportError: for a PostgreSQL URL when asyncpg is not installed; the message names
            `pip install 'tokenmeter[postgres]'`.
        OSError: with `check=True`, if the sink's `check()` fails.
    """
    sink = _open(os.fspath(url).strip())
    if check:
        checker = getattr(sink, "check", None)
        if callable(checker):
            checker()
    return sink


def _open(url: str) -> Sink:
    lowered = url.lower()
    if lowered == "none":
        return NullSink()
    if lowered in ("stdout", "stdout:text"):
        return StdoutSink("text")
    if lowered == "stdout:json":
        return StdoutSink("json")

    scheme = sink_scheme(url)
    if is_jsonl_url(url):
        return JsonlSink.from_url(url)
    if scheme == "sqlite":
        return SqliteSink.from_url(url)
    if scheme in ("postgresql", "postgres"):
        return _open_postgres(url)

    raise ValueError(
        f"unsupported sink URL {mask_url(url)!r}; expected one of: {', '.join(ACCEPTED_FORMS)}"
    )


def _open_postgres(url: str) -> Sink:
    # Validated here too, so that a bad table name is reported even without asyncpg.
    parse_table_options(url)

    postgres_sink = _import_postgres_sink(f"the PostgreSQL sink for {mask_url(url)!r}")
    factory = getattr(postgres_sink, "from_url", postgres_sink)
    return cast(Sink, factory(url))


def _import_postgres_sink(what: str) -> Any:
    try:
        module = importlib.import_module("tokenmeter.sinks.postgres")
    except ModuleNotFoundError as exc:
        if exc.name not in ("asyncpg", "tokenmeter.sinks.postgres"):
            raise
        raise ImportError(f"{what} needs asyncpg: {_POSTGRES_EXTRA}") from exc
    return module.PostgresSink


def __getattr__(name: str) -> Any:
    # PostgresSink is imported on first use, so that `import tokenmeter` never needs asyncpg.
    if name == "PostgresSink":
        return _import_postgres_sink("PostgresSink")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
