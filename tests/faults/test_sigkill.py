"""SIGKILL: spooled batches survive and `tokenmeter replay` delivers them; memory is lost."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import tokenmeter
from tests.faults.fault_support import (
    assert_each_once,
    run_python,
    run_replay,
    spool_files,
    spooled_records,
    start_python,
)

# Turn 1 is delivered, which creates the sink's file. The file is then replaced by a
# directory, so every later write fails with IsADirectoryError and turns 2 to 501 go to the
# spool. Turns 502 to 801 stay in memory (the batch is not full and the flush interval is a
# minute) when the kill comes.
CHILD = """
import json, os, sys
import tokenmeter
from tests.faults.fault_support import Caller

out, spool = sys.argv[1], sys.argv[2]
tokenmeter.configure(
    sink=f"jsonl:{out}", spool_dir=spool, retry_attempts=2, retry_initial_s=0.001,
    retry_max_s=0.01, batch_size=1000, flush_interval_s=60,
)
caller = Caller()
caller.turns(1)
assert tokenmeter.flush(timeout=30)
os.remove(out)
os.mkdir(out)
caller.turns(500)
assert tokenmeter.flush(timeout=30)
caller.turns(300)
stats = tokenmeter.stats()
print(json.dumps({"spooled": stats.spooled, "delivered": stats.delivered}), flush=True)
sys.stdin.readline()
"""


def test_sigkill_keeps_spool_for_replay(tmp_path: Path) -> None:
    out = tmp_path / "usage.jsonl"
    spool_dir = tmp_path / "spool"
    child = start_python(CHILD, str(out), str(spool_dir), cwd=tmp_path)
    assert child.stdout is not None
    line = child.stdout.readline()

    child.kill()
    _, stderr = child.communicate(timeout=30)

    assert json.loads(line or "null") == {"spooled": 500, "delivered": 1}, stderr
    assert child.returncode == -signal.SIGKILL
    assert_each_once(spooled_records(spool_dir), range(2, 502))
    os.rmdir(out)

    replay = run_replay(f"jsonl:{out}", spool_dir)

    assert replay.returncode == 0, replay.stderr
    assert "replayed 500 records" in replay.stdout
    assert spool_files(spool_dir) == []
    # Turns 502 to 801 were still in the killed process's memory: that is the window the
    # delivery guarantee leaves open.
    assert_each_once(tokenmeter.read_jsonl(out, dedupe=False), range(2, 502))


def test_replay_takes_over_files_of_killed_replayer(tmp_path: Path) -> None:
    out = tmp_path / "usage.jsonl"
    spool_dir = tmp_path / "spool"
    child = run_python(
        CHILD.replace("sys.stdin.readline()", ""), str(out), str(spool_dir), cwd=tmp_path
    )
    assert child.returncode == 0, child.stderr
    os.rmdir(out)
    # A replaying process renames each file it takes to `*.claimed-<pid>`. One that was
    # killed leaves its files so, and a dead pid lets the next replay take them over.
    dead = run_python("import os; print(os.getpid())", cwd=tmp_path)
    dead_pid = int(dead.stdout)
    for path in spool_files(spool_dir):
        path.rename(path.with_name(f"{path.name}.claimed-{dead_pid}"))
    assert list(spool_dir.rglob("batch-*.jsonl")) == []

    replay = run_replay(f"jsonl:{out}", spool_dir)

    assert replay.returncode == 0, replay.stderr
    # The child exited normally, so its last 300 turns were spooled at exit.
    assert_each_once(tokenmeter.read_jsonl(out, dedupe=False), range(2, 802))
    assert spool_files(spool_dir) == []
