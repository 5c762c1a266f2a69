"""Many processes metering into one SQL table: every record lands exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import asyncpg
import pytest

from tests.postgres_server import postgres_dsn, with_query

__all__ = ["postgres_dsn"]

PROCESSES = 8
TURNS_PER_PROCESS = 10_000

WRITER = textwrap.dedent(
    """
    import sys
    import tokenmeter
    from tokenmeter import Usage, meter

    worker = int(sys.argv[1])
    turns = int(sys.argv[2])
    for number in range(turns):
        with meter(agent=f"writer-{worker}", model="gpt-4o", provider="openai") as m:
            m.add(Usage(number + 1, 1))
    delivered = tokenmeter.flush(timeout=300)
    stats = tokenmeter.stats()
    assert delivered, stats
    assert stats.delivered == turns, stats
    assert stats.spooled == 0, stats
    assert stats.dropped == 0, stats
    print("ok", stats.delivered)
    """
)


def run_writers(sink: str, spool_dir: Path) -> None:
    env = {
        **os.environ,
        "TOKENMETER_SINK": sink,
        "TOKENMETER_SPOOL_DIR": str(spool_dir),
        "TOKENMETER_FLUSH_TIMEOUT": "60",
    }
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(worker), str(TURNS_PER_PROCESS)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for worker in range(PROCESSES)
    ]
    for process in processes:
        stdout, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr
        assert stdout.strip() == f"ok {TURNS_PER_PROCESS}", stdout
        assert "Traceback" not in stderr, stderr


@pytest.mark.timeout(600)
def test_sqlite_eight_processes_each_record_once(tmp_path: Path) -> None:
    database = tmp_path / "shared.db"

    run_writers(f"sqlite:///{database}", tmp_path / "spool")

    import sqlite3

    with sqlite3.connect(database) as connection:
        total, distinct = connection.execute(
            "SELECT COUNT(*), COUNT(DISTINCT id) FROM llm_usage"
        ).fetchone()
        per_writer = dict(
            connection.execute("SELECT agent, COUNT(*) FROM llm_usage GROUP BY agent").fetchall()
        )
    assert total == PROCESSES * TURNS_PER_PROCESS
    assert distinct == total
    assert per_writer == {f"writer-{n}": TURNS_PER_PROCESS for n in range(PROCESSES)}


@pytest.mark.timeout(600)
def test_postgres_eight_processes_each_record_once(postgres_dsn: str, tmp_path: Path) -> None:
    schema = f"writers_{uuid.uuid4().hex[:8]}"
    sink = with_query(postgres_dsn, schema=schema)

    run_writers(sink, tmp_path / "spool")

    async def count() -> tuple[int, int, dict[str, int]]:
        connection = await asyncpg.connect(postgres_dsn)
        try:
            row = await connection.fetchrow(
                f'SELECT COUNT(*) AS total, COUNT(DISTINCT id) AS ids FROM "{schema}".llm_usage'
            )
            groups = await connection.fetch(
                f'SELECT agent, COUNT(*) AS n FROM "{schema}".llm_usage GROUP BY agent'
            )
        finally:
            await connection.close()
        return row["total"], row["ids"], {g["agent"]: g["n"] for g in groups}

    import asyncio

    total, distinct, per_writer = asyncio.run(count())
    assert total == PROCESSES * TURNS_PER_PROCESS
    assert distinct == total
    assert per_writer == {f"writer-{n}": TURNS_PER_PROCESS for n in range(PROCESSES)}
