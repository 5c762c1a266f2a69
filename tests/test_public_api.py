"""The public facade: every exported name exists and shows its public module."""

from __future__ import annotations

import inspect

import tokenmeter

DESIGN_NAMES = {
    "metered_turn",
    "meter",
    "metered_stream",
    "AgentTurn",
    "Usage",
    "UsageRecord",
    "Cost",
    "extract_usage",
    "extract_stream_usage",
    "estimate_cost",
    "configure",
    "flush",
    "aflush",
    "shutdown",
    "stats",
    "read_jsonl",
}


def test_all_names_exist() -> None:
    for name in tokenmeter.__all__:
        assert hasattr(tokenmeter, name), name


def test_all_is_sorted_and_unique() -> None:
    assert len(set(tokenmeter.__all__)) == len(tokenmeter.__all__)


def test_design_names_are_exported() -> None:
    assert set(tokenmeter.__all__) >= DESIGN_NAMES


def test_classes_show_public_module() -> None:
    for name in ("Usage", "AgentTurn", "UsageRecord", "Cost", "Meter"):
        assert getattr(tokenmeter, name).__module__ == "tokenmeter", name


def test_aflush_is_coroutine_function() -> None:
    assert inspect.iscoroutinefunction(tokenmeter.aflush)
    assert not inspect.iscoroutinefunction(tokenmeter.flush)


def test_cli_entry_point_is_main() -> None:
    from tokenmeter.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {"demo", "report", "replay", "prices"} <= set(commands)
