"""JsonlSink: line format, file creation, recovery from partial lines, and `check()`."""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tokenmeter.reading import read_jsonl
from tokenmeter.records import UsageRecord, record_to_json
from tokenmeter.sinks import JsonlSink, open_sink

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

    from tests.sinks.conftest import RecordFactory

pytestmark = pytest.mark.anyio


async def test_writes_one_json_line_per_record(tmp_path: Path, batch: list[UsageRecord]) -> None:
    path = tmp_path / "usage.jsonl"
    sink = JsonlSink(path)

    await sink.write(batch)

    expected = "".join(record_to_json(record) + "\n" for record in batch)
    assert path.read_text(encoding="utf-8") == expected


async def test_appends_to_existing_file(tmp_path: Path, batch: list[UsageRecord]) -> None:
    path = tmp_path / "usage.jsonl"
    path.write_text(record_to_json(batch[0]) + "\n", encoding="utf-8")
    sink = JsonlSink(path)

    await sink.write(batch[1:])

    assert read_jsonl(path) == batch


async def test_creates_parent_directories(tmp_path: Path, batch: list[UsageRecord]) -> None:
    path = tmp_path / "a" / "b" / "usage.jsonl"
    sink = open_sink(f"jsonl:{path}")

    await sink.write(batch)

    assert read_jsonl(path) == batch


async def test_recreates_deleted_file(tmp_path: Path, make_record: RecordFactory) -> None:
    path = tmp_path / "logs" / "usage.jsonl"
    sink = JsonlSink(path)
    await sink.write([make_record(0)])

    path.unlink()
    path.parent.rmdir()
    second = make_record(1)
    await sink.write([second])

    assert read_jsonl(path) == [second]


@pytest.mark.parametrize("url", ["jsonl:", "jsonl", "JSONL:"])
async def test_default_path_in_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch: list[UsageRecord], url: str
) -> None:
    monkeypatch.chdir(tmp_path)
    sink = open_sink(url)

    await sink.write(batch)

    assert isinstance(sink, JsonlSink)
    assert sink.path == tmp_path / "tokenmeter.jsonl"
    assert read_jsonl(tmp_path / "tokenmeter.jsonl") == batch


async def test_relative_path_fixed_at_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch: list[UsageRecord]
) -> None:
    monkeypatch.chdir(tmp_path)
    sink = open_sink("usage.jsonl")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")

    await sink.write(batch)

    assert read_jsonl(tmp_path / "usage.jsonl") == batch


async def test_starts_new_line_after_partial_line(
    tmp_path: Path, batch: list[UsageRecord], caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "usage.jsonl"
    sink = JsonlSink(path)
    await sink.write(batch[:2])
    with path.open("ab") as file:
        file.write(record_to_json(batch[2]).encode()[:40])

    await sink.write(batch[2:])

    with caplog.at_level(logging.WARNING, logger="tokenmeter.reading"):
        assert read_jsonl(path) == batch
    assert [record.message for record in caplog.records] == [
        f"skipped 1 lines of {path} that are not tokenmeter records: lines 3"
    ]


async def test_fsync_flag_syncs_each_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch: list[UsageRecord]
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    sink = open_sink(f"jsonl:{tmp_path / 'usage.jsonl'}?fsync=true")

    await sink.write(batch[:3])
    await sink.write(batch[3:])

    assert len(synced) == 2


async def test_no_fsync_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch: list[UsageRecord]
) -> None:
    synced: list[int] = []
    monkeypatch.setattr(os, "fsync", synced.append)
    sink = open_sink(f"jsonl:{tmp_path / 'usage.jsonl'}")

    await sink.write(batch)

    assert synced == []


async def test_write_to_directory_raises(tmp_path: Path, batch: list[UsageRecord]) -> None:
    sink = JsonlSink(tmp_path)

    with pytest.raises(IsADirectoryError):
        await sink.write(batch)


async def test_empty_batch_creates_no_file(tmp_path: Path) -> None:
    path = tmp_path / "usage.jsonl"
    sink = JsonlSink(path)

    await sink.write([])

    assert not path.exists()


def test_open_sink_does_no_io(tmp_path: Path) -> None:
    path = tmp_path / "new" / "usage.jsonl"

    open_sink(f"jsonl:{path}")

    assert not path.parent.exists()


def test_check_passes_for_creatable_path(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dirs" / "usage.jsonl"
    sink = JsonlSink(path)

    sink.check()

    assert not (tmp_path / "new").exists()


def test_check_rejects_file_as_parent(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("not a directory")
    path = tmp_path / "file.txt" / "sub" / "usage.jsonl"

    with pytest.raises(NotADirectoryError) as raised:
        JsonlSink(path).check()

    assert str(raised.value) == (
        f"sink 'jsonl:{path}' cannot create {str(path)!r}: "
        f"{str(tmp_path / 'file.txt')!r} is a file, not a directory"
    )


def test_check_rejects_directory(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError, match="it is a directory"):
        JsonlSink(tmp_path).check()


def test_open_sink_check_raises_oserror(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("not a directory")

    with pytest.raises(OSError, match="is a file, not a directory"):
        open_sink(f"jsonl:{tmp_path / 'file.txt' / 'usage.jsonl'}", check=True)


def test_repr_shows_url(tmp_path: Path) -> None:
    sink = JsonlSink(tmp_path / "usage.jsonl", fsync=True)

    assert repr(sink) == f"JsonlSink(url='jsonl:{tmp_path / 'usage.jsonl'}?fsync=true')"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "jsonl:usage.jsonl?flush=1",
            "unknown query parameter flush='1' in sink URL 'jsonl:usage.jsonl?flush=1'; "
            "JSONL sink URLs accept 'fsync' (true or false)",
        ),
        (
            "jsonl:usage.jsonl?fsync=maybe",
            "invalid fsync='maybe' in sink URL 'jsonl:usage.jsonl?fsync=maybe': "
            "expected true or false (also 1/0, yes/no, on/off)",
        ),
    ],
)
def test_invalid_query_raises(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as raised:
        open_sink(url)

    assert str(raised.value) == message


async def test_file_io_runs_off_event_loop_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch: list[UsageRecord]
) -> None:
    writer_threads: list[int] = []
    real_write = os.write

    def recording_write(fd: int, data: ReadableBuffer) -> int:
        writer_threads.append(threading.get_ident())
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", recording_write)
    sink = JsonlSink(tmp_path / "usage.jsonl")

    await sink.write(batch)

    assert writer_threads
    assert threading.get_ident() not in writer_threads
