"""Fixtures for the demo tests: replay servers that stop after each test."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import pytest
from demo_support import ServerFactory

from tokenmeter.demo.server import ReplayServer, ReplayStep


@pytest.fixture
def replay_server() -> Iterator[ServerFactory]:
    """Start replay servers for a test and stop every one of them after it."""
    servers: list[ReplayServer] = []

    def start(scripts: Mapping[str, Sequence[ReplayStep]]) -> ReplayServer:
        server = ReplayServer(scripts)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
