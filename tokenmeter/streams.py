"""`metered_stream`: meter a live provider stream while passing every chunk through unchanged."""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Generic, TypeVar

from tokenmeter import metering
from tokenmeter._logging import RateLimitedLog
from tokenmeter._turns import Round
from tokenmeter.extract import StreamReader, stream_reader

__all__ = ["AsyncMeteredStream", "MeteredStream", "metered_stream"]

logger = logging.getLogger(__name__)
_limited = RateLimitedLog(logger)

T = TypeVar("T")

# Looked up before __init__ sets them (in __del__ of a half-built wrapper): never delegated.
_OWN_ATTRIBUTES = frozenset({"_stream", "_iterator", "_turn"})


class _StreamTurn:
    """The turn a stream makes: started at wrap time, emitted once when the stream ends."""

    def __init__(
        self,
        provider: str | None,
        options: metering._StepOptions,
        begun: tuple[int, int, int | None, metering.Meter | None] | None = None,
        started_ns: int | None = None,
    ) -> None:
        self.options = options
        self.provider = provider
        self.turn_id, self.run_id, self.parent_id, self.enclosing = begun or metering._begin()
        self.started_ns = started_ns or time.time_ns()
        self._reader: StreamReader | None = None
        self._done = False
        self._lock = threading.Lock()

    def feed(self, event: object) -> None:
        try:
            if self._reader is None:
                self._reader = stream_reader(self.provider)
            self._reader.feed(event)
        except Exception as error:
            _limited.log(
                logging.ERROR,
                ("feed", type(event)),
                "tokenmeter: reading a %s stream event failed: %r",
                type(event).__qualname__,
                error,
            )

    def finish(self, status: str, error_type: str | None = None) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True

        usage = model = detected = None
        if self._reader is not None:
            try:
                reading = self._reader.finish()
            except Exception as error:
                _limited.log(
                    logging.ERROR, "finish", "tokenmeter: reading a stream failed: %r", error
                )
            else:
                usage, model, detected = reading.usage, reading.model, reading.provider
        rounds: list[Round] = [(usage, model, self.provider or detected)]
        metering._emit(
            self.options,
            self.turn_id,
            self.run_id,
            self.parent_id,
            self.started_ns,
            status,
            error_type,
            rounds,
            self.enclosing,
        )


class MeteredStream(Generic[T]):
    """A sync stream that records its turn when it ends, is closed, or is garbage collected.

    Iterating yields exactly the wrapped stream's items. Other attributes are the wrapped
    stream's own, so `stream.response` or `stream.get_final_message()` keep working.
    """

    def __init__(self, stream: Any, turn: _StreamTurn) -> None:
        self._stream = stream
        self._iterator: Any = None
        self._turn = turn

    def __iter__(self) -> MeteredStream[T]:
        return self

    def __next__(self) -> T:
        if self._iterator is None:
            self._iterator = iter(self._stream)
        try:
            item = next(self._iterator)
        except StopIteration:
            self._turn.finish("ok")
            raise
        except BaseException as error:
            self._turn.finish(metering._status_of(error), type(error).__name__)
            raise
        self._turn.feed(item)
        return item  # type: ignore[no-any-return]

    def close(self) -> None:
        """Close the wrapped stream; a stream closed before its end records `incomplete`."""
        self._turn.finish("incomplete")
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> MeteredStream[T]:
        enter = getattr(self._stream, "__enter__", None)
        if enter is not None:
            entered = enter()
            # Anthropic's stream managers return the real stream from __enter__.
            if entered is not None and entered is not self._stream:
                self._stream = entered
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is not None:
            self._turn.finish(metering._status_of(exc), type(exc).__name__)
        else:
            self._turn.finish("incomplete")
        exit_ = getattr(self._stream, "__exit__", None)
        if exit_ is not None:
            exit_(exc_type, exc, traceback)
        else:
            close = getattr(self._stream, "close", None)
            if close is not None:
                close()

    def __getattr__(self, name: str) -> Any:
        if name in _OWN_ATTRIBUTES:
            raise AttributeError(name)
        return getattr(self._stream, name)

    def __del__(self) -> None:
        turn = getattr(self, "_turn", None)
        if turn is not None:
            turn.finish("incomplete")

    def __repr__(self) -> str:
        return f"<tokenmeter.MeteredStream of {self._stream!r}>"


