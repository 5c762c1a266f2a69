"""The local spool: JSONL files of records that a sink could not take, kept until replayed.

Layout: `SPOOL_DIR/<sink key>/` contains `sink.txt` (the sink's masked URL, for people) and one
`batch-<time>-<pid>-<n>.jsonl` file per spooled batch. A file is fsynced before it counts as
spooled. A replaying process renames a file to `*.claimed-<pid>` first, so two processes never
replay the same batch at once.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import anyio.to_thread

from tokenmeter.records import UsageRecord, record_from_json, record_to_json

__all__ = ["Spool", "iter_spools"]

logger = logging.getLogger(__name__)

_sequence = itertools.count()


class Spool:
    """The spool directory of one sink."""

    def __init__(self, root: Path, key: str, label: str) -> None:
        self.directory = Path(root) / key
        self.label = label
        self._known_empty = False

    def _write_sync(self, lines: str) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        label_file = self.directory / "sink.txt"
        if not label_file.exists():
            label_file.write_text(self.label + "\n", encoding="utf-8")

        name = f"batch-{time.time_ns()}-{os.getpid()}-{next(_sequence)}"
        partial = self.directory / f"{name}.partial"
        final = self.directory / f"{name}.jsonl"
        with open(partial, "w", encoding="utf-8") as file:
            file.write(lines)
            file.flush()
            os.fsync(file.fileno())
        # The rename makes the batch visible whole or not at all, even after a crash.
        os.replace(partial, final)
        return final

    async def write(self, records: Sequence[UsageRecord]) -> Path:
        """Write one batch to its own file and fsync it. Raises OSError when the disk fails."""
        lines = "".join(record_to_json(record) + "\n" for record in records)
        path = await anyio.to_thread.run_sync(self._write_sync, lines)
        self._known_empty = False
        return path

    def has_files(self) -> bool:
        if self._known_empty:
            return False
        try:
            found = any(self.directory.glob("batch-*.jsonl"))
        except OSError:
            found = False
        self._known_empty = not found
        return found

    def claim_files(self) -> Iterator[Path]:
        """Yield spooled batch files, oldest first, each renamed so no other process takes it."""
        try:
            names = sorted(self.directory.glob("batch-*.jsonl"))
            names += sorted(self._orphaned_claims())
        except OSError:
            return
        for path in names:
            claimed = path.with_name(f"{path.name}.claimed-{os.getpid()}")
            try:
                os.replace(path, claimed)
            except FileNotFoundError:
                continue  # another process claimed it first
            yield claimed
        self._known_empty = False

    def _orphaned_claims(self) -> list[Path]:
        """Files claimed by processes that died before replaying them, under their old names."""
        orphans = []
        for claimed in self.directory.glob("batch-*.jsonl.claimed-*"):
            pid_text = claimed.name.rsplit(".claimed-", 1)[1]
            if not pid_text.isdigit() or _process_alive(int(pid_text)):
                continue
            original = claimed.with_name(claimed.name.rsplit(".claimed-", 1)[0])
            try:
                os.replace(claimed, original)
            except OSError:
                continue
            orphans.append(original)
        return orphans

    @staticmethod
    def _read_sync(path: Path) -> list[UsageRecord]:
        records: list[UsageRecord] = []
        with open(path, encoding="utf-8") as file:
            for number, line in enumerate(file, 1):
                if not line.strip():
                    continue
                try:
                    records.append(record_from_json(line))
                except ValueError as error:
                    logger.warning(
                        "tokenmeter: skipping invalid spool line %s:%d: %s", path, number, error
                    )
        return records

    async def read(self, path: Path) -> list[UsageRecord]:
        return await anyio.to_thread.run_sync(self._read_sync, path)

    def release(self, claimed: Path) -> None:
        """Give a claimed file back, for a later replay."""
        original = claimed.with_name(claimed.name.rsplit(".claimed-", 1)[0])
        try:
            os.replace(claimed, original)
        except OSError as error:
            logger.error("tokenmeter: could not return spool file %s: %r", claimed, error)

    def remove(self, claimed: Path) -> None:
        try:
            claimed.unlink()
        except OSError as error:
            logger.error("tokenmeter: could not remove replayed spool file %s: %r", claimed, error)

    def count_records(self) -> int:
        total = 0
        for path in self.directory.glob("batch-*.jsonl"):
            with open(path, "rb") as file:
                total += sum(1 for line in file if line.strip())
        return total


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def iter_spools(root: Path) -> Iterator[tuple[str, str, int, int]]:
    """Yield `(key, masked sink URL, files, records)` for each sink with spooled batches."""
    root = Path(root)
    if not root.is_dir():
        return
    for directory in sorted(root.iterdir()):
        if not directory.is_dir():
            continue
        files = list(directory.glob("batch-*.jsonl"))
        if not files:
            continue
        label_file = directory / "sink.txt"
        label = label_file.read_text(encoding="utf-8").strip() if label_file.exists() else "?"
        spool = Spool(root, directory.name, label)
        yield directory.name, label, len(files), spool.count_records()
