"""Provider quirks that a naive reader gets wrong, one test each."""

from __future__ import annotations

from typing import Any

import pytest
from extract_payloads import load

from tokenmeter.extract import extract_usage, read_response
from tokenmeter.usage import Usage


def test_anthropic_input_adds_cache_reads_and_writes() -> None:
    usage = extract_usage(
        {
            "input_tokens": 40,
            "cache_creation_input_tokens": 2000,
            "cache_read_input_tokens": 9000,
            "output_tokens": 300,
        }
    )

    assert usage == Usage(11040, 300, cache_read_tokens=9000, cache_write_tokens=2000)


def test_anthropic_cache_write_split_by_lifetime() -> None:
    usage = extract_usage(
        {
            "input_tokens": 5,
            "cache_creation_input_tokens": 300,
            "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200},
            "output_tokens": 7,
        }
    )

    assert usage is not None
    assert usage.cache_write_tokens == 300
    assert usage.input_tokens == 305
    assert usage.details == {"cache_write_5m_tokens": 100, "cache_write_1h_tokens": 200}


def test_xai_reasoning_added_to_completion_with_provider() -> None:
    usage = extract_usage(
        {
            "prompt_tokens": 200,
            "completion_tokens": 50,
            "completion_tokens_details": {"reasoning_tokens": 400},
        },
        provider="xai",
    )

    assert usage == Usage(200, 450, reasoning_tokens=400)


def test_xai_detected_from_grok_model_name() -> None:
    response = {
        "model": "grok-3-mini",
        "choices": [],
        "usage": {
            "prompt_tokens": 200,
            "completion_tokens": 500,
            "completion_tokens_details": {"reasoning_tokens": 400},
        },
    }

    reading = read_response(response)

    assert reading.provider == "xai"
    assert reading.usage == Usage(200, 900, reasoning_tokens=400)


def test_reasoning_outside_completion_detected_from_total() -> None:
    usage = extract_usage(
        {
            "prompt_tokens": 10,
            "completion_tokens": 50,
            "total_tokens": 100,
            "completion_tokens_details": {"reasoning_tokens": 40},
        }
    )

    assert usage == Usage(10, 90, reasoning_tokens=40)


def test_reasoning_inside_completion_when_total_says_so() -> None:
    usage = extract_usage(
        {
            "prompt_tokens": 10,
            "completion_tokens": 50,
            "total_tokens": 60,
            "completion_tokens_details": {"reasoning_tokens": 40},
        },
        provider="xai",
    )

    assert usage == Usage(10, 50, reasoning_tokens=40)


def test_openai_reasoning_stays_inside_completion() -> None:
    usage = extract_usage(load("openai_chat_reasoning_o3_mini.json"))

    assert usage is not None
    assert usage.output_tokens == 2320
    assert usage.reasoning_tokens == 1792


def test_xai_responses_additive_form_read_from_total() -> None:
    usage = extract_usage(load("xai_responses_docs_additive.json"))

    assert usage is not None
    assert usage.output_tokens == 9 + 110


def test_xai_responses_inclusive_form_read_from_total() -> None:
    response = {
        "object": "response",
        "model": "grok-4.3",
        "output": [],
        "usage": {
            "input_tokens": 35422,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 1166,
            "output_tokens_details": {"reasoning_tokens": 900},
            "total_tokens": 36588,
        },
    }

    usage = extract_usage(response)

    assert usage is not None
    assert usage.output_tokens == 1166
    assert usage.reasoning_tokens == 900


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(load("openai_error_400.json"), id="openai"),
        pytest.param(load("anthropic_error_overloaded.json"), id="anthropic"),
        pytest.param(load("gemini_error_400.json"), id="gemini"),
    ],
)
def test_error_body_reads_no_usage(body: dict[str, Any]) -> None:
    reading = read_response(body)

    assert reading.usage is None


