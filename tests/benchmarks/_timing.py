"""A small timing harness: median per-call time over repeated runs, in one process.

Times are CPU time of the calling thread (`time.thread_time_ns`), not wall time. Other
processes on a shared machine, and other threads holding the GIL, then do not count toward
a caller's figure, which is what the caller-side budget is about.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable


def median_per_call_ns(run: Callable[[int], object], calls: int, repeats: int = 15) -> float:
    """Run `run(calls)` `repeats` times and return the median time per call in nanoseconds."""
    run(max(1, calls // 10))  # warm-up: imports, caches, the delivery thread
    samples = []
    for _ in range(repeats):
        start = time.thread_time_ns()
        run(calls)
        samples.append((time.thread_time_ns() - start) / calls)
    return statistics.median(samples)


async def amedian_per_call_ns(
    run: Callable[[int], Awaitable[object]],
    calls: int,
    repeats: int = 15,
    between: Callable[[], object] | None = None,
) -> float:
    """The async counterpart of `median_per_call_ns`.

    `between`, if given, runs untimed after each sample: for example `tokenmeter.flush`, so
    that queued records do not pile up across samples as they never do in a real agent.
    """
    await run(max(1, calls // 10))
    if between is not None:
        between()
    samples = []
    for _ in range(repeats):
        start = time.thread_time_ns()
        await run(calls)
        samples.append((time.thread_time_ns() - start) / calls)
        if between is not None:
            between()
    return statistics.median(samples)
