"""A local SSE server that replays recorded provider streams, and the payloads it replays."""

from __future__ import annotations

import json
import socket
import sys
import threading
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import tokenmeter
from tokenmeter import Usage, UsageRecord
from tokenmeter.testing import MemorySink

PAYLOADS = Path(__file__).parent.parent / "fixtures" / "payloads"
MANIFEST: list[dict[str, Any]] = json.loads((PAYLOADS / "MANIFEST.json").read_text())

DONE = "[DONE]"
"""The sentinel that ends an OpenAI chat stream. Payload files list it as a plain string."""


def load(name: str) -> Any:
    """Return the parsed JSON of one recorded payload file."""
    return json.loads((PAYLOADS / name).read_text())


def expected_usage(name: str) -> Usage:
    """Return the usage the manifest expects from one payload file (the five token fields)."""
    entry = next(entry for entry in MANIFEST if entry["file"] == name)
    return Usage(**entry["expected"])


def record_usage(record: UsageRecord) -> Usage:
    """Return the five token fields of a record as a `Usage`, to compare with the manifest."""
    assert record.input_tokens is not None
    assert record.output_tokens is not None
    assert record.cache_read_tokens is not None
    assert record.cache_write_tokens is not None
    assert record.reasoning_tokens is not None
    return Usage(
        record.input_tokens,
        record.output_tokens,
        cache_read_tokens=record.cache_read_tokens,
        cache_write_tokens=record.cache_write_tokens,
        reasoning_tokens=record.reasoning_tokens,
    )


def sse_frames(events: list[Any], *, named: bool) -> list[bytes]:
    """Encode events as Server-Sent Events, one frame each.

    Args:
        events: JSON objects, or the `[DONE]` string of OpenAI chat streams.
        named: Whether each frame gets an `event:` line from the object's `type`, as
            Anthropic and the Responses API send it.
    """
    frames = []
    for event in events:
        if event == DONE:
            frames.append(b"data: [DONE]\n\n")
            continue
        head = f"event: {event['type']}\n" if named else ""
        frames.append(f"{head}data: {json.dumps(event)}\n\n".encode())
    return frames


@dataclass
class Reply:
    """One queued response: SSE frames, sent whole or stopped after some of them.

    Attributes:
        frames: The SSE frames, one chunk each.
        drop_after: Close the connection after this many frames, mid-body.
        stall_after: Send this many frames, then nothing more until the server stops.
        content_type: The response's `Content-Type`.
    """

    frames: list[bytes]
    drop_after: int | None = None
    stall_after: int | None = None
    content_type: str = "text/event-stream"


@dataclass
class ReceivedRequest:
    """A request the server received: its path with the query string, and its JSON body."""

    path: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class SSEServer:
    """HTTP/1.1 server on 127.0.0.1 that responds to each POST with the next queued `Reply`.

    Replies go out with chunked transfer encoding, one chunk per frame, so a reply cut off
    with `drop_after` reaches the client as a body that ends before its last chunk.
    """

    def __init__(self) -> None:
        self.requests: list[ReceivedRequest] = []
        self._replies: deque[Reply] = deque()
        self._lock = threading.Lock()
        self.released = threading.Event()
        """Set by `stop()`, which ends the stalled replies."""
        self._httpd = _QuietServer(("127.0.0.1", 0), _make_handler(self))
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="tokenmeter-test-sse",
            daemon=True,
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def reply(
        self,
        frames: list[bytes],
        *,
        drop_after: int | None = None,
        stall_after: int | None = None,
        content_type: str = "text/event-stream",
    ) -> None:
        """Queue the response to the next request."""
        with self._lock:
            self._replies.append(Reply(frames, drop_after, stall_after, content_type))

    def next_reply(self, request: ReceivedRequest) -> Reply | None:
        with self._lock:
            self.requests.append(request)
            return self._replies.popleft() if self._replies else None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.released.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that close a kept-alive connection, or a stream, early are part of the tests.
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):
            return
        super().handle_error(request, client_address)


def _make_handler(server: SSEServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else {}
            request = ReceivedRequest(self.path, body, dict(self.headers.items()))
            reply = server.next_reply(request)
            if reply is None:
                self._send_error(500, "no reply queued for this request")
                return

            self.send_response(200)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            for number, frame in enumerate(reply.frames):
                if reply.stall_after is not None and number >= reply.stall_after:
                    server.released.wait()
                    self.close_connection = True
                    return
                if reply.drop_after is not None and number >= reply.drop_after:
                    # Half-close the socket so the client sees the body end mid-stream.
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_WR)
                    self.close_connection = True
                    return
                self.wfile.write(f"{len(frame):x}\r\n".encode() + frame + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        def _send_error(self, status: int, message: str) -> None:
            body = json.dumps({"error": {"message": message}}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


def records_of(sink: MemorySink) -> list[UsageRecord]:
    """Return the records delivered so far, after waiting for the delivery thread."""
    assert tokenmeter.flush(timeout=10)
    return list(sink.records)


async def arecords_of(sink: MemorySink) -> list[UsageRecord]:
    """Return the records delivered so far, awaiting the delivery thread (asyncio or trio)."""
    assert await tokenmeter.aflush(timeout=10)
    return list(sink.records)


def only_record(records: list[UsageRecord]) -> UsageRecord:
    """Return the single record of a list, failing with the list when there is not one."""
    assert len(records) == 1, records
    return records[0]


def expected_cost(events: list[Any], model: str, provider: str) -> Decimal:
    """Return what `estimate_cost` charges for the usage of a recorded stream."""
    usage = tokenmeter.extract_stream_usage(events, provider)
    assert usage is not None
    cost = tokenmeter.estimate_cost(usage, model, provider)
    assert cost is not None
    return cost.total_usd


def dumps(items: list[Any], exclude: set[str] | None = None) -> list[Any]:
    """Return SDK objects as JSON-like data, to compare two runs of a stream."""
    return [item.model_dump(mode="json", exclude=exclude) for item in items]


# openai's AsyncStream stops reading at `data: [DONE]` without closing its SSE generators or
# the httpx2 and httpcore2 generators under them, and trio warns whenever it garbage collects
# an unfinished async generator. Seen with openai 3.60, httpx2 2.16 and trio 0.35, with or
# without tokenmeter. httpcore2 2.17 adds HTTP11ConnectionByteStream.__aiter__ to them, so
# the filter matches the generators of those three packages rather than a fixed list.
IGNORE_OPENAI_TRIO_WARNING = pytest.mark.filterwarnings(
    r"ignore:Async generator '(openai|httpx2|httpcore2)\.[\w.]+':ResourceWarning"
)
