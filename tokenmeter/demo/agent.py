"""The demo's agents: tool-calling loops on Claude, GPT and Grok, metered by tokenmeter.

Each agent talks to the replay server through the official `anthropic` or `openai` client,
so the usage tokenmeter meters comes out of the SDKs' own response types. The requests are
built as a real agent builds them, and the responses are recorded ones, replayed in script
order.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import anthropic
import openai
from anthropic import Anthropic
from anthropic.types import Message, MessageParam, ToolParam, ToolResultBlockParam
from openai import AsyncOpenAI, OpenAI
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionMessageParam,
    ChatCompletionToolParam,
)
from openai.types.responses import Response

from tokenmeter import meter, metered_turn
from tokenmeter.demo.server import SCRIPT_HEADER, ReplayStep

__all__ = [
    "AGENTS",
    "SCRIPTS",
    "run_research_bot",
    "run_support_bot",
    "run_travel_bot",
]

DUMMY_API_KEY = "tokenmeter-demo-key"
"""Sent as the API key: the replay server checks none, and no real key is ever needed."""

DEMO_TAGS = ["demo"]
MAX_TOOL_ROUNDS = 4
"""Rounds after which a tool loop without a final answer fails, instead of looping forever."""
REQUEST_TIMEOUT_S = 30.0

SUPPORT_BOT = "support-bot"
TRAVEL_BOT = "travel-bot"
RESEARCH_BOT = "research-bot"
AGENTS = (SUPPORT_BOT, TRAVEL_BOT, RESEARCH_BOT)

# The recorded bodies fix what the models return, so the prompts and tools below match them.
# In the Claude tool loop the model calls `retrieve_entity_info` for four people, and in the
# GPT tool loop it calls `get_capital` for England.
SCRIPTS: dict[str, tuple[ReplayStep, ...]] = {
    SUPPORT_BOT: (
        ReplayStep("/v1/messages", "anthropic_tool_loop_round1.json"),
        ReplayStep(
            "/v1/messages",
            "anthropic_tool_loop_round2.json",
            tool_results_for=(
                "toolu_PLACEHOLDER_1",
                "toolu_PLACEHOLDER_2",
                "toolu_PLACEHOLDER_3",
                "toolu_PLACEHOLDER_4",
            ),
        ),
        ReplayStep("/v1/messages", "anthropic_cache_read.json"),
        ReplayStep("/v1/messages", "anthropic_cache_write_and_read.json"),
    ),
    TRAVEL_BOT: (
        ReplayStep("/v1/chat/completions", "openai_chat_tool_calls_round1.json"),
        ReplayStep(
            "/v1/chat/completions",
            "openai_chat_tool_calls_round2.json",
            tool_results_for=("call_PLACEHOLDER_1",),
        ),
        ReplayStep("/v1/chat/completions", "openai_chat_reasoning_o3_mini.json"),
    ),
    RESEARCH_BOT: (
        ReplayStep("/v1/chat/completions", "xai_chat_reasoning.json"),
        ReplayStep("/v1/responses", "openai_responses_reasoning_web_search.json"),
    ),
}

CLAUDE_TOOL_MODEL = "claude-haiku-4-5"
CLAUDE_DOCS_MODEL = "claude-sonnet-4-5"
GPT_TOOL_MODEL = "gpt-4o-mini"
GPT_REASONING_MODEL = "o3-mini"
GROK_MODEL = "grok-build-0.1"
GPT_SEARCH_MODEL = "gpt-5"

ACCOUNT_MEMBERS = {
    "alice": "Alice is Bob's wife and the account owner.",
    "bob": "Bob is Alice's husband.",
    "charlie": "Charlie is Alice and Bob's son.",
    "daisy": "Daisy is Alice and Bob's daughter, younger than her brother Charlie.",
}
CAPITALS = {"england": "London", "france": "Paris", "japan": "Tokyo"}

# A stand-in for a long system prompt worth caching. The replayed bodies report 1,111 cached
# tokens whatever this text is, because the server does not read it.
PRODUCT_DOCS = "\n".join(
    f"Lesson {number}: Python basics, part {number}. Variables, functions, modules, "
    "classes, exceptions, iterators, generators, context managers and the standard library."
    for number in range(1, 61)
)

ENTITY_TOOL: ToolParam = {
    "name": "retrieve_entity_info",
    "description": "Look up what the account directory stores about one person.",
    "input_schema": {
        "type": "object",
        "properties": {"name": {"type": "string"}},
        "required": ["name"],
        "additionalProperties": False,
    },
}
CAPITAL_TOOL: ChatCompletionToolParam = {
    "type": "function",
    "function": {
        "name": "get_capital",
        "description": "Return the capital city of a country.",
        "parameters": {
            "type": "object",
            "properties": {"country": {"type": "string", "description": "Country name."}},
            "required": ["country"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}


class ToolLoopError(RuntimeError):
    """A tool loop asked for an unknown tool or gave no final answer within its rounds."""


def _script_headers(agent: str) -> dict[str, str]:
    return {SCRIPT_HEADER: agent}


def anthropic_client(base_url: str, agent: str) -> Anthropic:
    """Create an Anthropic client that sends `agent`'s requests to the replay server.

    `trust_env=False` keeps proxy variables such as `HTTPS_PROXY` from routing the request
    anywhere but `base_url`.
    """
    return Anthropic(
        api_key=DUMMY_API_KEY,
        base_url=base_url,
        default_headers=_script_headers(agent),
        max_retries=0,
        timeout=REQUEST_TIMEOUT_S,
        http_client=anthropic.DefaultHttpxClient(trust_env=False),
    )


def openai_client(base_url: str, agent: str) -> OpenAI:
    """Create an OpenAI client that sends `agent`'s requests to the replay server."""
    return OpenAI(
        api_key=DUMMY_API_KEY,
        base_url=f"{base_url}/v1",
        default_headers=_script_headers(agent),
        max_retries=0,
        timeout=REQUEST_TIMEOUT_S,
        http_client=openai.DefaultHttpxClient(trust_env=False),
    )


