"""Memory and time of 1,000,000 turns metered while the only sink is down, against no sink.

Each scenario runs in a fresh subprocess with default settings except a spool directory in
a temporary folder. The child meters the turns in a loop and times every 100th call for
the median column. The mean column is the loop's wall time per turn. Then the child calls
`shutdown()` as interpreter exit would (default `TOKENMETER_FLUSH_TIMEOUT`, 5 s) and prints
its figures. Peak RSS is the child's `ru_maxrss`. Records on disk are counted after the child
exited, so they show what a process that exits right after metering keeps.

Run: `python -m tests.benchmarks bench_memory` from the repository root (about two minutes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

TURNS = 1_000_000

CHILD = """
import json, resource, statistics, sys, time
import tokenmeter
from tokenmeter import Usage, metered_turn

class DownSink:
    async def write(self, records):
        raise ConnectionError("sink is down")
    async def aclose(self):
        pass

@metered_turn(agent="bench", model="gpt-4o", provider="openai")
def step(sequence):
    return Usage(input_tokens=sequence, output_tokens=1)

scenario, spool_dir, turns = sys.argv[1], sys.argv[2], int(sys.argv[3])
tokenmeter.configure(sink=DownSink() if scenario == "sink down" else "none", spool_dir=spool_dir)

clock = time.perf_counter_ns
samples = []
started = time.perf_counter()
for sequence in range(1, turns + 1):
    if sequence % 100 == 0:
        before = clock()
        step(sequence)
        samples.append(clock() - before)
    else:
        step(sequence)
metered_s = time.perf_counter() - started
rss_after_metering_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

stopped_in_time = tokenmeter.shutdown()
total_s = time.perf_counter() - started
stats = tokenmeter.stats()
print(json.dumps({
    "metered_s": metered_s,
    "total_s": total_s,
    "median_call_ns": statistics.median(samples),
    "rss_after_metering_mib": rss_after_metering_kib / 1024,
    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "produced": stats.produced,
    "delivered": stats.delivered,
    "spooled": stats.spooled,
    "dropped": stats.dropped,
    "shutdown_in_time": stopped_in_time,
}))
"""


def count_spooled(spool_dir: Path) -> int:
    total = 0
    for path in spool_dir.rglob("batch-*.jsonl*"):
        if path.name.endswith(".partial"):
            continue
        with open(path, "rb") as file:
            total += sum(1 for line in file if line.strip())
    return total


def run_scenario(scenario: str, turns: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tokenmeter-bench-") as folder:
        spool_dir = Path(folder) / "spool"
        env = {**os.environ, "TOKENMETER_SINK": "none"}
        env.pop("TOKENMETER_FLUSH_TIMEOUT", None)
        completed = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(CHILD), scenario, str(spool_dir), str(turns)],
            env=env,
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        if completed.returncode != 0:
            raise RuntimeError(f"{scenario}: benchmark child failed:\n{completed.stderr[-4000:]}")
        figures: dict[str, Any] = json.loads(completed.stdout.splitlines()[-1])
        figures["on_disk_after_exit"] = count_spooled(spool_dir)
        return figures


def main() -> None:
    turns = int(os.environ.get("BENCH_MEMORY_TURNS", TURNS))
    print(f"{turns:,} turns per scenario, default settings, spool in a temporary folder")
    header = (
        f"{'scenario':<10} {'metering s':>10} {'total s':>8} {'median ns':>9} {'mean ns':>8} "
        f"{'RSS@end MiB':>11} {'peak MiB':>9} {'spooled':>9} {'on disk':>9} {'lost':>9}"
    )
    print(header)
    for scenario in ("none", "sink down"):
        figures = run_scenario(scenario, turns)
        # The none sink discards what it takes, so "delivered" counts as kept here.
        lost = turns - figures["delivered"] - figures["on_disk_after_exit"]
        print(
            f"{scenario:<10} {figures['metered_s']:>10.1f} {figures['total_s']:>8.1f} "
            f"{figures['median_call_ns']:>9.0f} {figures['metered_s'] / turns * 1e9:>8.0f} "
            f"{figures['rss_after_metering_mib']:>11.0f} "
            f"{figures['peak_rss_mib']:>9.0f} {figures['spooled']:>9,} "
            f"{figures['on_disk_after_exit']:>9,} {lost:>9,}"
        )
        print(f"  {json.dumps(figures)}")


if __name__ == "__main__":
    main()
