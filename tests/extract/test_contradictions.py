"""Counts that contradict each other are kept as reported and logged once per provider and kind."""

from __future__ import annotations

import logging

import pytest
from extract_payloads import load

from tokenmeter.extract import extract_usage, read_response
from tokenmeter.usage import Usage


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "tokenmeter.extract" and record.levelno == logging.WARNING
    ]


def test_cohere_cached_above_billed_input_kept(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="tokenmeter.extract")

    usage = extract_usage(load("cohere_v2_chat_cached_tokens.json"))

    assert usage == Usage(2406, 2, cache_read_tokens=2928)
    assert _warnings(caplog) == [
        "cohere reported contradictory usage (cached exceeds billed input): cached_tokens 2928 "
        "> billed_units.input_tokens 2406; counts are kept as reported (further cases of this "
        "kind are not logged)"
    ]


def test_xai_cached_above_prompt_kept(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="tokenmeter.extract")
    response = {
        "model": "grok-4",
        "outputs": [],
        "usage": {
            "prompt_tokens": 3472,
            "completion_tokens": 10,
            "cached_prompt_text_tokens": 4632,
        },
    }

    reading = read_response(response)

    assert reading.usage == Usage(3472, 10, cache_read_tokens=4632)
    assert len(_warnings(caplog)) == 1
    assert "xai reported contradictory usage (cached exceeds prompt)" in _warnings(caplog)[0]


def test_read_and_write_overlap_kept(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="tokenmeter.extract")

    usage = extract_usage(load("openrouter_gemini_read_write_overlap.json"))

    assert usage is not None
    assert usage.cache_read_tokens == 2161
    assert usage.cache_write_tokens == 2161
    assert usage.input_tokens == 2168
    assert len(_warnings(caplog)) == 1


def test_contradiction_logged_once_per_provider_and_kind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="tokenmeter.extract")
    payload = load("cohere_v2_chat_cached_tokens.json")

    for _ in range(5):
        extract_usage(payload)
    extract_usage(
        {"prompt_tokens": 5, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 9}}
    )

    assert len(_warnings(caplog)) == 2


def test_contradiction_never_raises() -> None:
    usage = read_response(
        {
            "prompt_tokens": 1,
            "completion_tokens": 1,
            "prompt_tokens_details": {"cached_tokens": 99},
        },
        provider="deepseek",
    ).usage

    assert usage == Usage(1, 1, cache_read_tokens=99)
