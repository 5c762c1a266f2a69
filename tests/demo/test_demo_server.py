"""The replay server, driven by the official openai and anthropic clients."""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

import anthropic
import httpx
import openai
import pytest
from anthropic.types import Message, MessageParam
from demo_support import BODY_USAGE, ServerFactory
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from tokenmeter.demo import agent
from tokenmeter.demo.server import (
    SCRIPT_HEADER,
    ReplayServer,
    ReplayStep,
    answered_tool_calls,
    load_response,
)

ROUND1 = "anthropic_tool_loop_round1.json"
ROUND2 = "anthropic_tool_loop_round2.json"


def _anthropic(server: ReplayServer, script: str) -> anthropic.Anthropic:
    return agent.anthropic_client(server.base_url, script)


def test_server_binds_loopback_on_free_port(replay_server: ServerFactory) -> None:
    server = replay_server({"a": ()})

    url = urlsplit(server.base_url)

    assert url.scheme == "http"
    assert url.hostname == "127.0.0.1"
    assert url.port is not None
    assert url.port > 0


def test_two_servers_get_different_ports(replay_server: ServerFactory) -> None:
    first = replay_server({"a": ()})
    second = replay_server({"a": ()})

    assert first.base_url != second.base_url


def test_stop_closes_the_port() -> None:
    server = ReplayServer({"a": ()})
    server.start()
    port = urlsplit(server.base_url).port
    assert port is not None

    server.stop()
    server.stop()

    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port)):
        pass


def test_base_url_before_start_raises() -> None:
    server = ReplayServer({})

    with pytest.raises(RuntimeError, match=r"only known after start\(\)"):
        _ = server.base_url


def test_start_twice_raises(replay_server: ServerFactory) -> None:
    server = replay_server({})

    with pytest.raises(RuntimeError, match="running server"):
        server.start()


def test_invalid_path_raises() -> None:
    with pytest.raises(ValueError, match=r"invalid path '/v2/chat' in script 'a'"):
        ReplayServer({"a": [ReplayStep("/v2/chat", ROUND1)]})


def test_missing_body_raises() -> None:
    with pytest.raises(FileNotFoundError, match=r"'nope\.json' not found"):
        ReplayServer({"a": [ReplayStep("/v1/messages", "nope.json")]})


def test_anthropic_client_parses_replayed_message(replay_server: ServerFactory) -> None:
    server = replay_server({"support": [ReplayStep("/v1/messages", ROUND1)]})

    with _anthropic(server, "support") as client:
        message = client.messages.create(
            model="claude-haiku-4-5",
            max_tokens=64,
            messages=[{"role": "user", "content": "Who is the youngest?"}],
        )

    assert isinstance(message, Message)
    assert message.stop_reason == "tool_use"
    assert [block.type for block in message.content] == ["text"] + ["tool_use"] * 4
    assert message.usage.input_tokens == 423
    assert message.usage.output_tokens == 202


def test_anthropic_client_parses_cache_usage(replay_server: ServerFactory) -> None:
    server = replay_server(
        {"docs": [ReplayStep("/v1/messages", "anthropic_cache_write_and_read.json")]}
    )

    with _anthropic(server, "docs") as client:
        message = client.messages.create(
            model="claude-sonnet-4-5",
            max_tokens=64,
            messages=[{"role": "user", "content": "What is Python?"}],
        )

    assert isinstance(message, Message)
    assert message.usage.cache_read_input_tokens == 1111
    assert message.usage.cache_creation_input_tokens == 418
    assert message.usage.cache_creation is not None
    assert message.usage.cache_creation.ephemeral_5m_input_tokens == 418


def test_openai_client_parses_tool_calls(replay_server: ServerFactory) -> None:
    server = replay_server(
        {"travel": [ReplayStep("/v1/chat/completions", "openai_chat_tool_calls_round1.json")]}
    )

    with agent.openai_client(server.base_url, "travel") as client:
        completion = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "What is the capital of England?"}],
        )

    assert isinstance(completion, ChatCompletion)
    tool_calls = completion.choices[0].message.tool_calls
    assert tool_calls is not None
    assert len(tool_calls) == 1
    assert tool_calls[0].type == "function"
    assert tool_calls[0].function.name == "get_capital"
    assert json.loads(tool_calls[0].function.arguments) == {"country": "England"}


def test_openai_client_parses_reasoning_tokens(replay_server: ServerFactory) -> None:
    server = replay_server(
        {"travel": [ReplayStep("/v1/chat/completions", "openai_chat_reasoning_o3_mini.json")]}
    )

    with agent.openai_client(server.base_url, "travel") as client:
        completion = client.chat.completions.create(
            model="o3-mini", messages=[{"role": "user", "content": "Cross a river?"}]
        )

    assert isinstance(completion, ChatCompletion)
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 2320
    assert completion.usage.completion_tokens_details is not None
    assert completion.usage.completion_tokens_details.reasoning_tokens == 1792


def test_openai_client_parses_responses_api(replay_server: ServerFactory) -> None:
    server = replay_server(
        {"research": [ReplayStep("/v1/responses", "openai_responses_reasoning_web_search.json")]}
    )

    with agent.openai_client(server.base_url, "research") as client:
        response = client.responses.create(
            model="gpt-5", input="Weather today?", tools=[{"type": "web_search"}]
        )

    assert isinstance(response, Response)
    assert [item.type for item in response.output].count("web_search_call") == 1
    assert response.usage is not None
    assert response.usage.input_tokens_details.cached_tokens == 8448
    assert response.usage.output_tokens_details.reasoning_tokens == 512
    assert response.output_text.startswith("Today")


