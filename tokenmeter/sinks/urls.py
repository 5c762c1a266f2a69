"""Parse sink URLs into their parts, validate SQL identifiers, and mask credentials."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = [
    "ACCEPTED_FORMS",
    "DEFAULT_JSONL_PATH",
    "DEFAULT_TABLE",
    "JsonlTarget",
    "SqliteTarget",
    "TableOptions",
    "is_jsonl_url",
    "mask_url",
    "parse_jsonl_url",
    "parse_sqlite_url",
    "parse_table_options",
    "sink_scheme",
    "validate_identifier",
]

DEFAULT_JSONL_PATH = "tokenmeter.jsonl"
"""Default file of the JSONL sink when its URL names no path, relative to the working directory."""

DEFAULT_TABLE = "llm_usage"
"""The table SQL sinks write when the URL has no `table` parameter."""

ACCEPTED_FORMS = (
    "jsonl:PATH",
    "PATH.jsonl",
    "sqlite:///RELATIVE/PATH",
    "sqlite:////ABSOLUTE/PATH",
    "postgresql://USER:PASSWORD@HOST:PORT/DATABASE",
    "stdout",
    "stdout:json",
    "none",
)
"""Every sink URL form that `open_sink` accepts, for error messages and help text."""

_MASK = "***"

# Query parameters whose values are secrets. Over-masking a harmless value is fine, and
# leaking a password into a log is not, so the match is on substrings of the key.
# The same pattern covers libpq's `key=value` connection strings, where spaces separate pairs.
_SECRET_PARAM = re.compile(
    r"((?:^|[?&;\s])[^=&#;\s]*(?:password|passwd|pwd|secret|token|api_?key)[^=&#;\s]*\s*=\s*)"
    r"[^&#;\s]*",
    re.IGNORECASE,
)
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")

# 63 is PostgreSQL's limit (NAMEDATALEN - 1). SQLite has none, but one rule for every SQL sink
# keeps a URL portable between them.
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_IDENTIFIER_FORM = "a letter or underscore followed by up to 62 letters, digits or underscores"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def mask_url(url: str) -> str:
    """Return `url` with the password of its user info and secret query parameters as `***`.

    Never raises. When the URL is malformed, for example a password with an unescaped `/`,
    `?` or `@`, everything that could be part of the password is masked, even if that hides
    the host or the database too.
    """
    masked = _mask_user_info(url)
    return _SECRET_PARAM.sub(rf"\g<1>{_MASK}", masked)


def _mask_user_info(url: str) -> str:
    scheme_end = url.find("://")
    if scheme_end < 0:
        return url
    authority_start = scheme_end + 3
    rest = url[authority_start:]
    if rest.startswith("/"):
        return url

    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        netloc = ""

    # The usual case: urlsplit found the user info. Otherwise an unescaped `/`, `?` or `#`
    # in the password ended the netloc early, so the password runs to the last `@`.
    user_info_end = netloc.rfind("@") if "@" in netloc else rest.rfind("@")
    if user_info_end < 0:
        return url
    user_info = rest[:user_info_end]
    user, colon, _password = user_info.partition(":")
    if not colon:
        return url
    return f"{url[:authority_start]}{user}:{_MASK}{rest[user_info_end:]}"


def sink_scheme(url: str) -> str | None:
    """Return the lower-cased scheme of a sink URL, or `None` when it has none.

    A Windows drive letter (`C:\\...`) is not a scheme.
    """
    match = _SCHEME.match(url)
    if match is None or len(match.group(1)) == 1:
        return None
    return match.group(1).lower()


def is_jsonl_url(url: str) -> bool:
    """Return whether `url` names a JSONL sink: `jsonl`, `jsonl:PATH` or a `PATH.jsonl`."""
    text = url.strip().lower()
    scheme = sink_scheme(text)
    return text == "jsonl" or scheme == "jsonl" or (scheme is None and text.endswith(".jsonl"))


def validate_identifier(parameter: str, value: str, url: str | None = None) -> str:
    """Return `value` if it is a plain SQL identifier, or raise.

    Only plain identifiers are accepted, so that sinks can put them into SQL statements
    without any quoting rules to get wrong.

    Raises:
        ValueError: naming the parameter, the value and the accepted form, and the sink URL,
            masked, when `url` is given.
    """
    if _IDENTIFIER.fullmatch(value) is None:
        where = f" in sink URL {mask_url(url)!r}" if url is not None else ""
        raise ValueError(
            f"invalid {parameter}={value!r}{where}: expected an SQL identifier, {_IDENTIFIER_FORM}"
        )
    return value


@dataclass(frozen=True, slots=True)
class TableOptions:
    """The table an SQL sink writes, from the URL's `table` and `schema` query parameters."""

    table: str
    schema: str | None
    """`None` when the URL names no schema: the database's default applies."""
    url: str
    """The URL without `table` and `schema`, ready for the database driver."""
    other_params: tuple[tuple[str, str], ...]
    """The query parameters left after `table` and `schema`, in URL order."""


