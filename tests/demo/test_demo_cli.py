"""`tokenmeter demo` as a user runs it: a separate process, configured by environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import tokenmeter
from tokenmeter.demo import agent

CONSOLE_SCRIPT = Path(sys.executable).with_name("tokenmeter")


def _environment(tmp_path: Path, sink: str) -> dict[str, str]:
    env = dict(os.environ)
    env["TOKENMETER_SINK"] = sink
    env["TOKENMETER_SPOOL_DIR"] = str(tmp_path / "spool")
    return env


@pytest.mark.parametrize(
    "command",
    [
        pytest.param([sys.executable, "-m", "tokenmeter", "demo"], id="python-m"),
        pytest.param([str(CONSOLE_SCRIPT), "demo"], id="console-script"),
    ],
)
def test_demo_command_writes_env_sink(tmp_path: Path, command: list[str]) -> None:
    path = tmp_path / "usage.jsonl"

    result = subprocess.run(
        command,
        env=_environment(tmp_path, f"jsonl:{path}"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    records = tokenmeter.read_jsonl(path)
    assert {record.agent for record in records} == set(agent.AGENTS)
    rounds = sum(record.rounds for record in records)
    assert rounds == sum(len(steps) for steps in agent.SCRIPTS.values())
    for agent_name in agent.AGENTS:
        assert agent_name in result.stdout


def test_demo_command_default_sink_is_cwd_jsonl(tmp_path: Path) -> None:
    env = _environment(tmp_path, "")
    del env["TOKENMETER_SINK"]

    result = subprocess.run(
        [sys.executable, "-m", "tokenmeter", "demo"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    records = tokenmeter.read_jsonl(tmp_path / "tokenmeter.jsonl")
    assert {record.agent for record in records} == set(agent.AGENTS)


def test_demo_command_sink_option_overrides_env(tmp_path: Path) -> None:
    from_env = tmp_path / "env.jsonl"
    from_option = tmp_path / "option.jsonl"

    result = subprocess.run(
        [sys.executable, "-m", "tokenmeter", "demo", "--sink", f"jsonl:{from_option}"],
        env=_environment(tmp_path, f"jsonl:{from_env}"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert not from_env.exists()
    assert len(tokenmeter.read_jsonl(from_option)) > 0
