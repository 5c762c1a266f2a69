"""Usage for the pricing tests: a hypothesis strategy, and a converter to genai-prices' `Usage`."""

from __future__ import annotations

from genai_prices import Usage as GenaiUsage
from hypothesis import strategies as st

from tokenmeter import Usage

# Detail keys whose genai-prices name differs; the test keeps its own copy of the mapping.
ALIASES = {"web_search_requests": "web_searches", "file_search_calls": "storage_searches"}


def genai_usage(usage: Usage) -> GenaiUsage:
    """Return `usage` as genai-prices' `Usage`, built without tokenmeter's own mapping."""
    values: dict[str, int] = {
        "input_tokens": usage.input_tokens,
        "cache_read_tokens": usage.cache_read_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
        "output_tokens": usage.output_tokens,
        "output_reasoning_tokens": usage.reasoning_tokens,
    }
    for key, count in usage.details.items():
        genai_key = ALIASES.get(key, key)
        if genai_key != key and genai_key in usage.details:
            continue
        values[genai_key] = values.get(genai_key, 0) + count
    return GenaiUsage(**values)


@st.composite
def usages(draw: st.DrawFn, consistent: bool = True) -> Usage:
    """Draw usage whose parts fit in their totals, with the billable details a response has."""
    count = st.integers(min_value=0, max_value=400_000)
    small = st.integers(min_value=0, max_value=50_000)
    plain_input = draw(count)
    audio_input = draw(small)
    image_input = draw(small)
    cache_read_plain = draw(small)
    cache_read_audio = draw(st.integers(min_value=0, max_value=2000))
    write_5m = draw(small)
    write_1h = draw(small)
    text_output = draw(small)
    audio_output = draw(st.integers(min_value=0, max_value=5000))
    reasoning = draw(small)

    input_tokens = (
        plain_input
        + audio_input
        + image_input
        + cache_read_plain
        + cache_read_audio
        + write_5m
        + write_1h
    )
    details: dict[str, int] = {}
    optional = {
        "cache_write_1h_tokens": write_1h,
        "cache_write_5m_tokens": write_5m,
        "input_audio_tokens": audio_input + cache_read_audio,
        "cache_audio_read_tokens": cache_read_audio,
        "input_image_tokens": image_input,
        "output_audio_tokens": audio_output,
        "web_searches": draw(st.integers(min_value=0, max_value=20)),
        "web_search_requests": draw(st.integers(min_value=0, max_value=20)),
        "file_search_calls": draw(st.integers(min_value=0, max_value=5)),
        "code_executions": draw(st.integers(min_value=0, max_value=5)),
        "audio_seconds": draw(st.integers(min_value=0, max_value=600)),
        "input_audio_seconds": draw(st.integers(min_value=0, max_value=600)),
        "input_characters": draw(st.integers(min_value=0, max_value=10_000)),
    }
    for key, value in optional.items():
        if draw(st.booleans()):
            details[key] = value

    usage = Usage(
        input_tokens,
        text_output + audio_output + reasoning,
        cache_read_tokens=cache_read_plain + cache_read_audio,
        cache_write_tokens=write_5m + write_1h,
        reasoning_tokens=reasoning,
        details=details,
    )
    if consistent:
        return usage

    # Break one relation between a part and its total, as buggy extractors do.
    extra = draw(st.integers(min_value=1, max_value=10_000))
    field = draw(st.sampled_from(["cache_read_tokens", "cache_write_tokens", "reasoning_tokens"]))
    data = usage.as_dict()
    data[field] += extra
    return Usage(**data)