def async_openai_client(base_url: str, agent: str) -> AsyncOpenAI:
    """Create an async OpenAI client for an OpenAI-compatible API such as xAI's.

    xAI serves Grok at `https://api.x.ai/v1` with the Chat Completions protocol, so the same
    client reaches it with another base URL. Here that URL is the replay server's.
    """
    return AsyncOpenAI(
        api_key=DUMMY_API_KEY,
        base_url=f"{base_url}/v1",
        default_headers=_script_headers(agent),
        max_retries=0,
        timeout=REQUEST_TIMEOUT_S,
        http_client=openai.DefaultAsyncHttpxClient(trust_env=False),
    )


# --- support-bot: Claude, a tool loop metered round by round, then two cached answers ---


def retrieve_entity_info(name: str) -> str:
    """Look up one person in the demo's fake account directory."""
    return ACCOUNT_MEMBERS.get(name.strip().lower(), f"No account member is called {name}.")


def _run_entity_tools(message: Message) -> list[ToolResultBlockParam]:
    results: list[ToolResultBlockParam] = []
    for block in message.content:
        if block.type != "tool_use":
            continue
        if block.name != ENTITY_TOOL["name"]:
            raise ToolLoopError(f"{SUPPORT_BOT} has no tool {block.name!r}")

        arguments: dict[str, Any] = dict(block.input) if isinstance(block.input, dict) else {}
        results.append(
            {
                "type": "tool_result",
                "tool_use_id": block.id,
                "content": retrieve_entity_info(str(arguments.get("name", ""))),
            }
        )
    return results


@metered_turn(agent=SUPPORT_BOT, provider="anthropic", tags=DEMO_TAGS)
def answer_from_docs(client: Anthropic, history: Sequence[MessageParam]) -> Message:
    """Answer a question about the course from its docs, which the prompt cache keeps warm."""
    return client.messages.create(
        model=CLAUDE_DOCS_MODEL,
        max_tokens=1024,
        system=[
            {
                "type": "text",
                "text": PRODUCT_DOCS,
                "cache_control": {"type": "ephemeral"},
            }
        ],
        messages=list(history),
    )


def run_support_bot(base_url: str) -> list[str]:
    """Run the support agent and return its answers.

    The tool loop adds its rounds to one `meter()`. The two docs answers after it are
    `@metered_turn` steps, so each gets its own record under the same run id.
    """
    answers: list[str] = []
    with (
        anthropic_client(base_url, SUPPORT_BOT) as client,
        meter(agent=SUPPORT_BOT, provider="anthropic", tags=DEMO_TAGS) as turn,
    ):
        messages: list[MessageParam] = [
            {
                "role": "user",
                "content": "Alice, Bob, Charlie and Daisy share one family account. "
                "Which of them is the youngest?",
            }
        ]
        for _ in range(MAX_TOOL_ROUNDS):
            message = client.messages.create(
                model=CLAUDE_TOOL_MODEL,
                max_tokens=1024,
                tools=[ENTITY_TOOL],
                messages=messages,
            )
            turn.add(message, provider="anthropic")
            if message.stop_reason != "tool_use":
                answers.append(_anthropic_text(message))
                break

            messages.append({"role": "assistant", "content": message.content})
            messages.append({"role": "user", "content": _run_entity_tools(message)})
        else:
            raise ToolLoopError(f"{SUPPORT_BOT} got no final answer in {MAX_TOOL_ROUNDS} rounds")

        history: list[MessageParam] = [{"role": "user", "content": "What is Python?"}]
        first = answer_from_docs(client, history)
        answers.append(_anthropic_text(first))

        history += [
            {"role": "assistant", "content": first.content},
            {"role": "user", "content": "Summarize that in one sentence."},
        ]
        answers.append(_anthropic_text(answer_from_docs(client, history)))
    return answers


