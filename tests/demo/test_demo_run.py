"""`run_demo` end to end: real SDK clients, the replay server, metering and real sinks."""

from __future__ import annotations

import io
import socket
import sys
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest
from demo_support import BODY_USAGE
from genai_prices import Usage as PricesUsage
from genai_prices import calc_price

import tokenmeter
import tokenmeter.demo
from tokenmeter import UsageRecord
from tokenmeter.demo import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    RecordCollector,
    agent,
    format_table,
    run_demo,
)
from tokenmeter.demo.server import ReplayServer

# genai-prices names xAI `x-ai`; tokenmeter accepts both.
PRICES_PROVIDER = {"anthropic": "anthropic", "openai": "openai", "xai": "x-ai"}


@dataclass
class Totals:
    rounds: int = 0
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: Decimal = field(default_factory=Decimal)


def _expected(by_model: bool) -> dict[tuple[str, ...], Totals]:
    """Sum the recorded bodies each agent is served, pricing every round on its own."""
    totals: dict[tuple[str, ...], Totals] = defaultdict(Totals)
    for agent_name, steps in agent.SCRIPTS.items():
        for step in steps:
            body = BODY_USAGE[step.response]
            key = (agent_name, body.model) if by_model else (agent_name,)
            row = totals[key]
            row.rounds += 1
            row.input_tokens += body.input_tokens
            row.cache_read_tokens += body.cache_read_tokens
            row.cache_write_tokens += body.cache_write_tokens
            row.output_tokens += body.output_tokens
            row.reasoning_tokens += body.reasoning_tokens
            extras = {"web_searches": body.web_searches} if body.web_searches else {}
            price = calc_price(
                PricesUsage(
                    input_tokens=body.input_tokens,
                    cache_read_tokens=body.cache_read_tokens,
                    cache_write_tokens=body.cache_write_tokens,
                    output_tokens=body.output_tokens,
                    **extras,
                ),
                body.model,
                provider_id=PRICES_PROVIDER[body.provider],
            )
            row.cost_usd += price.total_price
    return dict(totals)


def _per_agent(records: Iterable[UsageRecord]) -> dict[tuple[str, ...], Totals]:
    totals: dict[tuple[str, ...], Totals] = defaultdict(Totals)
    for record in records:
        if record.rounds == 0:
            continue
        assert record.agent is not None
        assert record.cost_usd is not None, record
        row = totals[(record.agent,)]
        row.rounds += record.rounds
        row.input_tokens += record.input_tokens or 0
        row.cache_read_tokens += record.cache_read_tokens or 0
        row.cache_write_tokens += record.cache_write_tokens or 0
        row.output_tokens += record.output_tokens or 0
        row.reasoning_tokens += record.reasoning_tokens or 0
        row.cost_usd += record.cost_usd
    return dict(totals)


def _per_agent_and_model(records: Iterable[UsageRecord]) -> dict[tuple[str, ...], Totals]:
    totals: dict[tuple[str, ...], Totals] = defaultdict(Totals)
    for record in records:
        for part in record.by_model:
            assert record.agent is not None
            assert part.model is not None
            assert part.cost_usd is not None, part
            row = totals[(record.agent, part.model)]
            row.rounds += part.rounds
            row.input_tokens += part.input_tokens
            row.cache_read_tokens += part.cache_read_tokens
            row.cache_write_tokens += part.cache_write_tokens
            row.output_tokens += part.output_tokens
            row.reasoning_tokens += part.reasoning_tokens
            row.cost_usd += part.cost_usd
    return dict(totals)


def _table_lines(out: str) -> list[str]:
    """Return the table's lines from the header to the total row, without the notes."""
    lines = out.split("\n\n")[0].splitlines()
    last_rule = max(index for index, line in enumerate(lines) if set(line) == {"-"})
    return lines[: last_rule + 2]


