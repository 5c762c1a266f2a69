"""metered_turn and meter(): what callers see, and the records their turns produce."""

from __future__ import annotations

import asyncio
import inspect
import threading
from decimal import Decimal
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import tokenmeter
from tokenmeter import AgentTurn, Usage, meter, metered_turn
from tokenmeter.testing import MemorySink

ANTHROPIC_CACHED = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [{"type": "text", "text": "done"}],
    "stop_reason": "end_turn",
    "usage": {
        "input_tokens": 40,
        "cache_creation_input_tokens": 2000,
        "cache_read_input_tokens": 9000,
        "output_tokens": 300,
    },
}

XAI_REASONING = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "grok-3-mini",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
    ],
    "usage": {
        "prompt_tokens": 200,
        "completion_tokens": 50,
        "completion_tokens_details": {"reasoning_tokens": 400},
    },
}


def openai_chat(prompt: int, completion: int, model: str = "gpt-4o") -> dict[str, Any]:
    return {
        "id": "chatcmpl-2",
        "object": "chat.completion",
        "model": model,
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


def records_of(sink: MemorySink) -> list[tokenmeter.UsageRecord]:
    assert tokenmeter.flush(timeout=10)
    return list(sink.records)


def test_decorator_returns_value_untouched(memory_sink: MemorySink) -> None:
    response = dict(ANTHROPIC_CACHED)

    @metered_turn
    def step() -> dict[str, Any]:
        return response

    assert step() is response


def test_decorator_records_anthropic_cache_trap(memory_sink: MemorySink) -> None:
    @metered_turn(agent="support")
    def step() -> dict[str, Any]:
        return ANTHROPIC_CACHED

    step()
    [record] = records_of(memory_sink)

    assert record.agent == "support"
    assert record.model == "claude-sonnet-4-5"
    assert record.provider == "anthropic"
    assert record.input_tokens == 11040
    assert record.cache_write_tokens == 2000
    assert record.cache_read_tokens == 9000
    assert record.output_tokens == 300
    assert record.cost_usd == Decimal("0.01482")
    assert record.status == "ok"
    assert record.rounds == 1


def test_decorator_records_xai_reasoning_trap(memory_sink: MemorySink) -> None:
    @metered_turn(provider="xai")
    def step() -> dict[str, Any]:
        return XAI_REASONING

    step()
    [record] = records_of(memory_sink)

    assert record.output_tokens == 450
    assert record.reasoning_tokens == 400
    assert record.cost_usd == Decimal("0.000285")


def test_decorator_reraises_same_exception(memory_sink: MemorySink) -> None:
    error = RuntimeError("tool failed")

    @metered_turn(agent="bot")
    def step() -> None:
        raise error

    with pytest.raises(RuntimeError) as caught:
        step()

    assert caught.value is error
    [record] = records_of(memory_sink)
    assert record.status == "error"
    assert record.error_type == "RuntimeError"
    assert record.input_tokens is None
    assert record.cost_usd is None


async def test_async_decorator_keeps_coroutine_function(memory_sink: MemorySink) -> None:
    @metered_turn(agent="bot")
    async def step(x: int) -> AgentTurn[int]:
        """Doc."""
        return AgentTurn(x * 2, usage=Usage(7, 0), model="gpt-4o", provider="openai")

    assert inspect.iscoroutinefunction(step)
    assert step.__name__ == "step"
    assert step.__doc__ == "Doc."
    assert list(inspect.signature(step).parameters) == ["x"]

    turn = await step(21)

    assert turn.output == 42
    [record] = records_of(memory_sink)
    assert record.input_tokens == 7
    assert record.cost_usd == Decimal("0.0000175")


def test_decorator_keeps_sync_signature() -> None:
    def step(a: int, *, b: str = "x") -> str:
        return b * a

    wrapped = metered_turn(agent="x")(step)

    assert inspect.signature(wrapped) == inspect.signature(step)
    assert not inspect.iscoroutinefunction(wrapped)
    assert wrapped.__wrapped__ is step  # type: ignore[attr-defined]


def test_decorator_rejects_non_callable() -> None:
    with pytest.raises(TypeError, match="metered_turn decorates functions"):
        metered_turn(42)  # type: ignore[call-overload]


def test_agent_turn_without_usage_is_unmeasured(memory_sink: MemorySink) -> None:
    @metered_turn
    def step() -> AgentTurn[str]:
        return AgentTurn("no call made")

    step()
    [record] = records_of(memory_sink)

    assert record.rounds == 0
    assert record.input_tokens is None
    assert record.price_status == "unmeasured"


def test_usage_null_is_unknown_not_zero(memory_sink: MemorySink) -> None:
    @metered_turn(provider="openai")
    def step() -> dict[str, Any]:
        return {
            "id": "resp_1",
            "object": "response",
            "status": "queued",
            "model": "gpt-4o",
            "usage": None,
        }

    step()
    [record] = records_of(memory_sink)

    assert record.rounds == 1
    assert record.unmeasured_rounds == 1
    assert record.input_tokens is None
    assert record.cost_usd is None


def test_unknown_shape_warns_and_records(
    memory_sink: MemorySink, caplog: pytest.LogCaptureFixture
) -> None:
    class Weird:
        pass

    @metered_turn(agent="bot")
    def step() -> Weird:
        return Weird()

    result = step()

    assert isinstance(result, Weird)
    [record] = records_of(memory_sink)
    assert record.unmeasured_rounds == 1
    assert "Weird" in caplog.text


def test_negative_usage_warns_and_records(
    memory_sink: MemorySink, caplog: pytest.LogCaptureFixture
) -> None:
    @metered_turn(provider="openai")
    def step() -> dict[str, Any]:
        return openai_chat(-5, 3)

    step()
    [record] = records_of(memory_sink)

    assert record.unmeasured_rounds == 1
    assert "unmeasured" in caplog.text


def test_meter_sums_rounds(memory_sink: MemorySink) -> None:
    with meter(agent="trader") as m:
        m.add(openai_chat(1000, 100))
        m.add(openai_chat(2000, 200))
        assert m.usage == Usage(3000, 300)
        running = m.cost
    [record] = records_of(memory_sink)

    assert record.rounds == 2
    assert record.input_tokens == 3000
    assert record.output_tokens == 300
    # gpt-4o: $2.50 per million input tokens, $10 per million output tokens.
    assert record.cost_usd == Decimal("0.0105")
    assert running is not None
    assert running.total_usd == Decimal("0.0105")


def test_meter_prices_each_round_below_tier(memory_sink: MemorySink) -> None:
    with meter(agent="long-context", model="claude-sonnet-4-5", provider="anthropic") as m:
        m.add(Usage(120_000, 0))
        m.add(Usage(120_000, 0))
    [record] = records_of(memory_sink)

    assert record.cost_usd == Decimal("0.72")


def test_meter_prices_each_model(memory_sink: MemorySink) -> None:
    with meter(agent="router") as m:
        m.add(Usage(100_000, 0), model="gpt-4o", provider="openai")
        m.add(Usage(100_000, 0), model="claude-sonnet-4-5", provider="anthropic")
    [record] = records_of(memory_sink)

    # $2.50 and $3 per million input tokens.
    assert record.cost_usd == Decimal("0.55")
    assert {(m.model, m.cost_usd) for m in record.by_model} == {
        ("gpt-4o", Decimal("0.25")),
        ("claude-sonnet-4-5", Decimal("0.3")),
    }


def test_meter_error_status_and_reraise(memory_sink: MemorySink) -> None:
    def run() -> None:
        with meter(agent="bot") as m:
            m.add(openai_chat(10, 1))
            raise KeyError("boom")

    with pytest.raises(KeyError):
        run()
    [record] = records_of(memory_sink)

    assert record.status == "error"
    assert record.error_type == "KeyError"
    assert record.input_tokens == 10


def test_unknown_model_is_unpriced(memory_sink: MemorySink) -> None:
    with meter(agent="bot", model="acme-internal-7b") as m:
        m.add(Usage(100, 10))
    [record] = records_of(memory_sink)

    assert record.input_tokens == 100
    assert record.cost_usd is None
    assert record.price_status == "unpriced"


def test_nested_records_never_double_count(memory_sink: MemorySink) -> None:
    @metered_turn(agent="bot")
    def step(tokens: int) -> AgentTurn[None]:
        return AgentTurn(None, usage=Usage(tokens, 1), model="gpt-4o", provider="openai")

    with meter(agent="bot") as outer:
        step(100)
        outer.add(Usage(5, 0), model="gpt-4o", provider="openai")
        with meter(agent="bot") as inner:
            step(10)
        assert outer.usage.input_tokens == 115
        assert inner.usage.input_tokens == 10
    records = records_of(memory_sink)

    assert len(records) == 4
    assert sum(r.input_tokens or 0 for r in records) == 115
    assert len({r.run_id for r in records}) == 1
    outer_record = next(r for r in records if r.parent_id is None)
    assert outer_record.input_tokens == 5
    assert all(r.parent_id is not None for r in records if r is not outer_record)


def test_separate_turns_get_separate_runs(memory_sink: MemorySink) -> None:
    @metered_turn
    def step() -> AgentTurn[None]:
        return AgentTurn(None, usage=Usage(1, 1))

    step()
    step()
    first, second = records_of(memory_sink)

    assert first.run_id != second.run_id
    assert first.id != second.id


async def test_async_meter_under_anyio(memory_sink: MemorySink, anyio_backend: str) -> None:
    async with meter(agent="async-bot", model="gpt-4o") as m:
        await anyio.lowlevel.checkpoint()
        m.add(Usage(7, 0))
    assert await tokenmeter.aflush(timeout=10)
    [record] = memory_sink.records

    assert record.cost_usd == Decimal("0.0000175")


@pytest.mark.anyio
async def test_trio_and_asyncio_steps(memory_sink: MemorySink, anyio_backend: str) -> None:
    @metered_turn(agent="any", model="gpt-4o")
    async def step() -> Usage:
        await anyio.lowlevel.checkpoint()
        return Usage(7, 0)

    async with anyio.create_task_group() as tasks:
        for _ in range(20):
            tasks.start_soon(step)
    assert await tokenmeter.aflush(timeout=10)

    assert len(memory_sink.records) == 20
    assert all(r.cost_usd == Decimal("0.0000175") for r in memory_sink.records)


test_async_meter_under_anyio = pytest.mark.anyio(test_async_meter_under_anyio)
test_async_decorator_keeps_coroutine_function = pytest.mark.anyio(
    test_async_decorator_keeps_coroutine_function
)


def test_threads_meter_concurrently(memory_sink: MemorySink) -> None:
    @metered_turn(agent="threaded", model="gpt-4o")
    def step() -> Usage:
        return Usage(7, 0)

    def worker() -> None:
        for _ in range(250):
            step()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    records = records_of(memory_sink)

    assert len(records) == 2000
    assert len({r.id for r in records}) == 2000


def test_closed_event_loop_loses_nothing(memory_sink: MemorySink) -> None:
    @metered_turn(agent="loop", model="gpt-4o")
    async def step() -> Usage:
        return Usage(7, 0)

    for _ in range(3):
        asyncio.run(step())
    records = records_of(memory_sink)

    assert len(records) == 3


def test_generator_step_records_when_finished(memory_sink: MemorySink) -> None:
    @metered_turn(agent="gen", model="gpt-4o")
    def step() -> Any:
        received = yield AgentTurn("first", usage=Usage(7, 0))
        yield received
        return "done"

    generator = step()
    assert next(generator).output == "first"
    assert generator.send("echo") == "echo"
    with pytest.raises(StopIteration) as stop:
        next(generator)
    assert stop.value.value == "done"

    [record] = records_of(memory_sink)
    assert record.status == "ok"
    assert record.input_tokens == 7


def test_generator_closed_early_is_incomplete(memory_sink: MemorySink) -> None:
    @metered_turn(agent="gen", model="gpt-4o")
    def step() -> Any:
        yield AgentTurn(1, usage=Usage(7, 0))
        yield AgentTurn(2, usage=Usage(7, 0))

    generator = step()
    next(generator)
    generator.close()

    [record] = records_of(memory_sink)
    assert record.status == "incomplete"
    assert record.input_tokens == 7


@pytest.mark.anyio
async def test_async_generator_step(memory_sink: MemorySink, anyio_backend: str) -> None:
    @metered_turn(agent="agen", model="gpt-4o")
    async def step() -> Any:
        sent = yield AgentTurn("a", usage=Usage(7, 0))
        yield sent

    assert inspect.isasyncgenfunction(step)
    generator = step()
    first = await generator.__anext__()
    assert first.output == "a"
    assert await generator.asend("b") == "b"
    with pytest.raises(StopAsyncIteration):
        await generator.__anext__()
    assert await tokenmeter.aflush(timeout=10)

    [record] = memory_sink.records
    assert record.status == "ok"
    assert record.input_tokens == 7


def test_meter_reentry_is_rejected() -> None:
    m = meter(agent="x")
    with m:
        pass
    with pytest.raises(RuntimeError, match="already entered"), m:
        pass


def test_tags_and_metadata_are_recorded(memory_sink: MemorySink) -> None:
    with meter(agent="bot", tags={"env": "prod"}, metadata={"ticket": 12}) as m:
        m.add(Usage(1, 1), model="gpt-4o")
    [record] = records_of(memory_sink)

    assert record.tags == ["env:prod"]
    assert record.metadata == {"ticket": 12}


def test_provider_alias_becomes_id(memory_sink: MemorySink) -> None:
    @metered_turn(provider="x-ai")
    def step() -> dict[str, Any]:
        return XAI_REASONING

    with meter(agent="alias", provider="claude") as m:
        m.add(Usage(7, 0), model="gpt-4o", provider="OpenAI")
    step()
    meter_record, step_record = records_of(memory_sink)

    assert meter_record.provider == "openai"
    assert step_record.provider == "xai"
    assert step_record.cost_usd == Decimal("0.000285")


def test_unknown_provider_logs_and_detects(
    memory_sink: MemorySink, caplog: pytest.LogCaptureFixture
) -> None:
    @metered_turn(provider="acme-cloud")
    def step() -> dict[str, Any]:
        return ANTHROPIC_CACHED

    step()
    [record] = records_of(memory_sink)

    assert "acme-cloud" in caplog.text
    assert record.provider == "anthropic"
    assert record.input_tokens == 11040


def test_generator_throw_reaches_step(memory_sink: MemorySink) -> None:
    @metered_turn(agent="gen", model="gpt-4o")
    def step() -> Any:
        try:
            yield AgentTurn(1, usage=Usage(7, 0))
        except ValueError:
            yield "recovered"

    generator = step()
    next(generator)

    assert generator.throw(ValueError("retry")) == "recovered"
    generator.close()
    [record] = records_of(memory_sink)
    assert record.status == "incomplete"
    assert record.input_tokens == 7


def test_yield_from_gets_return_value(memory_sink: MemorySink) -> None:
    @metered_turn(agent="gen", model="gpt-4o")
    def step() -> Any:
        yield AgentTurn(1, usage=Usage(7, 0))
        return AgentTurn("final", usage=Usage(3, 0))

    def outer() -> Any:
        result = yield from step()
        return result

    generator = outer()
    next(generator)
    with pytest.raises(StopIteration) as stop:
        next(generator)

    assert stop.value.value.output == "final"
    [record] = records_of(memory_sink)
    assert record.input_tokens == 10
    assert record.rounds == 2


@pytest.mark.anyio
async def test_async_generator_athrow_and_aclose(
    memory_sink: MemorySink, anyio_backend: str
) -> None:
    @metered_turn(agent="agen", model="gpt-4o")
    async def step() -> Any:
        try:
            yield AgentTurn(1, usage=Usage(7, 0))
        except KeyError:
            yield "caught"
        yield "unreached"

    generator = step()
    await generator.__anext__()

    assert await generator.athrow(KeyError("k")) == "caught"
    await generator.aclose()
    assert await tokenmeter.aflush(timeout=10)
    [record] = memory_sink.records
    assert record.status == "incomplete"
    assert record.input_tokens == 7


@pytest.mark.anyio
async def test_async_generator_error_recorded(memory_sink: MemorySink, anyio_backend: str) -> None:
    @metered_turn(agent="agen", model="gpt-4o")
    async def step() -> Any:
        yield AgentTurn(1, usage=Usage(7, 0))
        raise RuntimeError("tool broke")

    with pytest.raises(RuntimeError, match="tool broke"):
        async for _ in step():
            pass
    assert await tokenmeter.aflush(timeout=10)

    [record] = memory_sink.records
    assert record.status == "error"
    assert record.error_type == "RuntimeError"
    assert record.input_tokens == 7


def test_raising_attributes_never_reach_caller(memory_sink: MemorySink) -> None:
    class Hostile:
        def __getattribute__(self, name: str) -> Any:
            raise RuntimeError(f"no {name}")

    hostile = Hostile()

    @metered_turn(agent="bot")
    def step() -> Hostile:
        return hostile

    assert step() is hostile
    [record] = records_of(memory_sink)
    assert record.unmeasured_rounds == 1


def test_oversized_count_is_unmeasured(memory_sink: MemorySink) -> None:
    @metered_turn(provider="openai")
    def step() -> dict[str, Any]:
        return openai_chat(10**30, 1)

    step()
    [record] = records_of(memory_sink)

    assert record.unmeasured_rounds == 1
    assert record.input_tokens is None


async def test_async_callable_object_is_awaited(memory_sink: MemorySink) -> None:
    class Agent:
        async def __call__(self) -> Usage:
            return Usage(7, 0)

    wrapped = metered_turn(agent="callable", model="gpt-4o")(Agent())

    assert inspect.iscoroutinefunction(wrapped)
    assert await wrapped() == Usage(7, 0)
    assert await tokenmeter.aflush(timeout=10)
    [record] = memory_sink.records
    assert record.input_tokens == 7


test_async_callable_object_is_awaited = pytest.mark.anyio(test_async_callable_object_is_awaited)


def test_bad_option_types_are_recorded_as_text(memory_sink: MemorySink) -> None:
    class Opaque:
        def __str__(self) -> str:
            return "opaque"

    with meter(agent=123, tags=5, metadata={"obj": Opaque()}) as m:  # type: ignore[arg-type]
        m.add(Usage(1, 1), model="gpt-4o")
    [record] = records_of(memory_sink)

    assert record.agent == "123"
    assert record.tags == []
    assert record.metadata == {"obj": "opaque"}


def test_add_before_enter_is_own_turn(memory_sink: MemorySink) -> None:
    m = meter(agent="early", model="gpt-4o")

    m.add(Usage(7, 0))
    [record] = records_of(memory_sink)

    assert record.input_tokens == 7
