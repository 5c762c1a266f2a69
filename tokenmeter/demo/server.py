"""Replay recorded provider response bodies over HTTP on 127.0.0.1 for the demo's SDK clients."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from types import TracebackType
from typing import Any, Self

logger = logging.getLogger(__name__)

SCRIPT_HEADER = "X-Tokenmeter-Demo-Script"
"""Request header that names the script (one per agent) whose next step responds to the request."""

LOOPBACK_HOST = "127.0.0.1"

SHUTDOWN_POLL_S = 0.05
"""Interval, in seconds, at which the serving thread checks for `stop()`; `stop()` waits up to
this long."""

ROUTES = frozenset({"/v1/chat/completions", "/v1/messages", "/v1/responses"})
"""Paths the server serves: OpenAI-compatible Chat Completions, Anthropic Messages and OpenAI
Responses. The SDKs append these paths to their base URL."""


@dataclass(frozen=True, slots=True)
class ReplayStep:
    """One scripted exchange: the expected request path and the recorded body sent back.

    Attributes:
        path: the request path of the step, one of `ROUTES`.
        response: file name of the recorded JSON body in `tokenmeter/demo/responses/`.
        tool_results_for: tool call ids that the request must carry results for. A tool loop
            then gets its final response only after it ran the tools the model called.
    """

    path: str
    response: str
    tool_results_for: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ServedRequest:
    """A request the server responded to from a script, kept for tests and diagnostics."""

    script: str
    path: str
    response: str
    model: str | None


def load_response(name: str) -> dict[str, Any]:
    """Load one recorded response body shipped in `tokenmeter/demo/responses/`.

    :raises FileNotFoundError: if no recorded body has that file name.
    """
    resource = resources.files("tokenmeter.demo").joinpath("responses", name)
    if not resource.is_file():
        raise FileNotFoundError(
            f"recorded response {name!r} not found in tokenmeter/demo/responses/"
        )
    body: dict[str, Any] = json.loads(resource.read_text(encoding="utf-8"))
    return body


class ReplayError(Exception):
    """A request that the script has no response for. The client receives it as an HTTP error."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ReplayServer:
    """HTTP server on 127.0.0.1 that responds to each request with the next step of its script.

    Each agent sends the `X-Tokenmeter-Demo-Script` header naming its script, so agents
    that run at the same time never take each other's responses. The server listens on a free
    port chosen by the OS and serves from a daemon thread between `start()` and `stop()`
    (or inside a `with` block).

    Args:
        scripts: the steps of each script, in the order they are served.

    :raises ValueError: if a step names a path outside `ROUTES`.
    :raises FileNotFoundError: if a step names a recorded body that is not shipped.
    """

    def __init__(self, scripts: Mapping[str, Sequence[ReplayStep]]) -> None:
        for script, steps in scripts.items():
            for step in steps:
                if step.path not in ROUTES:
                    raise ValueError(
                        f"invalid path {step.path!r} in script {script!r}; "
                        f"expected one of {sorted(ROUTES)}"
                    )

        # Bodies are loaded and checked up front, so a missing file fails at construction
        # and not in the middle of an agent's tool loop.
        self._bodies = {
            step.response: json.dumps(load_response(step.response)).encode()
            for steps in scripts.values()
            for step in steps
        }
        self._scripts = {script: tuple(steps) for script, steps in scripts.items()}
        self._cursors = dict.fromkeys(self._scripts, 0)
        self._lock = threading.Lock()
        self._served: list[ServedRequest] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """Root URL of the running server, `http://127.0.0.1:PORT`, without a path.

        :raises RuntimeError: if the server is not running.
        """
        if self._httpd is None:
            raise RuntimeError("ReplayServer.base_url is only known after start()")
        port = self._httpd.server_address[1]
        return f"http://{LOOPBACK_HOST}:{port}"

    @property
    def served(self) -> list[ServedRequest]:
        """Requests served from a script so far, in the order they arrived."""
        with self._lock:
            return list(self._served)

    def pending(self) -> dict[str, int]:
        """Return how many steps each script has not served yet."""
        with self._lock:
            return {
                script: len(steps) - self._cursors[script]
                for script, steps in self._scripts.items()
            }

    def start(self) -> None:
        """Bind a free port on 127.0.0.1 and serve from a daemon thread.

        :raises RuntimeError: if the server is already running.
        """
        if self._httpd is not None:
            raise RuntimeError("ReplayServer.start() called on a running server")

        handler = _make_handler(self)
        self._httpd = ThreadingHTTPServer((LOOPBACK_HOST, 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": SHUTDOWN_POLL_S},
            name="tokenmeter-demo-replay",
            daemon=True,
        )
        self._thread.start()
        logger.debug("replay server listening on %s", self.base_url)

    def stop(self) -> None:
        """Stop serving and close the socket. Calling it again does nothing."""
        httpd, thread = self._httpd, self._thread
        self._httpd = None
        self._thread = None
        if httpd is None:
            return

        httpd.shutdown()
        httpd.server_close()
        if thread is not None:
            thread.join()
        logger.debug("replay server stopped after %d requests", len(self._served))

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def next_body(self, script: str | None, path: str, request: Mapping[str, Any]) -> bytes:
        """Advance `script` by one step and return the recorded body for `request`.

        :raises ReplayError: if the script is unknown or finished, the path is not the one
            the step expects, or the request lacks a tool result that the step requires.
        """
        if script is None:
            raise ReplayError(400, f"missing {SCRIPT_HEADER} header")

        with self._lock:
            steps = self._scripts.get(script)
            if steps is None:
                raise ReplayError(
                    400,
                    f"unknown script {script!r} in {SCRIPT_HEADER}; "
                    f"expected one of {sorted(self._scripts)}",
                )
            cursor = self._cursors[script]
            if cursor >= len(steps):
                raise ReplayError(
                    409, f"script {script!r} has no step left after {len(steps)} requests"
                )

            step = steps[cursor]
            if path != step.path:
                raise ReplayError(
                    404,
                    f"script {script!r} step {cursor + 1} expects POST {step.path}, got {path}",
                )
            missing = set(step.tool_results_for) - answered_tool_calls(path, request)
            if missing:
                raise ReplayError(
                    400,
                    f"script {script!r} step {cursor + 1} expects tool results for "
                    f"{sorted(missing)}",
                )

            self._cursors[script] = cursor + 1
            model = request.get("model")
            self._served.append(
                ServedRequest(
                    script=script,
                    path=path,
                    response=step.response,
                    model=model if isinstance(model, str) else None,
                )
            )
            return self._bodies[step.response]


def answered_tool_calls(path: str, request: Mapping[str, Any]) -> set[str]:
    """Return the ids of the tool calls whose results a request body carries.

    Each API carries results in its own shape: Anthropic as `tool_result` blocks in user
    messages, Chat Completions as `role: tool` messages, Responses as `function_call_output`
    input items.
    """
    answered: set[str] = set()
    if path == "/v1/messages":
        for message in request.get("messages", []):
            content = message.get("content")
            if message.get("role") != "user" or not isinstance(content, list):
                continue
            for block in content:
                if block.get("type") == "tool_result":
                    answered.add(str(block.get("tool_use_id")))
    elif path == "/v1/chat/completions":
        for message in request.get("messages", []):
            if message.get("role") == "tool":
                answered.add(str(message.get("tool_call_id")))
    elif path == "/v1/responses":
        items = request.get("input")
        if isinstance(items, list):
            for item in items:
                if isinstance(item, dict) and item.get("type") == "function_call_output":
                    answered.add(str(item.get("call_id")))
    return answered


def _make_handler(server: ReplayServer) -> type[BaseHTTPRequestHandler]:
    class ReplayHandler(BaseHTTPRequestHandler):
        server_version = "tokenmeter-demo-replay"

        def do_POST(self) -> None:
            path = self.path.split("?", 1)[0]
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)

            try:
                request = json.loads(raw or b"{}")
                if not isinstance(request, dict):
                    raise ReplayError(400, "request body is not a JSON object")
                body = server.next_body(self.headers.get(SCRIPT_HEADER), path, request)
            except json.JSONDecodeError as exc:
                logger.warning("replay server rejected POST %s: invalid JSON: %s", path, exc)
                self._send_error(400, f"request body is not valid JSON: {exc}")
            except ReplayError as exc:
                logger.warning("replay server rejected POST %s: %s", path, exc.message)
                self._send_error(exc.status, exc.message)
            else:
                self._send_json(200, body)

        def do_GET(self) -> None:
            self._send_error(405, f"method GET not allowed on {self.path}; use POST")

        def _send_error(self, status: int, message: str) -> None:
            # Both SDKs read `error.message` from this shape into their APIStatusError.
            body = {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
            self._send_json(status, json.dumps(body).encode())

        def _send_json(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            # The base class writes an access log to stderr, which would mix into the demo's
            # table; route it to the module logger instead.
            logger.debug("replay server: " + format, *args)

    return ReplayHandler
