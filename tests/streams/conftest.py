"""Fixtures for the live-stream tests: a local SSE server and real SDK clients pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import openai
import pytest
from stream_support import SSEServer


@pytest.fixture
def sse_server() -> Iterator[SSEServer]:
    """An `SSEServer` on 127.0.0.1, stopped after the test."""
    server = SSEServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def openai_client(sse_server: SSEServer) -> Iterator[openai.OpenAI]:
    """The real `openai.OpenAI` client, sending to `sse_server` and never retrying."""
    client = openai.OpenAI(api_key="test-key", base_url=f"{sse_server.base_url}/v1", max_retries=0)
    yield client
    client.close()


@pytest.fixture
def anthropic_client(sse_server: SSEServer) -> Iterator[anthropic.Anthropic]:
    """The real `anthropic.Anthropic` client, sending to `sse_server` and never retrying."""
    client = anthropic.Anthropic(api_key="test-key", base_url=sse_server.base_url, max_retries=0)
    yield client
    client.close()