@pytest.mark.parametrize(
    "response",
    [
        pytest.param({"object": "chat.completion", "choices": [], "usage": None}, id="chat"),
        pytest.param(load("openai_edge_responses_background_usage_null.json"), id="responses"),
        pytest.param({"type": "message", "content": [], "usage": None}, id="anthropic"),
        pytest.param({"candidates": [], "usageMetadata": None}, id="gemini"),
    ],
)
def test_null_usage_reads_none(response: dict[str, Any]) -> None:
    assert read_response(response).usage is None


def test_anthropic_count_tokens_result_is_not_usage() -> None:
    assert read_response({"input_tokens": 1114}).usage is None


def test_openai_input_token_count_is_not_usage() -> None:
    assert read_response({"object": "response.input_tokens", "input_tokens": 12}).usage is None


def test_anthropic_count_tokens_sdk_object_is_not_usage() -> None:
    anthropic_types = pytest.importorskip("anthropic.types")

    count = anthropic_types.MessageTokensCount(input_tokens=1114)

    assert read_response(count).usage is None


def test_anthropic_web_search_requests_in_details() -> None:
    usage = extract_usage(load("anthropic_web_search_pause_turn.json"))

    assert usage is not None
    assert usage.details["web_searches"] == 10


def test_anthropic_web_fetch_requests_in_details() -> None:
    usage = extract_usage(load("anthropic_web_fetch.json"))

    assert usage is not None
    assert usage.details["web_fetch_requests"] == 1


def test_anthropic_advisor_iteration_kept_apart() -> None:
    usage = extract_usage(load("anthropic_advisor_iterations.json"))

    assert usage is not None
    assert usage.input_tokens == 2390
    assert usage.output_tokens == 121
    assert usage.details["advisor_input_tokens"] == 2518
    assert usage.details["advisor_output_tokens"] == 22


def test_anthropic_compaction_iteration_added_to_totals() -> None:
    usage_dict = {
        "input_tokens": 100,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 0,
        "output_tokens": 20,
        "iterations": [
            {
                "type": "compaction",
                "input_tokens": 3000,
                "cache_creation_input_tokens": 55000,
                "cache_read_input_tokens": 0,
                "output_tokens": 800,
            },
            {
                "type": "message",
                "input_tokens": 100,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 20,
            },
        ],
    }

    usage = extract_usage({"type": "message", "content": [], "usage": usage_dict})

    assert usage == Usage(58100, 820, cache_write_tokens=55000)


def test_gemini_tool_use_prompt_added_to_input() -> None:
    usage = extract_usage(load("gemini_google_search_grounding.json"))

    assert usage is not None
    assert usage.input_tokens == 17 + 119
    assert usage.details["input_tool_tokens"] == 119


def test_gemini_thoughts_added_to_candidates() -> None:
    usage = extract_usage(load("gemini_thinking_2_5_flash.json"))

    assert usage is not None
    assert usage.output_tokens == 9 + 34
    assert usage.reasoning_tokens == 34


def test_gemini_missing_candidates_count_reads_zero_output() -> None:
    response = {"candidates": [], "usageMetadata": {"promptTokenCount": 12, "totalTokenCount": 12}}

    assert extract_usage(response) == Usage(12, 0)


def test_gemini_modality_tokens_in_details() -> None:
    usage = extract_usage(load("gemini_implicit_cache_video.json"))

    assert usage is not None
    assert usage.details["input_video_tokens"] == 15780
    assert usage.details["input_audio_tokens"] == 1917
    assert usage.details["cache_audio_read_tokens"] == 1881


def test_bedrock_duplicate_cache_counts_read_once() -> None:
    usage = extract_usage(load("bedrock_converse_cache_read.json"))

    assert usage is not None
    assert usage.cache_read_tokens == 1322
    assert usage.input_tokens == 2 + 1322


