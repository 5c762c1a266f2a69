"""open_sink: which sink each URL opens, URL errors, and credentials masked everywhere."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from tokenmeter.sinks import JsonlSink, NullSink, SqliteSink, StdoutSink, mask_url, open_sink
from tokenmeter.sinks.urls import parse_table_options


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("none", NullSink),
        ("NONE", NullSink),
        ("stdout", StdoutSink),
        ("stdout:json", StdoutSink),
        ("stdout:text", StdoutSink),
        ("jsonl:usage.jsonl", JsonlSink),
        ("jsonl:usage.log", JsonlSink),
        ("usage.jsonl", JsonlSink),
        ("./logs/usage.JSONL", JsonlSink),
        ("sqlite:///usage.db", SqliteSink),
        ("  sqlite:///usage.db\n", SqliteSink),
    ],
)
def test_url_opens_sink_kind(url: str, kind: type) -> None:
    assert type(open_sink(url)) is kind


def test_jsonl_url_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    relative = open_sink("jsonl:logs/usage.jsonl")
    absolute = open_sink("jsonl:///var/tmp/usage.jsonl")
    bare = open_sink("usage.jsonl")
    path_object = open_sink(tmp_path / "p.jsonl")

    assert isinstance(relative, JsonlSink)
    assert relative.path == tmp_path / "logs" / "usage.jsonl"
    assert isinstance(absolute, JsonlSink)
    assert absolute.path == Path("/var/tmp/usage.jsonl")
    assert isinstance(bare, JsonlSink)
    assert bare.path == tmp_path / "usage.jsonl"
    assert isinstance(path_object, JsonlSink)
    assert path_object.path == tmp_path / "p.jsonl"


def test_sqlite_url_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    relative = open_sink("sqlite:///data/usage.db")
    absolute = open_sink("sqlite:////var/tmp/usage.db?table=turns")
    escaped = open_sink("sqlite:///my%20usage.db")

    assert isinstance(relative, SqliteSink)
    assert relative.path == tmp_path / "data" / "usage.db"
    assert relative.table == "llm_usage"
    assert isinstance(absolute, SqliteSink)
    assert absolute.path == Path("/var/tmp/usage.db")
    assert absolute.table == "turns"
    assert isinstance(escaped, SqliteSink)
    assert escaped.path == tmp_path / "my usage.db"


def test_unknown_scheme_names_accepted_forms() -> None:
    with pytest.raises(ValueError, match="unsupported sink URL") as raised:
        open_sink("mysql://admin:hunter2@db.example/usage")

    assert str(raised.value) == (
        "unsupported sink URL 'mysql://admin:***@db.example/usage'; expected one of: "
        "jsonl:PATH, PATH.jsonl, sqlite:///RELATIVE/PATH, sqlite:////ABSOLUTE/PATH, "
        "postgresql://USER:PASSWORD@HOST:PORT/DATABASE, stdout, stdout:json, none"
    )


@pytest.mark.parametrize("url", ["", "usage.csv", "stdout:yaml", "C:\\logs\\usage.txt"])
def test_unsupported_url_raises(url: str) -> None:
    with pytest.raises(ValueError, match="unsupported sink URL"):
        open_sink(url)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "sqlite:///usage.db?table=usage;drop",
            "invalid table='usage;drop' in sink URL 'sqlite:///usage.db?table=usage;drop': "
            "expected an SQL identifier, a letter or underscore followed by up to 62 letters, "
            "digits or underscores",
        ),
        (
            "sqlite:///usage.db?table=1st",
            "invalid table='1st' in sink URL 'sqlite:///usage.db?table=1st': expected an SQL "
            "identifier, a letter or underscore followed by up to 62 letters, digits or "
            "underscores",
        ),
        (
            "postgresql://u:hunter2@localhost/db?schema=a.b",
            "invalid schema='a.b' in sink URL 'postgresql://u:***@localhost/db?schema=a.b': "
            "expected an SQL identifier, a letter or underscore followed by up to 62 letters, "
            "digits or underscores",
        ),
        (
            "sqlite:///usage.db?schema=other",
            "invalid schema='other' in sink URL 'sqlite:///usage.db?schema=other': a SQLite "
            "file has one schema, 'main'; use another file (sqlite:///OTHER.db) to keep tables "
            "apart",
        ),
        (
            "sqlite:///usage.db?table=a&table=b",
            "sink URL 'sqlite:///usage.db?table=a&table=b' gives 'table' more than once; "
            "give it once",
        ),
        (
            "sqlite:///usage.db?timeout=5",
            "unknown query parameter timeout='5' in sink URL 'sqlite:///usage.db?timeout=5'; "
            "SQLite sink URLs accept 'table' and 'schema'",
        ),
        (
            "sqlite://host/usage.db",
            "invalid SQLite sink URL 'sqlite://host/usage.db': expected sqlite:///RELATIVE/PATH "
            "or sqlite:////ABSOLUTE/PATH (three slashes, then the path)",
        ),
    ],
)
def test_invalid_sql_url_raises(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as raised:
        open_sink(url)

    assert str(raised.value) == message


def test_table_identifier_length_limit() -> None:
    assert isinstance(open_sink(f"sqlite:///usage.db?table={'t' * 63}"), SqliteSink)
    with pytest.raises(ValueError, match="invalid table="):
        open_sink(f"sqlite:///usage.db?table={'t' * 64}")


def test_sqlite_schema_main_accepted() -> None:
    assert isinstance(open_sink("sqlite:///usage.db?schema=main"), SqliteSink)


def test_table_options_leave_driver_params() -> None:
    options = parse_table_options(
        "postgresql://u:pw@host/db?sslmode=require&table=turns&application_name=a%20b&schema=x"
    )

    assert options.table == "turns"
    assert options.schema == "x"
    assert options.url == "postgresql://u:pw@host/db?sslmode=require&application_name=a%20b"
    assert options.other_params == (("sslmode", "require"), ("application_name", "a b"))


def test_table_options_defaults() -> None:
    options = parse_table_options("postgresql://host/db")

    assert options.table == "llm_usage"
    assert options.schema is None
    assert options.url == "postgresql://host/db"


def test_postgres_without_asyncpg_names_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "asyncpg", None)
    monkeypatch.delitem(sys.modules, "tokenmeter.sinks.postgres", raising=False)

    with pytest.raises(ImportError) as raised:
        open_sink("postgresql://app:hunter2@localhost/metrics")

    assert "pip install 'tokenmeter[postgres]'" in str(raised.value)
    assert "hunter2" not in str(raised.value)


def test_postgres_invalid_table_raises_before_import(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "asyncpg", None)
    monkeypatch.delitem(sys.modules, "tokenmeter.sinks.postgres", raising=False)

    with pytest.raises(ValueError, match="invalid table='x-y'"):
        open_sink("postgres://localhost/metrics?table=x-y")


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://app:hunter2@db:5432/metrics", "postgresql://app:***@db:5432/metrics"),
        ("postgres://app@db/metrics", "postgres://app@db/metrics"),
        ("postgresql://:hunter2@db/metrics", "postgresql://:***@db/metrics"),
        ("postgresql://app:p%40ss@db/metrics", "postgresql://app:***@db/metrics"),
        # Unescaped `/`, `?` and `@` in the password: everything up to the last `@` is hidden.
        ("postgresql://app:hun/ter2@db/metrics", "postgresql://app:***@db/metrics"),
        ("postgresql://app:hun?ter2@db/metrics", "postgresql://app:***@db/metrics"),
        ("postgresql://app:hun@ter2@db/metrics", "postgresql://app:***@db/metrics"),
        (
            "postgresql://db/metrics?user=app&password=hunter2&sslmode=require",
            "postgresql://db/metrics?user=app&password=***&sslmode=require",
        ),
        (
            "postgresql://db/metrics?sslpassword=hunter2",
            "postgresql://db/metrics?sslpassword=***",
        ),
        ("host=db password=hunter2 dbname=metrics", "host=db password=*** dbname=metrics"),
        ("postgresql://app:hunter2@[::1/metrics", "postgresql://app:***@[::1/metrics"),
        ("sqlite:////srv/data@home/usage.db", "sqlite:////srv/data@home/usage.db"),
        ("jsonl:/tmp/a:b@c.jsonl", "jsonl:/tmp/a:b@c.jsonl"),
        ("stdout", "stdout"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked
