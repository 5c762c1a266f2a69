"""`tokenmeter replay`: deliver spooled batches to their sinks on demand."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from tokenmeter.config import settings_from_env
from tokenmeter.delivery import _sink_label, _spool_key
from tokenmeter.spool import Spool, iter_spools

__all__ = ["replay_spool", "run_replay"]

logger = logging.getLogger(__name__)


async def replay_spool(url: str, spool_dir: Path) -> tuple[int, int]:
    """Deliver every spooled batch of the sink at `url`; return `(records, failed files)`.

    A batch the sink rejects stays spooled and the replay goes on with the next one, so one
    bad batch cannot hold back the others. After three rejected batches in a row the sink
    counts as down and the replay stops.
    """
    from tokenmeter.sinks import open_sink

    sink = open_sink(url)
    spool = Spool(spool_dir, _spool_key(url, sink), _sink_label(url, sink))
    delivered = 0
    failed = 0
    failed_in_a_row = 0
    try:
        for path in list(spool.claim_files()):
            if failed_in_a_row >= 3:
                spool.release(path)
                continue
            try:
                records = await spool.read(path)
                await sink.write(records)
            except Exception as error:
                spool.release(path)
                failed += 1
                failed_in_a_row += 1
                logger.error("replaying %s to %s failed: %r", path.name, spool.label, error)
                continue
            failed_in_a_row = 0
            spool.remove(path)
            delivered += len(records)
    finally:
        await sink.aclose()
    return delivered, failed


def run_replay(args: argparse.Namespace) -> int:
    settings = settings_from_env()
    spool_dir: Path = args.spool_dir or settings.spool_dir

    if args.list:
        found = False
        for key, label, files, records in iter_spools(spool_dir):
            found = True
            print(f"{label}  {records} records in {files} files  ({spool_dir / key})")
        if not found:
            print(f"nothing spooled in {spool_dir}")
        return 0

    urls = list(args.sinks) or [spec for spec in settings.sink if isinstance(spec, str)]
    status = 0
    for url in urls:
        delivered, failed = asyncio.run(replay_spool(url, spool_dir))
        from tokenmeter.sinks.urls import mask_url

        print(
            f"{mask_url(url)}: replayed {delivered} records"
            + (", some batches failed" if failed else "")
        )
        if failed:
            status = 1
    return status
