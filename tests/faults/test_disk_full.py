"""The JSONL sink's disk full mid-batch: the batch spools, and replay completes the file."""

from __future__ import annotations

import json
from pathlib import Path

import tokenmeter
from tests.faults.fault_support import (
    assert_each_once,
    run_python,
    run_replay,
    spool_files,
)

# RLIMIT_FSIZE caps the size of every file the child writes, which is what a full disk looks
# like to the JSONL sink: write() stores what fits, then fails with EFBIG. SIGXFSZ is ignored
# so that the write fails instead of the kernel killing the process. The spool's batch files
# stay far below the cap, as a spool on another disk would.
CHILD = """
import json, resource, signal, statistics, sys
import tokenmeter
from tests.faults.fault_support import FAULT, NO_FAULT, Caller

out, spool = sys.argv[1], sys.argv[2]
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
tokenmeter.configure(
    sink=f"jsonl:{out}", spool_dir=spool, retry_attempts=2,
    retry_initial_s=0.001, retry_max_s=0.01, flush_interval_s=0.05,
)
caller = Caller()
caller.turns(1000, "warm-up")
caller.turns(3000, NO_FAULT)
assert tokenmeter.flush(timeout=30)

# Room for about 40 more records: the next batch fills the disk in the middle of a line.
with open(out, "rb") as file:
    size = len(file.read())
resource.setrlimit(resource.RLIMIT_FSIZE, (size + 30_000, size + 30_000))
caller.turns(3000, FAULT)
assert tokenmeter.flush(timeout=30)

stats = tokenmeter.stats()
print(json.dumps({
    "produced": stats.produced,
    "delivered": stats.delivered,
    "spooled": stats.spooled,
    "dropped": stats.dropped,
    "no_fault_ns": statistics.median(caller.times_ns[NO_FAULT]),
    "fault_ns": statistics.median(caller.times_ns[FAULT]),
}))
"""


def test_disk_full_spools_then_replay_completes(tmp_path: Path) -> None:
    out = tmp_path / "usage.jsonl"
    spool_dir = tmp_path / "spool"

    child = run_python(CHILD, str(out), str(spool_dir), cwd=tmp_path)

    assert child.returncode == 0, child.stderr
    result = json.loads(child.stdout.splitlines()[-1])
    assert result["dropped"] == 0
    assert result["delivered"] + result["spooled"] == result["produced"] == 7000
    assert result["spooled"] >= 2900
    assert result["fault_ns"] <= 2 * result["no_fault_ns"], result
    assert "File too large" in child.stderr
    # The disk filled in the middle of a line.
    assert not out.read_bytes().endswith(b"\n")

    replay = run_replay(f"jsonl:{out}", spool_dir)

    assert replay.returncode == 0, replay.stderr
    assert f"replayed {result['spooled']} records" in replay.stdout
    assert spool_files(spool_dir) == []
    # Records of the batch that filled the disk are in the file twice, once from the batch
    # that failed and once from the spool. Readers dedupe JSONL by record id.
    assert_each_once(tokenmeter.read_jsonl(out), range(1, 7001))