class AsyncMeteredStream(Generic[T]):
    """The async counterpart of `MeteredStream`, for `async for` streams."""

    def __init__(self, stream: Any, turn: _StreamTurn) -> None:
        self._stream = stream
        self._iterator: Any = None
        self._turn = turn

    def __aiter__(self) -> AsyncMeteredStream[T]:
        return self

    async def __anext__(self) -> T:
        if self._iterator is None:
            self._iterator = self._stream.__aiter__()
        try:
            item = await self._iterator.__anext__()
        except StopAsyncIteration:
            self._turn.finish("ok")
            raise
        except BaseException as error:
            self._turn.finish(metering._status_of(error), type(error).__name__)
            raise
        self._turn.feed(item)
        return item  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        """Close the wrapped stream; a stream closed before its end records `incomplete`."""
        self._turn.finish("incomplete")
        for name in ("aclose", "close"):
            close = getattr(self._stream, name, None)
            if close is not None:
                result = close()
                if hasattr(result, "__await__"):
                    await result
                return

    async def close(self) -> None:
        await self.aclose()

    async def __aenter__(self) -> AsyncMeteredStream[T]:
        enter = getattr(self._stream, "__aenter__", None)
        if enter is not None:
            entered = await enter()
            if entered is not None and entered is not self._stream:
                self._stream = entered
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is not None:
            self._turn.finish(metering._status_of(exc), type(exc).__name__)
        else:
            self._turn.finish("incomplete")
        exit_ = getattr(self._stream, "__aexit__", None)
        if exit_ is not None:
            await exit_(exc_type, exc, traceback)
        else:
            await self.aclose()

    def __getattr__(self, name: str) -> Any:
        if name in _OWN_ATTRIBUTES:
            raise AttributeError(name)
        return getattr(self._stream, name)

    def __del__(self) -> None:
        turn = getattr(self, "_turn", None)
        if turn is not None:
            turn.finish("incomplete")

    def __repr__(self) -> str:
        return f"<tokenmeter.AsyncMeteredStream of {self._stream!r}>"


# Stream classes of the provider SDKs, by top-level package and class name, so that none of
# those packages has to be imported to recognize them.
_SDK_STREAM_CLASSES = frozenset(
    {
        ("openai", "Stream"),
        ("openai", "AsyncStream"),
        ("anthropic", "Stream"),
        ("anthropic", "AsyncStream"),
        ("anthropic", "MessageStream"),
        ("anthropic", "AsyncMessageStream"),
        ("anthropic", "MessageStreamManager"),
        ("anthropic", "AsyncMessageStreamManager"),
        ("groq", "Stream"),
        ("groq", "AsyncStream"),
        ("mistralai", "EventStream"),
        ("mistralai", "EventStreamAsync"),
        ("botocore", "EventStream"),
    }
)
_stream_types: dict[type, bool] = {}


def is_stream(obj: object) -> bool:
    """Tell whether a step returned a live stream: an SDK stream object or a generator."""
    kind = type(obj)
    known = _stream_types.get(kind)
    if known is None:
        root = kind.__module__.split(".", 1)[0]
        known = (
            (root, kind.__name__) in _SDK_STREAM_CLASSES
            or inspect.isgenerator(obj)
            or inspect.isasyncgen(obj)
        )
        _stream_types[kind] = known
    return known


def wrap_returned_stream(
    stream: Any,
    options: metering._StepOptions,
    begun: tuple[int, int, int | None, metering.Meter | None],
    started_ns: int,
) -> Any:
    """Wrap a stream that a metered step returned, so its turn is recorded when it ends."""
    turn = _StreamTurn(options.provider, options, begun, started_ns)
    if hasattr(stream, "__aiter__") or (
        hasattr(stream, "__aenter__") and not hasattr(stream, "__iter__")
    ):
        return AsyncMeteredStream(stream, turn)
    return MeteredStream(stream, turn)


MeteredStream.__module__ = "tokenmeter"
AsyncMeteredStream.__module__ = "tokenmeter"


def metered_stream(
    stream: Any,
    *,
    agent: str | None = None,
    model: str | None = None,
    provider: str | None = None,
    tags: Iterable[str] | Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    name: str | None = None,
) -> Any:
    """Wrap a live provider stream (sync or async) so that its turn is recorded when it ends.

    The wrapper yields exactly the stream's chunks, in order, and raises its exceptions.
    It does not ask the provider for usage: with OpenAI-compatible APIs, pass
    `stream_options={"include_usage": True}` yourself, or the round is recorded as
    unmeasured. A stream closed before its end is recorded with `status="incomplete"` and
    whatever usage had arrived.

    Args:
        stream: An iterator or async iterator of provider events, or a context manager
            returning one (Anthropic's `messages.stream(...)`).
        agent, model, provider, tags, metadata, name: As for `metered_turn`.
    """
    options = metering._StepOptions(
        name or type(stream).__qualname__,
        agent,
        model,
        provider,
        metering._normalize_tags(tags),
        dict(metadata) if metadata else None,
    )
    turn = _StreamTurn(provider, options)
    if hasattr(stream, "__aiter__") or (
        hasattr(stream, "__aenter__") and not hasattr(stream, "__iter__")
    ):
        return AsyncMeteredStream(stream, turn)
    return MeteredStream(stream, turn)