def _run(sink: str | None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_demo(sink=sink, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_demo_jsonl_tokens_per_agent(tmp_path: Path) -> None:
    path = tmp_path / "usage.jsonl"

    code, _, err = _run(f"jsonl:{path}")

    assert code == EXIT_OK, err
    assert err == ""
    assert _per_agent(tokenmeter.read_jsonl(path)) == _expected(by_model=False)


def test_demo_jsonl_tokens_per_model(tmp_path: Path) -> None:
    path = tmp_path / "usage.jsonl"

    code, _, err = _run(f"jsonl:{path}")

    assert code == EXIT_OK, err
    assert _per_agent_and_model(tokenmeter.read_jsonl(path)) == _expected(by_model=True)


def test_demo_sqlite_tokens_per_agent(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"

    code, _, err = _run(f"sqlite:///{path}")

    assert code == EXIT_OK, err
    assert _per_agent(tokenmeter.read_sqlite(path)) == _expected(by_model=False)


def test_demo_fans_out_to_two_sinks(tmp_path: Path) -> None:
    jsonl = tmp_path / "usage.jsonl"
    sqlite = tmp_path / "usage.db"

    code, out, err = _run(f"jsonl:{jsonl}, sqlite:///{sqlite}")

    assert code == EXIT_OK, err
    from_jsonl = {record.id for record in tokenmeter.read_jsonl(jsonl)}
    from_sqlite = {record.id for record in tokenmeter.read_sqlite(sqlite)}
    assert from_jsonl == from_sqlite
    assert f"{len(from_jsonl)} records written to jsonl:{jsonl}, sqlite:///{sqlite}" in out


def test_demo_sink_defaults_to_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "from-env.jsonl"
    monkeypatch.setenv("TOKENMETER_SINK", f"jsonl:{path}")

    code, _, err = _run(None)

    assert code == EXIT_OK, err
    assert _per_agent(tokenmeter.read_jsonl(path)) == _expected(by_model=False)


def test_demo_each_agent_is_one_run(tmp_path: Path) -> None:
    path = tmp_path / "usage.jsonl"

    _run(f"jsonl:{path}")

    run_ids: dict[str | None, set[Any]] = defaultdict(set)
    for record in tokenmeter.read_jsonl(path):
        run_ids[record.agent].add(record.run_id)
    assert set(run_ids) == set(agent.AGENTS)
    for agent_name in agent.AGENTS:
        assert len(run_ids[agent_name]) == 1, agent_name
    assert len(set.union(*run_ids.values())) == len(agent.AGENTS)


def test_demo_tool_loop_meter_holds_its_rounds(tmp_path: Path) -> None:
    path = tmp_path / "usage.jsonl"

    _run(f"jsonl:{path}")

    meters = [
        record
        for record in tokenmeter.read_jsonl(path)
        if record.agent == agent.SUPPORT_BOT and record.model == "claude-haiku-4-5-20251001"
    ]
    assert len(meters) == 1
    assert meters[0].rounds == 2
    assert meters[0].input_tokens == 423 + 771
    assert meters[0].output_tokens == 202 + 77


def test_demo_records_are_ok_and_tagged(tmp_path: Path) -> None:
    path = tmp_path / "usage.jsonl"

    _run(f"jsonl:{path}")

    records = tokenmeter.read_jsonl(path)
    assert records
    for record in records:
        assert record.status == "ok", record
        assert "demo" in record.tags, record


def test_demo_table_rows_per_agent_and_model(tmp_path: Path) -> None:
    code, out, err = _run(f"jsonl:{tmp_path / 'usage.jsonl'}")

    assert code == EXIT_OK, err
    table = _table_lines(out)
    assert table[0].split()[:3] == ["agent", "model", "calls"]
    rows = [line.split() for line in table[2:-2]]
    expected = _expected(by_model=True)
    assert [(row[0], row[1]) for row in rows] == sorted(expected)
    for row in rows:
        totals = expected[(row[0], row[1])]
        assert row[2:8] == [
            str(totals.rounds),
            f"{totals.input_tokens:,}",
            f"{totals.cache_read_tokens:,}",
            f"{totals.cache_write_tokens:,}",
            f"{totals.output_tokens:,}",
            f"{totals.reasoning_tokens:,}",
        ]
        assert Decimal(row[8]) == totals.cost_usd


def test_demo_table_total_row(tmp_path: Path) -> None:
    _, out, _ = _run(f"jsonl:{tmp_path / 'usage.jsonl'}")

    total_row = _table_lines(out)[-1].split()
    expected = _expected(by_model=True).values()
    assert total_row[0] == "total"
    assert total_row[1] == str(sum(totals.rounds for totals in expected))
    assert Decimal(total_row[-1]) == sum((totals.cost_usd for totals in expected), Decimal(0))


def test_demo_table_columns_align(tmp_path: Path) -> None:
    _, out, _ = _run(f"jsonl:{tmp_path / 'usage.jsonl'}")

    table = _table_lines(out)
    assert len({len(line) for line in table}) == 1, table


def test_demo_table_notes_web_search(tmp_path: Path) -> None:
    _, out, _ = _run(f"jsonl:{tmp_path / 'usage.jsonl'}")

    notes = out.split("\n\n")[0].splitlines()[len(_table_lines(out)) :]
    assert notes == [
        "research-bot on gpt-5-2025-08-07: the cost includes web_searches=1, "
        "billed beside the tokens"
    ]


def test_demo_none_sink_stores_nothing() -> None:
    code, out, err = _run("none")

    assert code == EXIT_OK, err
    assert out.rstrip().endswith("records metered and not stored, because the sink is `none`")


def test_table_of_no_records_has_zero_total() -> None:
    lines = format_table([]).splitlines()

    assert lines[-1].split() == ["total", "0", "0", "0", "0", "0", "0", "0"]


def test_demo_connects_only_to_loopback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    connected: list[Any] = []
    looked_up: list[Any] = []
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def record_connect(sock: socket.socket, address: Any) -> None:
        connected.append(address)
        real_connect(sock, address)

    def record_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        looked_up.append(host)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", record_connect)
    monkeypatch.setattr(socket, "getaddrinfo", record_getaddrinfo)

    code, _, err = _run(f"jsonl:{tmp_path / 'usage.jsonl'}")

    assert code == EXIT_OK, err
    assert connected, "the agents made no connection at all"
    assert {address[0] for address in connected} == {"127.0.0.1"}
    assert set(looked_up) <= {"127.0.0.1"}


def test_demo_clients_use_loopback_base_url() -> None:
    with ReplayServer(agent.SCRIPTS) as server:
        with agent.anthropic_client(server.base_url, agent.SUPPORT_BOT) as claude:
            assert claude.base_url.host == "127.0.0.1"
        with agent.openai_client(server.base_url, agent.TRAVEL_BOT) as gpt:
            assert gpt.base_url.host == "127.0.0.1"
            assert gpt.base_url.path == "/v1/"
        grok = agent.async_openai_client(server.base_url, agent.RESEARCH_BOT)
        try:
            assert grok.base_url.host == "127.0.0.1"
            assert urlsplit(str(grok.base_url)).port == urlsplit(server.base_url).port
        finally:
            anyio.run(grok.close)


def test_demo_invalid_sink_exits_2(tmp_path: Path) -> None:
    code, out, err = _run("nosuchscheme:somewhere")

    assert code == EXIT_USAGE
    assert out == ""
    assert "nosuchscheme:somewhere" in err


def test_demo_agent_failure_exits_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "usage.jsonl"
    monkeypatch.setitem(agent.SCRIPTS, agent.TRAVEL_BOT, agent.SCRIPTS[agent.TRAVEL_BOT][:1])

    code, out, err = _run(f"jsonl:{path}")

    assert code == EXIT_FAILED
    assert "agent travel-bot failed: ConflictError" in err
    assert "no step left" in err
    records = tokenmeter.read_jsonl(path)
    statuses: dict[str | None, set[str]] = defaultdict(set)
    for record in records:
        statuses[record.agent].add(record.status)
    assert statuses[agent.SUPPORT_BOT] == {"ok"}
    assert statuses[agent.RESEARCH_BOT] == {"ok"}
    assert "error" in statuses[agent.TRAVEL_BOT]
    assert "travel-bot" in out


def test_demo_without_sdk_clients_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openai", None)
    monkeypatch.delitem(sys.modules, "tokenmeter.demo.agent")
    monkeypatch.delattr(tokenmeter.demo, "agent")

    code, out, err = _run("none")

    assert code == EXIT_USAGE
    assert out == ""
    assert "pip install 'tokenmeter[demo]'" in err


def test_collector_keeps_one_copy_per_id(tmp_path: Path) -> None:
    path = tmp_path / "usage.jsonl"
    _run(f"jsonl:{path}")
    records = tokenmeter.read_jsonl(path)
    collector = RecordCollector()

    anyio.run(collector.write, records)
    anyio.run(collector.write, records[:1])

    assert collector.records == records