def parse_table_options(url: str) -> TableOptions:
    """Split the `table` and `schema` query parameters off an SQL sink URL and validate them.

    Raises:
        ValueError: if `table` or `schema` is not a plain SQL identifier, or is given twice.
    """
    base, question, query = url.partition("?")
    query, hash_mark, fragment = query.partition("#")
    params = parse_qsl(query, keep_blank_values=True) if question else []

    found: dict[str, str] = {}
    kept: list[tuple[str, str]] = []
    kept_raw: list[str] = []
    for raw, (key, value) in zip(_split_query(query), params, strict=True):
        if key not in ("table", "schema"):
            kept.append((key, value))
            kept_raw.append(raw)
            continue
        if key in found:
            raise ValueError(
                f"sink URL {mask_url(url)!r} gives {key!r} more than once; give it once"
            )
        found[key] = validate_identifier(key, value, url)

    stripped = base
    if kept_raw:
        stripped += "?" + "&".join(kept_raw)
    if hash_mark:
        stripped += "#" + fragment
    return TableOptions(
        table=found.get("table", DEFAULT_TABLE),
        schema=found.get("schema"),
        url=stripped,
        other_params=tuple(kept),
    )


def _split_query(query: str) -> list[str]:
    # The same split parse_qsl makes, keeping each raw `key=value` so that the URL handed to
    # the driver keeps its original escaping.
    return [part for part in query.split("&") if part]


@dataclass(frozen=True, slots=True)
class SqliteTarget:
    """The database file an `sqlite:///` URL points to."""

    path: Path | None
    """The database file, absolute; `None` for `sqlite:///:memory:`."""
    table: str
    url: str
    """The URL as given, masked, for reprs and messages."""


def parse_sqlite_url(url: str) -> SqliteTarget:
    """Parse `sqlite:///relative/path.db`, `sqlite:////absolute/path.db` or `sqlite:///:memory:`.

    `~` at the start of the path is expanded. Relative paths are resolved against the current
    working directory now, so a later `os.chdir` does not move the database.

    Raises:
        ValueError: if the URL has a host, no path, an unknown query parameter, an invalid
            `table`, or a `schema` other than `main` (SQLite keeps one schema per file).
    """
    options = parse_table_options(url)
    masked = mask_url(url)

    if options.other_params:
        key, value = options.other_params[0]
        raise ValueError(
            f"unknown query parameter {key}={value!r} in sink URL {masked!r}; "
            "SQLite sink URLs accept 'table' and 'schema'"
        )
    if options.schema not in (None, "main"):
        raise ValueError(
            f"invalid schema={options.schema!r} in sink URL {masked!r}: a SQLite file has one "
            "schema, 'main'; use another file (sqlite:///OTHER.db) to keep tables apart"
        )

    base = options.url.partition("#")[0]
    scheme_end = base.find(":") + 1
    rest = base[scheme_end:]
    if not rest.startswith("///"):
        raise ValueError(
            f"invalid SQLite sink URL {masked!r}: expected sqlite:///RELATIVE/PATH or "
            "sqlite:////ABSOLUTE/PATH (three slashes, then the path)"
        )
    raw_path = unquote(rest[3:])
    if not raw_path:
        raise ValueError(
            f"invalid SQLite sink URL {masked!r}: the path is empty; expected "
            "sqlite:///RELATIVE/PATH or sqlite:////ABSOLUTE/PATH"
        )

    path = None if raw_path == ":memory:" else Path(os.path.abspath(os.path.expanduser(raw_path)))
    return SqliteTarget(path=path, table=options.table, url=masked)


@dataclass(frozen=True, slots=True)
class JsonlTarget:
    """The file a `jsonl:` URL points to, and its write options."""

    path: Path
    """The file, absolute."""
    fsync: bool
    """Whether each batch is fsynced to disk before `write` returns."""


def parse_jsonl_url(url: str) -> JsonlTarget:
    """Parse `jsonl:PATH`, `jsonl:PATH?fsync=true` or a bare path ending in `.jsonl`.

    `jsonl:` or `jsonl` alone means `./tokenmeter.jsonl`. `jsonl:///abs/path` and `jsonl://rel/path`
    are accepted for those who write file URLs. `~` is expanded, and relative paths are
    resolved against the current working directory now.

    NOTE: a `?` starts the query, so a JSONL path cannot contain `?`.

    Raises:
        ValueError: if the query has a parameter other than `fsync`, or `fsync` is not a
            boolean word.
    """
    text = "" if url.strip().lower() == "jsonl" else url
    if sink_scheme(url) == "jsonl":
        text = url[len("jsonl:") :]
        if text.startswith("//"):
            text = text[2:]

    raw_path, question, query = text.partition("?")
    fsync = False
    for key, value in parse_qsl(query, keep_blank_values=True) if question else []:
        if key != "fsync":
            raise ValueError(
                f"unknown query parameter {key}={value!r} in sink URL {mask_url(url)!r}; "
                "JSONL sink URLs accept 'fsync' (true or false)"
            )
        fsync = _parse_bool(key, value, url)

    raw_path = raw_path or DEFAULT_JSONL_PATH
    path = Path(os.path.abspath(os.path.expanduser(raw_path)))
    return JsonlTarget(path=path, fsync=fsync)


def _parse_bool(key: str, value: str, url: str) -> bool:
    word = value.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(
        f"invalid {key}={value!r} in sink URL {mask_url(url)!r}: expected true or false "
        "(also 1/0, yes/no, on/off)"
    )
