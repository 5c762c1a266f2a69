"""Ways to append a JSONL batch off the event loop: one `to_thread.run_sync` hop or anyio's files.

`JsonlSink` uses the first: open, write and close in one worker-thread call. `anyio.open_file`
and `anyio.Path.open` pay one thread hop per file operation. The batch is serialized before
timing, so the figures compare the I/O paths alone; `JsonlSink.write` adds serialization.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import anyio
import anyio.to_thread

from tokenmeter.records import UsageRecord, record_to_json
from tokenmeter.sinks import JsonlSink

from ._timing import amedian_per_call_ns

BATCH_SIZES = (1, 10, 200)


def _batch(size: int) -> list[UsageRecord]:
    return [
        UsageRecord(
            id=uuid.uuid4(),
            timestamp=datetime.now(UTC),
            run_id=uuid.uuid4(),
            agent="bench",
            model="gpt-4o",
            provider="openai",
            rounds=1,
            input_tokens=1200,
            output_tokens=80,
            cost_usd=Decimal("0.0038"),
            price_status="priced",
            tags=["bench"],
        )
        for _ in range(size)
    ]


async def _append_one_hop(path: Path, data: bytes) -> None:
    def append() -> None:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    await anyio.to_thread.run_sync(append)


async def _append_open_file(path: Path, data: bytes) -> None:
    async with await anyio.open_file(path, "ab") as file:
        await file.write(data)


async def _append_anyio_path(path: Path, data: bytes) -> None:
    async with await anyio.Path(path).open("ab") as file:
        await file.write(data)


def _repeat_append(
    append: Callable[[Path, bytes], Awaitable[None]], path: Path, data: bytes
) -> Callable[[int], Awaitable[None]]:
    async def run(calls: int) -> None:
        for _ in range(calls):
            await append(path, data)

    return run


def _repeat_write(sink: JsonlSink, records: list[UsageRecord]) -> Callable[[int], Awaitable[None]]:
    async def run(calls: int) -> None:
        for _ in range(calls):
            await sink.write(records)

    return run


async def _run(directory: Path) -> None:
    variants: dict[str, Callable[[Path, bytes], Awaitable[None]]] = {
        "to_thread.run_sync, one hop": _append_one_hop,
        "anyio.open_file": _append_open_file,
        "anyio.Path.open": _append_anyio_path,
    }
    for size in BATCH_SIZES:
        records = _batch(size)
        data = "".join(record_to_json(record) + "\n" for record in records).encode()
        for name, append in variants.items():
            path = directory / f"{uuid.uuid4()}.jsonl"
            median_ns = await amedian_per_call_ns(_repeat_append(append, path, data), calls=50)
            print(f"batch {size:4d}  {name:30s} {median_ns / 1000:8.1f} us per batch")

        sink = JsonlSink(directory / f"{uuid.uuid4()}.jsonl")
        median_ns = await amedian_per_call_ns(_repeat_write(sink, records), calls=20)
        name = "JsonlSink.write, serializing"
        print(f"batch {size:4d}  {name:30s} {median_ns / 1000:8.1f} us per batch")


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        for backend in ("asyncio", "trio"):
            print(f"### {backend}")
            anyio.run(_run, Path(directory), backend=backend)
