"""Caller-side cost of `@metered_turn` against a bare step and an OpenTelemetry span.

All three variants run in one process, interleaved, so the machine's noise hits them alike.
The end-to-end figure adds the delivery thread's work (record building, pricing, a sink that
discards), measured as wall time from the first call to `flush()` returning.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time

from openai.types.chat import ChatCompletion
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

import tokenmeter
from tokenmeter import metered_turn

from ._timing import amedian_per_call_ns

RESPONSE = ChatCompletion.model_validate(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-2024-08-06",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": "ok"},
            }
        ],
        "usage": {
            "prompt_tokens": 1200,
            "completion_tokens": 80,
            "total_tokens": 1280,
            "prompt_tokens_details": {"cached_tokens": 1024},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    }
)


class DiscardingExporter(SpanExporter):
    def export(self, spans: object) -> SpanExportResult:
        return SpanExportResult.SUCCESS


async def bare_step() -> ChatCompletion:
    return RESPONSE


@metered_turn(agent="bench")
async def metered_step() -> ChatCompletion:
    return RESPONSE


def make_otel_step() -> object:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(DiscardingExporter()))
    tracer = provider.get_tracer("bench")

    async def otel_step() -> ChatCompletion:
        with tracer.start_as_current_span("step"):
            return RESPONSE

    return otel_step


async def measure(calls: int, repeats: int) -> dict[str, float]:
    otel_step = make_otel_step()

    def loop(step: object) -> object:
        async def run(n: int) -> None:
            for _ in range(n):
                await step()  # type: ignore[operator]

        return run

    samples: dict[str, list[float]] = {"bare": [], "metered": [], "otel": []}
    for _ in range(repeats):
        # Interleave the variants so a noisy moment hits each of them.
        samples["bare"].append(await amedian_per_call_ns(loop(bare_step), calls, 3))
        samples["metered"].append(
            await amedian_per_call_ns(loop(metered_step), calls, 3, between=tokenmeter.flush)
        )
        samples["otel"].append(await amedian_per_call_ns(loop(otel_step), calls, 3))
        tokenmeter.flush()
    return {name: statistics.median(values) for name, values in samples.items()}


def end_to_end(turns: int, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        loop = asyncio.new_event_loop()
        start = time.perf_counter_ns()

        async def run() -> None:
            for _ in range(turns):
                await metered_step()

        loop.run_until_complete(run())
        loop.close()
        assert tokenmeter.flush(timeout=120)
        samples.append((time.perf_counter_ns() - start) / turns)
    return statistics.median(samples)


def main() -> None:
    with tempfile.TemporaryDirectory() as spool:
        # Caller time: the delivery thread stays idle during the timed loops (no batch fills,
        # no timer fires) and catches up in flush() between them, as it does between an
        # agent's LLM calls, which take seconds.
        tokenmeter.configure(
            sink="none", spool_dir=spool, batch_size=10**9, flush_interval_s=3600, max_queue=10**9
        )
        results = asyncio.run(measure(calls=20_000, repeats=9))
        # End to end: default batching, the delivery thread working alongside the caller.
        tokenmeter.configure(sink="none", spool_dir=spool)
        e2e = end_to_end(turns=50_000, repeats=5)
        stats = tokenmeter.stats()
        tokenmeter.shutdown()

    added = results["metered"] - results["bare"]
    otel_added = results["otel"] - results["bare"]
    print(f"bare async step            {results['bare'] / 1000:8.3f} µs/call")
    print(
        f"@metered_turn step         {results['metered'] / 1000:8.3f} µs/call  "
        f"(+{added / 1000:.3f} µs)"
    )
    print(
        f"OpenTelemetry span step    {results['otel'] / 1000:8.3f} µs/call  "
        f"(+{otel_added / 1000:.3f} µs)"
    )
    print(f"metered / OTel added cost  {added / otel_added:8.2f}x")
    print(
        f"end to end per turn        {e2e / 1000:8.3f} µs (caller + delivery to a discarding sink)"
    )
    print(f"records delivered          {stats.delivered}")