def _anthropic_text(message: Message) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


# --- travel-bot: GPT, each tool loop round a `@metered_turn` step, then a reasoning model ---


def get_capital(country: str) -> str:
    """Look up a capital in the demo's fake atlas."""
    return CAPITALS.get(country.strip().lower(), f"No capital is known for {country}.")


@metered_turn(agent=TRAVEL_BOT, provider="openai", tags=DEMO_TAGS)
def plan_step(client: OpenAI, messages: Sequence[ChatCompletionMessageParam]) -> ChatCompletion:
    """Ask the planning model for the next step: a tool call or the final answer."""
    return client.chat.completions.create(
        model=GPT_TOOL_MODEL,
        messages=list(messages),
        tools=[CAPITAL_TOOL],
        tool_choice="auto",
    )


@metered_turn(agent=TRAVEL_BOT, provider="openai", tags=DEMO_TAGS)
def think_through(client: OpenAI, question: str) -> ChatCompletion:
    """Ask the reasoning model a question that needs several steps of thought."""
    return client.chat.completions.create(
        model=GPT_REASONING_MODEL,
        reasoning_effort="medium",
        messages=[{"role": "user", "content": question}],
    )


def _run_capital_tools(completion: ChatCompletion) -> list[ChatCompletionMessageParam]:
    message = completion.choices[0].message
    replies: list[ChatCompletionMessageParam] = [
        {
            "role": "assistant",
            "content": message.content,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {
                        "name": call.function.name,
                        "arguments": call.function.arguments,
                    },
                }
                for call in message.tool_calls or []
                if call.type == "function"
            ],
        }
    ]
    for call in message.tool_calls or []:
        if call.type != "function":
            raise ToolLoopError(f"{TRAVEL_BOT} has no {call.type!r} tools, only functions")
        if call.function.name != "get_capital":
            raise ToolLoopError(f"{TRAVEL_BOT} has no tool {call.function.name!r}")

        arguments = json.loads(call.function.arguments)
        replies.append(
            {
                "role": "tool",
                "tool_call_id": call.id,
                "content": get_capital(str(arguments.get("country", ""))),
            }
        )
    return replies


def run_travel_bot(base_url: str) -> list[str]:
    """Run the travel agent and return its answers.

    Every call is a `@metered_turn` step. The `meter()` around them only groups them into one
    run and adds no usage of its own.
    """
    answers: list[str] = []
    with openai_client(base_url, TRAVEL_BOT) as client, meter(agent=TRAVEL_BOT, tags=DEMO_TAGS):
        messages: list[ChatCompletionMessageParam] = [
            {"role": "user", "content": "What is the capital of England?"}
        ]
        for _ in range(MAX_TOOL_ROUNDS):
            completion = plan_step(client, messages)
            choice = completion.choices[0]
            if choice.finish_reason != "tool_calls":
                answers.append(choice.message.content or "")
                break
            messages += _run_capital_tools(completion)
        else:
            raise ToolLoopError(f"{TRAVEL_BOT} got no final answer in {MAX_TOOL_ROUNDS} rounds")

        reasoning = think_through(client, "How do I cross a river safely on foot?")
        answers.append(reasoning.choices[0].message.content or "")
    return answers


# --- research-bot: Grok and GPT-5 with web search, both through the async OpenAI client ---


@metered_turn(agent=RESEARCH_BOT, provider="xai", tags=DEMO_TAGS)
async def ask_grok(client: AsyncOpenAI, question: str) -> ChatCompletion:
    """Ask Grok an open question. xAI reports its reasoning tokens beside the completion's."""
    return await client.chat.completions.create(
        model=GROK_MODEL,
        messages=[{"role": "user", "content": question}],
    )


@metered_turn(agent=RESEARCH_BOT, provider="openai", tags=DEMO_TAGS)
async def search_the_web(client: AsyncOpenAI, question: str) -> Response:
    """Answer a question about today with the Responses API's built-in web search tool.

    OpenAI bills each web search call on top of the tokens, so this step's cost is more
    than its tokens' price.
    """
    return await client.responses.create(
        model=GPT_SEARCH_MODEL,
        instructions="You are a helpful assistant.",
        input=question,
        tools=[{"type": "web_search"}],
    )


async def run_research_bot(base_url: str) -> list[str]:
    """Run the research agent on an event loop and return its answers.

    Its two steps reach two providers: Grok on xAI's OpenAI-compatible API, and GPT-5 on
    OpenAI's Responses API.
    """
    async with (
        async_openai_client(base_url, RESEARCH_BOT) as client,
        meter(agent=RESEARCH_BOT, tags=DEMO_TAGS),
    ):
        completion = await ask_grok(client, "What do you make of mankind?")
        response = await search_the_web(client, "What is the weather in San Francisco today?")
    return [completion.choices[0].message.content or "", response.output_text]
