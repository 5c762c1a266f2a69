"""`JsonlSink`: appends records to a JSON Lines file, one object per line."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import anyio.to_thread

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

from tokenmeter.records import UsageRecord, record_to_json
from tokenmeter.sinks.urls import DEFAULT_JSONL_PATH, parse_jsonl_url

__all__ = ["JsonlSink", "check_writable_path", "lock_file"]

logger = logging.getLogger(__name__)

# O_BINARY exists on Windows only, where text mode would turn "\n" into "\r\n".
_OPEN_FLAGS = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0)
# `tokenmeter reprice` replaces the file under an exclusive lock. A writer that opened the
# old file while it waited for the lock reopens the path, a bounded number of times.
_REOPEN_ATTEMPTS = 5


def lock_file(fd: int) -> None:
    """Take an exclusive `flock` on an open file, waiting for it; released when `fd` closes.

    Does nothing where `fcntl` is missing (Windows), so there `tokenmeter reprice` must not
    run while a process appends to the file.
    """
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX)


class JsonlSink:
    """Append each batch to a JSON Lines file, one `record_to_json` object per line.

    The file is opened for each batch and closed after it, so nothing is held open between
    batches: log rotation, deleting the file and forking all just work, and the next batch
    recreates the file and its parent directories. Each batch goes out in one `write` call on
    a file opened with `O_APPEND`, so batches from several processes appending to one local
    file do not interleave within a line. Each batch takes an exclusive `flock` on the file
    while it appends (not on Windows), so that `tokenmeter reprice` can replace the file
    without losing a batch.

    Serializing and file I/O run in a worker thread (`anyio.to_thread.run_sync`), one
    thread hop per batch, so the event loop never waits on the disk. `anyio.open_file` would
    take a hop per file operation: `tests/benchmarks/bench_jsonl_io.py` measured 70-150 µs
    per appended batch for one hop against 200-540 µs for `anyio.open_file` and
    `anyio.Path.open`, on a 2-core AMD EPYC virtual machine, batches of 1 to 200 records.

    Args:
        path: The file to append to. `~` is expanded, and a relative path is resolved against
            the current working directory when the sink is created.
        fsync: Call `os.fsync` after each batch, so a batch survives a power loss once
            `write` returns. Off by default: without it a batch survives a crash of the
            process but not of the machine.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = DEFAULT_JSONL_PATH,
        *,
        fsync: bool = False,
    ) -> None:
        self._path = Path(os.path.abspath(os.path.expanduser(os.fspath(path))))
        self._fsync = fsync
        self._closed = False

    @classmethod
    def from_url(cls, url: str) -> JsonlSink:
        """Open the sink that a `jsonl:PATH[?fsync=true]` URL or a `PATH.jsonl` names.

        Raises:
            ValueError: if the URL has an unknown query parameter or an invalid `fsync`.
        """
        target = parse_jsonl_url(url)
        return cls(target.path, fsync=target.fsync)

    @property
    def path(self) -> Path:
        """The absolute path of the file the sink appends to."""
        return self._path

    @property
    def url(self) -> str:
        """A URL that opens a sink writing the same file the same way."""
        return f"jsonl:{self._path}" + ("?fsync=true" if self._fsync else "")

    def __repr__(self) -> str:
        return f"JsonlSink(url={self.url!r})"

    def check(self) -> None:
        """Raise `OSError` if the file obviously cannot be written. Write nothing.

        This costs a few `stat` calls. Passing it does not promise that writes will succeed
        (the disk may be full, or permissions may change later).

        Raises:
            OSError: `IsADirectoryError`, `NotADirectoryError` or `PermissionError`, with a
                message naming the sink and the path.
        """
        check_writable_path(self._path, self.url)

    async def write(self, records: Sequence[UsageRecord]) -> None:
        """Append the batch to the file, creating it and its parent directories if missing.

        Raises:
            RuntimeError: if the sink was closed.
            OSError: if the file cannot be opened or written. Part of the batch may have
                been written then, and the reader skips the partial line.
        """
        if self._closed:
            raise RuntimeError(f"{self!r} is closed; open a new sink to write more records")
        if not records:
            return

        await anyio.to_thread.run_sync(self._append, records)
        logger.debug("appended %d records to %s", len(records), self._path)

    def _append(self, records: Sequence[UsageRecord]) -> None:
        data = "".join([record_to_json(record) + "\n" for record in records]).encode()
        fd = self._open_locked()

        try:
            # A writer that died mid-batch leaves a line without its newline. Starting on a
            # new line keeps the first record of this batch apart from that fragment.
            size = os.fstat(fd).st_size
            if size > 0:
                os.lseek(fd, size - 1, os.SEEK_SET)
                if os.read(fd, 1) != b"\n":
                    data = b"\n" + data

            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]

            if self._fsync:
                os.fsync(fd)
        finally:
            os.close(fd)

    def _open_locked(self) -> int:
        """Open the file for appending, holding its lock, as the file now at the path."""
        for _ in range(_REOPEN_ATTEMPTS):
            fd = self._open()
            lock_file(fd)
            if fcntl is None or self._is_current(fd):
                return fd
            os.close(fd)
        # A file replaced this often is an outside process's doing; append to the latest.
        fd = self._open()
        lock_file(fd)
        return fd

    def _open(self) -> int:
        try:
            return os.open(self._path, _OPEN_FLAGS, 0o644)
        except FileNotFoundError:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(self._path, _OPEN_FLAGS, 0o644)

    def _is_current(self, fd: int) -> bool:
        opened = os.fstat(fd)
        try:
            current = os.stat(self._path)
        except FileNotFoundError:
            return False
        return (opened.st_dev, opened.st_ino) == (current.st_dev, current.st_ino)

    async def aclose(self) -> None:
        """Mark the sink closed. Idempotent. No file is held open between batches."""
        self._closed = True


def check_writable_path(path: Path, sink: str) -> None:
    """Raise `OSError` if `path` or the directories that would be created for it can't be written.

    `sink` names the sink in the message and must already be masked. Nothing is created.

    Raises:
        IsADirectoryError: if `path` is a directory.
        NotADirectoryError: if a parent of `path` is a file.
        PermissionError: if `path`, or the nearest existing directory above it, is not writable.
    """
    if path.is_dir():
        raise IsADirectoryError(f"sink {sink!r} cannot write {str(path)!r}: it is a directory")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise PermissionError(
                f"sink {sink!r} cannot write {str(path)!r}: the file is not writable"
            )
        return

    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise NotADirectoryError(
            f"sink {sink!r} cannot create {str(path)!r}: {str(ancestor)!r} is a file, "
            "not a directory"
        )
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise PermissionError(
            f"sink {sink!r} cannot create {str(path)!r}: the directory {str(ancestor)!r} "
            "is not writable"
        )