@pytest.mark.anyio
async def test_async_openai_client_reaches_grok_route(replay_server: ServerFactory) -> None:
    server = replay_server(
        {"research": [ReplayStep("/v1/chat/completions", "xai_chat_reasoning.json")]}
    )

    async with agent.async_openai_client(server.base_url, "research") as client:
        completion = await client.chat.completions.create(
            model="grok-build-0.1", messages=[{"role": "user", "content": "Mankind?"}]
        )

    assert isinstance(completion, ChatCompletion)
    assert completion.model == "grok-build-0.1"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 262
    assert completion.usage.completion_tokens_details is not None
    assert completion.usage.completion_tokens_details.reasoning_tokens == 491


def test_scripts_do_not_share_steps(replay_server: ServerFactory) -> None:
    server = replay_server(
        {
            "first": [ReplayStep("/v1/messages", ROUND1)],
            "second": [ReplayStep("/v1/messages", ROUND2)],
        }
    )
    request: MessageParam = {"role": "user", "content": "hello"}

    with _anthropic(server, "second") as second, _anthropic(server, "first") as first:
        answer_second = second.messages.create(
            model="claude-haiku-4-5", max_tokens=64, messages=[request]
        )
        answer_first = first.messages.create(
            model="claude-haiku-4-5", max_tokens=64, messages=[request]
        )

    assert answer_second.stop_reason == "end_turn"
    assert answer_first.stop_reason == "tool_use"
    assert server.pending() == {"first": 0, "second": 0}


def test_step_without_tool_results_is_rejected(replay_server: ServerFactory) -> None:
    server = replay_server(
        {"a": [ReplayStep("/v1/messages", ROUND2, tool_results_for=("toolu_PLACEHOLDER_1",))]}
    )

    with _anthropic(server, "a") as client, pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(
            model="claude-haiku-4-5", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        )

    assert caught.value.status_code == 400
    assert "expects tool results for ['toolu_PLACEHOLDER_1']" in str(caught.value)
    assert server.pending() == {"a": 1}


def test_exhausted_script_returns_409(replay_server: ServerFactory) -> None:
    server = replay_server({"a": [ReplayStep("/v1/messages", ROUND1)]})
    request: MessageParam = {"role": "user", "content": "hi"}

    with _anthropic(server, "a") as client:
        client.messages.create(model="claude-haiku-4-5", max_tokens=64, messages=[request])
        with pytest.raises(anthropic.APIStatusError) as caught:
            client.messages.create(model="claude-haiku-4-5", max_tokens=64, messages=[request])

    assert caught.value.status_code == 409
    assert "no step left after 1 requests" in str(caught.value)


def test_wrong_path_returns_404(replay_server: ServerFactory) -> None:
    server = replay_server({"a": [ReplayStep("/v1/messages", ROUND1)]})

    with (
        agent.openai_client(server.base_url, "a") as client,
        pytest.raises(openai.NotFoundError) as caught,
    ):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )

    assert "expects POST /v1/messages, got /v1/chat/completions" in str(caught.value)


def test_unknown_script_returns_400(replay_server: ServerFactory) -> None:
    server = replay_server({"a": [ReplayStep("/v1/messages", ROUND1)]})

    with _anthropic(server, "b") as client, pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(
            model="claude-haiku-4-5", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        )

    assert "unknown script 'b'" in str(caught.value)


def test_missing_script_header_returns_400(replay_server: ServerFactory) -> None:
    server = replay_server({"a": [ReplayStep("/v1/messages", ROUND1)]})

    with httpx.Client(trust_env=False) as client:
        response = client.post(f"{server.base_url}/v1/messages", json={})

    assert response.status_code == 400
    assert response.json()["error"]["message"] == f"missing {SCRIPT_HEADER} header"


def test_invalid_json_returns_400(replay_server: ServerFactory) -> None:
    server = replay_server({"a": [ReplayStep("/v1/messages", ROUND1)]})

    with httpx.Client(trust_env=False) as client:
        response = client.post(
            f"{server.base_url}/v1/messages", content=b"{not json", headers={SCRIPT_HEADER: "a"}
        )

    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]["message"]
    assert server.pending() == {"a": 1}


def test_served_lists_requests_in_order(replay_server: ServerFactory) -> None:
    server = replay_server(
        {"a": [ReplayStep("/v1/messages", ROUND1), ReplayStep("/v1/messages", ROUND2)]}
    )
    request: MessageParam = {"role": "user", "content": "hi"}

    with _anthropic(server, "a") as client:
        client.messages.create(model="claude-haiku-4-5", max_tokens=64, messages=[request])
        client.messages.create(model="claude-haiku-4-5", max_tokens=64, messages=[request])

    assert [served.response for served in server.served] == [ROUND1, ROUND2]
    assert [served.model for served in server.served] == ["claude-haiku-4-5"] * 2


@pytest.mark.parametrize(
    ("path", "request_body", "expected"),
    [
        (
            "/v1/messages",
            {
                "messages": [
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "t0"}]},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1"}]},
                ]
            },
            {"t1"},
        ),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "tool", "tool_call_id": "c1", "content": "x"}]},
            {"c1"},
        ),
        (
            "/v1/responses",
            {"input": [{"type": "function_call_output", "call_id": "r1", "output": "x"}]},
            {"r1"},
        ),
        ("/v1/responses", {"input": "plain text"}, set()),
    ],
)
def test_answered_tool_calls_per_api(
    path: str, request_body: dict[str, object], expected: set[str]
) -> None:
    assert answered_tool_calls(path, request_body) == expected


def test_every_scripted_body_is_shipped() -> None:
    for steps in agent.SCRIPTS.values():
        for step in steps:
            body = load_response(step.response)
            assert body["model"] == BODY_USAGE[step.response].model, step.response
