"""The wrapper's own contract: context managers, delegation, and which results are streams."""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType
from typing import Any

import anthropic
import openai
import pytest
from stream_support import SSEServer, load, only_record, records_of, sse_frames

from tokenmeter import metered_stream, metered_turn
from tokenmeter.streams import MeteredStream, is_stream
from tokenmeter.testing import MemorySink

EVENTS = load("anthropic_stream_basic.json")


class Opened:
    """A stream that a manager opens; its own `__exit__` must not run in place of the manager's."""

    def __init__(self) -> None:
        self.closed = False

    def __iter__(self) -> Iterator[Any]:
        return iter(EVENTS)

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> Opened:
        return self

    def __exit__(self, *exc_info: object) -> None:
        raise AssertionError("the manager that opened the stream exits it")


class Manager:
    """A stream manager like anthropic's `messages.stream(...)`: `__enter__` opens the stream."""

    def __init__(self, *, suppress: bool = False) -> None:
        self.suppress = suppress
        self.stream = Opened()
        self.exit_args: tuple[Any, ...] | None = None

    def __enter__(self) -> Opened:
        return self.stream

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        self.exit_args = (exc_type, exc)
        self.stream.close()
        return self.suppress


def test_manager_exit_called_once(memory_sink: MemorySink) -> None:
    manager = Manager()

    with metered_stream(manager, provider="anthropic") as stream:
        events = list(stream)

    assert events == EVENTS
    assert manager.exit_args == (None, None)
    assert manager.stream.closed
    assert only_record(records_of(memory_sink)).status == "ok"


def test_manager_suppressing_exit_honored(memory_sink: MemorySink) -> None:
    manager = Manager(suppress=True)
    error = RuntimeError("handled by the manager")

    with metered_stream(manager, provider="anthropic") as stream:
        next(stream)
        raise error

    assert manager.exit_args == (RuntimeError, error)
    record = only_record(records_of(memory_sink))
    assert record.status == "error"
    assert record.error_type == "RuntimeError"


def test_plain_iterable_wrapped(memory_sink: MemorySink) -> None:
    metered = list(metered_stream(EVENTS, provider="anthropic"))

    assert metered == EVENTS
    record = only_record(records_of(memory_sink))
    assert record.input_tokens == 20
    assert record.output_tokens == 5


def test_with_block_on_plain_generator_closes_it(memory_sink: MemorySink) -> None:
    finished: list[str] = []

    def events() -> Iterator[Any]:
        try:
            yield from EVENTS
        finally:
            finished.append("closed")

    with metered_stream(events(), provider="anthropic") as stream:
        next(stream)

    assert finished == ["closed"]
    assert only_record(records_of(memory_sink)).status == "incomplete"


def test_unknown_attribute_raises_attribute_error(memory_sink: MemorySink) -> None:
    stream = metered_stream(iter(EVENTS), provider="anthropic")

    with pytest.raises(AttributeError):
        _ = stream.no_such_attribute
    stream.close()


def test_repr_names_wrapped_stream(memory_sink: MemorySink) -> None:
    inner = iter(EVENTS)
    stream = metered_stream(inner, provider="anthropic")

    assert repr(stream) == f"<tokenmeter.MeteredStream of {inner!r}>"
    stream.close()


def test_sdk_stream_classes_detected(
    sse_server: SSEServer, openai_client: openai.OpenAI, anthropic_client: anthropic.Anthropic
) -> None:
    sse_server.reply(sse_frames(load("openai_edge_chat_stream_no_usage.json"), named=False))
    request: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [], "stream": True}

    raw = openai_client.chat.completions.create(**request)
    managers = [
        anthropic_client.messages.stream(model="claude", max_tokens=1, messages=[]),
        openai_client.chat.completions.stream(model="gpt-4o-mini", messages=[]),
        openai_client.responses.stream(model="gpt-5", input="hi"),
    ]

    assert is_stream(raw)
    for manager in managers:
        assert is_stream(manager), type(manager)
    assert not is_stream({"choices": []})
    assert not is_stream([1, 2])
    raw.close()


def test_step_returning_wrapper_counts_round_once(memory_sink: MemorySink) -> None:
    @metered_turn(name="step")
    def step() -> Any:
        return metered_stream(iter(EVENTS), provider="anthropic", name="stream")

    stream = step()
    for _ in stream:
        pass

    records = {record.name: record for record in records_of(memory_sink)}
    assert len(records) == 2
    assert type(stream) is MeteredStream
    assert records["step"].rounds == 0
    assert records["step"].status == "ok"
    assert records["stream"].rounds == 1
    assert records["stream"].input_tokens == 20
    assert records["stream"].parent_id == records["step"].id
    assert records["stream"].run_id == records["step"].run_id


def test_coroutine_rejected_with_hint(memory_sink: MemorySink) -> None:
    async def create() -> list[Any]:
        return EVENTS

    coroutine = create()
    try:
        with pytest.raises(TypeError, match=r"await it first"):
            metered_stream(coroutine)
    finally:
        coroutine.close()

    assert records_of(memory_sink) == []


def test_non_stream_rejected(memory_sink: MemorySink) -> None:
    with pytest.raises(TypeError, match=r"invalid stream for metered_stream: 42 \(int\)"):
        metered_stream(42)

    assert records_of(memory_sink) == []