def test_bedrock_cache_details_split_by_ttl() -> None:
    usage = extract_usage(
        {
            "usage": {
                "inputTokens": 3,
                "outputTokens": 9,
                "cacheWriteInputTokens": 500,
                "cacheDetails": [{"inputTokens": 500, "ttl": "1h"}],
            },
            "stopReason": "end_turn",
        }
    )

    assert usage is not None
    assert usage.details == {"cache_write_1h_tokens": 500}
    assert usage.input_tokens == 503


def test_bedrock_invoke_model_headers_read() -> None:
    response = {
        "body": object(),
        "contentType": "application/json",
        "ResponseMetadata": {
            "HTTPStatusCode": 200,
            "HTTPHeaders": {
                "x-amzn-bedrock-input-token-count": "21",
                "x-amzn-bedrock-output-token-count": "69",
            },
        },
    }

    reading = read_response(response)

    assert reading.usage == Usage(21, 69)
    assert reading.provider == "bedrock"


def test_bedrock_invoke_model_anthropic_body_with_provider() -> None:
    reading = read_response(load("anthropic_cache_read.json"), provider="aws.bedrock")

    assert reading.provider == "bedrock"
    assert reading.usage is not None
    assert reading.usage.input_tokens == 1114


def test_cohere_bills_from_billed_units() -> None:
    usage = extract_usage(load("cohere_v2_chat_reasoning.json"))

    assert usage == Usage(431, 661)


def test_cohere_v1_meta_billed_units_read() -> None:
    response = {"text": "hi", "meta": {"billed_units": {"input_tokens": 12, "output_tokens": 3}}}

    assert extract_usage(response) == Usage(12, 3)


def test_groq_usage_breakdown_not_added() -> None:
    usage = extract_usage(load("groq_compound_usage_breakdown.json"))

    assert usage is not None
    assert usage.input_tokens == 5296
    assert usage.output_tokens == 387


def test_deepseek_cache_hits_read_without_details() -> None:
    usage = extract_usage(
        {
            "model": "deepseek-chat",
            "choices": [],
            "usage": {
                "prompt_tokens": 563,
                "completion_tokens": 10,
                "prompt_cache_hit_tokens": 512,
                "prompt_cache_miss_tokens": 51,
            },
        }
    )

    assert usage is not None
    assert usage.cache_read_tokens == 512


def test_mistral_top_level_cached_tokens_read() -> None:
    usage = extract_usage(load("mistral_chat_num_cached_tokens.json"))

    assert usage is not None
    assert usage.cache_read_tokens == 32


def test_openai_audio_tokens_in_details() -> None:
    usage = extract_usage(load("openai_chat_audio_input.json"))

    assert usage is not None
    assert usage.details == {"input_audio_tokens": 44}


def test_openai_responses_tool_calls_counted() -> None:
    web = extract_usage(load("openai_responses_reasoning_web_search.json"))
    code = extract_usage(load("openai_responses_code_interpreter.json"))

    assert web is not None
    assert web.details["web_searches"] == 1
    assert code is not None
    assert code.details["code_interpreter_calls"] == 1


def test_xai_server_side_tools_in_details() -> None:
    usage = extract_usage(load("xai_responses_x_search_tools.json"))

    assert usage is not None
    assert usage.details["x_search_calls"] == 10
    assert usage.details["server_side_tools_used"] == 10
    assert usage.details["cost_in_usd_ticks"] == 795273000


def test_xai_context_details_ignored() -> None:
    usage = extract_usage(load("xai_responses_x_search_tools.json"))

    assert usage is not None
    assert usage.input_tokens == 28386


def test_openrouter_zero_prompt_tokens_kept() -> None:
    usage = extract_usage(load("openrouter_edge_zero_prompt_tokens_video.json"))

    assert usage == Usage(0, 180)


def test_tool_loop_rounds_sum() -> None:
    round_two = extract_usage(load("anthropic_tool_loop_round2.json"))
    round_one = extract_usage(
        {"type": "message", "usage": {"input_tokens": 423, "output_tokens": 202}}
    )

    assert round_one is not None
    assert round_two is not None
    assert round_one + round_two == Usage(1194, 279)
