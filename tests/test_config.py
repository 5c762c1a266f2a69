"""Settings from TOKENMETER_* variables: sink lists, numbers, and their validation."""

from __future__ import annotations

import math

import pytest

from tokenmeter.config import Settings, settings_from_env, split_sink_urls


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("jsonl:a.jsonl, sqlite:///x.db,stdout", ("jsonl:a.jsonl", "sqlite:///x.db", "stdout")),
        (
            "postgresql://alice:Sec,retPW@127.0.0.1/db",
            ("postgresql://alice:Sec,retPW@127.0.0.1/db",),
        ),
        (
            "postgresql://u:p@h1:5432,h2:5432/db,stdout:json",
            ("postgresql://u:p@h1:5432,h2:5432/db", "stdout:json"),
        ),
        ("usage.jsonl,none", ("usage.jsonl", "none")),
        (" , ", ()),
    ],
)
def test_sink_urls_keep_inner_commas(raw: str, expected: tuple[str, ...]) -> None:
    assert split_sink_urls(raw) == expected


@pytest.mark.parametrize("value", ["inf", "nan", "-1", "soon"])
def test_invalid_flush_timeout_uses_default(value: str, caplog: pytest.LogCaptureFixture) -> None:
    settings = settings_from_env({"TOKENMETER_FLUSH_TIMEOUT": value})

    assert settings.flush_timeout_s == Settings().flush_timeout_s
    assert "TOKENMETER_FLUSH_TIMEOUT" in caplog.text
    assert repr(value) in caplog.text


def test_valid_numbers_are_read() -> None:
    settings = settings_from_env(
        {
            "TOKENMETER_BATCH_SIZE": "50",
            "TOKENMETER_FLUSH_TIMEOUT": "2.5",
            "TOKENMETER_SINK": "none",
        }
    )

    assert settings.batch_size == 50
    assert settings.flush_timeout_s == 2.5
    assert settings.sink == ("none",)
    assert math.isfinite(settings.retry_max_s)


def test_disabled_variable() -> None:
    assert settings_from_env({"TOKENMETER_DISABLED": "1"}).enabled is False
    assert settings_from_env({}).enabled is True
