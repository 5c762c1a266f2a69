"""`metered_stream`: meter a live provider stream while passing every chunk through unchanged."""

from __future__ import annotations

import functools
import inspect
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, Generic, TypeVar

from tokenmeter import metering
from tokenmeter._logging import RateLimitedLog
from tokenmeter._turns import Round, canonical_or_none
from tokenmeter.extract import StreamReader, stream_reader

__all__ = ["AsyncMeteredStream", "MeteredStream", "metered_stream"]

logger = logging.getLogger(__name__)
_limited = RateLimitedLog(logger)

T = TypeVar("T")

# Looked up before __init__ sets them (in __del__ of a half-built wrapper): never delegated.
_OWN_ATTRIBUTES = frozenset({"_stream", "_manager", "_iterator", "_turn"})

# Methods of the openai and anthropic stream helpers that read the rest of the stream
# themselves, past the wrapper. The wrapper reads the stream to its end before calling them,
# so that those events are metered too.
_CONSUMING_METHODS = frozenset(
    {
        "until_done",
        "get_final_message",
        "get_final_text",
        "get_final_completion",
        "get_final_response",
    }
)
_CONSUMING_SDKS = frozenset({"openai", "anthropic"})


def _sdk_of(stream: object) -> str:
    return type(stream).__module__.split(".", 1)[0]


def _has_anthropic_text_stream(stream: object) -> bool:
    return _sdk_of(stream) == "anthropic" and hasattr(type(stream), "text_stream")


def _is_text_delta(event: object) -> bool:
    # Anthropic's own `text_stream` yields the text of these events only.
    if getattr(event, "type", None) != "content_block_delta":
        return False
    return getattr(getattr(event, "delta", None), "type", None) == "text_delta"


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
        self._manager: Any = None
        self._iterator: Any = None
        self._turn = turn

    def __iter__(self) -> MeteredStream[T]:
        return self

    def __next__(self) -> T:
        if self._iterator is None:
            # Read an iterator directly, because `iter()` on an SDK stream makes a new
            # generator that would stay open when the stream is closed early.
            stream = self._stream
            self._iterator = stream if hasattr(stream, "__next__") else iter(stream)
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
        if self._iterator is not self._stream:
            close_iterator = getattr(self._iterator, "close", None)
            if close_iterator is not None:
                close_iterator()
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> MeteredStream[T]:
        enter = getattr(self._stream, "__enter__", None)
        if enter is not None:
            entered = enter()
            # Stream managers (anthropic's and openai's `.stream()` helpers) return the
            # stream they opened. The manager is kept because its `__exit__` must run.
            if entered is not None and entered is not self._stream:
                self._manager, self._stream = self._stream, entered
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        if exc is not None:
            self._turn.finish(metering._status_of(exc), type(exc).__name__)
        else:
            self._turn.finish("incomplete")
        owner = self._stream if self._manager is None else self._manager
        exit_ = getattr(owner, "__exit__", None)
        if exit_ is not None:
            return exit_(exc_type, exc, traceback)  # type: ignore[no-any-return]
        self.close()
        return None

    def __getattr__(self, name: str) -> Any:
        if name in _OWN_ATTRIBUTES:
            raise AttributeError(name)
        if name == "text_stream" and _has_anthropic_text_stream(self._stream):
            return self._text_stream()
        attribute = getattr(self._stream, name)
        if name in _CONSUMING_METHODS and _sdk_of(self._stream) in _CONSUMING_SDKS:
            return self._consuming(attribute)
        return attribute

    def _consuming(self, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def read_to_end_then_call(*args: Any, **kwargs: Any) -> Any:
            for _ in self:
                pass
            return method(*args, **kwargs)

        return read_to_end_then_call

    def _text_stream(self) -> Iterator[str]:
        for event in self:
            if _is_text_delta(event):
                yield event.delta.text  # type: ignore[attr-defined]

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
        self._manager: Any = None
        self._iterator: Any = None
        self._turn = turn

    def __aiter__(self) -> AsyncMeteredStream[T]:
        return self

    async def __anext__(self) -> T:
        if self._iterator is None:
            # Read an async iterator directly, because `__aiter__()` of an SDK stream makes an
            # async generator, and trio warns when it collects one unfinished.
            stream = self._stream
            self._iterator = stream if hasattr(stream, "__anext__") else stream.__aiter__()
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
        if self._iterator is not self._stream:
            close_iterator = getattr(self._iterator, "aclose", None)
            if close_iterator is not None:
                await close_iterator()
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
                self._manager, self._stream = self._stream, entered
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        if exc is not None:
            self._turn.finish(metering._status_of(exc), type(exc).__name__)
        else:
            self._turn.finish("incomplete")
        owner = self._stream if self._manager is None else self._manager
        exit_ = getattr(owner, "__aexit__", None)
        if exit_ is not None:
            return await exit_(exc_type, exc, traceback)  # type: ignore[no-any-return]
        await self.aclose()
        return None

    def __getattr__(self, name: str) -> Any:
        if name in _OWN_ATTRIBUTES:
            raise AttributeError(name)
        if name == "text_stream" and _has_anthropic_text_stream(self._stream):
            return self._text_stream()
        attribute = getattr(self._stream, name)
        if name in _CONSUMING_METHODS and _sdk_of(self._stream) in _CONSUMING_SDKS:
            return self._consuming(attribute)
        return attribute

    def _consuming(self, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        async def read_to_end_then_call(*args: Any, **kwargs: Any) -> Any:
            async for _ in self:
                pass
            result = method(*args, **kwargs)
            if inspect.isawaitable(result):
                return await result
            return result

        return read_to_end_then_call

    async def _text_stream(self) -> AsyncIterator[str]:
        async for event in self:
            if _is_text_delta(event):
                yield event.delta.text  # type: ignore[attr-defined]

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
        ("openai", "ChatCompletionStream"),
        ("openai", "AsyncChatCompletionStream"),
        ("openai", "ChatCompletionStreamManager"),
        ("openai", "AsyncChatCompletionStreamManager"),
        ("openai", "ResponseStream"),
        ("openai", "AsyncResponseStream"),
        ("openai", "ResponseStreamManager"),
        ("openai", "AsyncResponseStreamManager"),
        ("anthropic", "Stream"),
        ("anthropic", "AsyncStream"),
        ("anthropic", "MessageStream"),
        ("anthropic", "AsyncMessageStream"),
        ("anthropic", "MessageStreamManager"),
        ("anthropic", "AsyncMessageStreamManager"),
        ("anthropic", "BetaMessageStream"),
        ("anthropic", "BetaAsyncMessageStream"),
        ("anthropic", "BetaMessageStreamManager"),
        ("anthropic", "BetaAsyncMessageStreamManager"),
        ("groq", "Stream"),
        ("groq", "AsyncStream"),
        ("mistralai", "EventStream"),
        ("mistralai", "EventStreamAsync"),
        ("botocore", "EventStream"),
    }
)
_stream_types: dict[type, bool] = {}


def is_stream(obj: object) -> bool:
    """Tell whether a step returned a live stream.

    Live streams are SDK stream objects, generators, and streams that `metered_stream`
    already wraps.
    """
    kind = type(obj)
    known = _stream_types.get(kind)
    if known is None:
        root = kind.__module__.split(".", 1)[0]
        known = (
            (root, kind.__name__) in _SDK_STREAM_CLASSES
            or inspect.isgenerator(obj)
            or inspect.isasyncgen(obj)
            or issubclass(kind, MeteredStream | AsyncMeteredStream)
        )
        _stream_types[kind] = known
    return known


def wrap_returned_stream(
    stream: Any,
    options: metering._StepOptions,
    begun: tuple[int, int, int | None, metering.Meter | None],
    started_ns: int,
) -> Any:
    """Wrap a stream that a metered step returned, so its turn is recorded when it ends.

    A stream that the step already wrapped with `metered_stream` is returned unchanged. It
    records the stream's round as a child of the step, and the step records a turn without
    rounds.
    """
    if isinstance(stream, MeteredStream | AsyncMeteredStream):
        turn_id, run_id, parent_id, enclosing = begun
        metering._emit(options, turn_id, run_id, parent_id, started_ns, "ok", None, [], enclosing)
        return stream
    return _wrap(stream, _StreamTurn(options.provider, options, begun, started_ns))


def _wrap(stream: Any, turn: _StreamTurn) -> Any:
    if hasattr(stream, "__aiter__") or (
        hasattr(stream, "__aenter__") and not hasattr(stream, "__iter__")
    ):
        return AsyncMeteredStream(stream, turn)
    return MeteredStream(stream, turn)


_STREAM_METHODS = ("__iter__", "__next__", "__aiter__", "__anext__", "__enter__", "__aenter__")


def _check_stream(stream: object) -> None:
    kind = type(stream)
    if any(hasattr(kind, method) for method in _STREAM_METHODS):
        return
    message = (
        f"invalid stream for metered_stream: {stream!r} ({kind.__name__}). Expected an "
        "iterator or async iterator of stream events, or a context manager that opens one."
    )
    if inspect.isawaitable(stream):
        message += (
            " It is awaitable, so await it first, as in "
            "metered_stream(await client.chat.completions.create(..., stream=True))."
        )
    raise TypeError(message)


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

    The helpers of openai's and anthropic's stream objects that read the rest of the stream
    themselves (`get_final_message()`, `get_final_text()`, `get_final_completion()`,
    `get_final_response()`, `until_done()` and anthropic's `text_stream`) read it through
    the wrapper, so their events are metered too.

    Args:
        stream: An iterator or async iterator of provider events, or a context manager
            returning one (Anthropic's `messages.stream(...)`).
        agent, model, provider, tags, metadata, name: As for `metered_turn`.

    Raises:
        TypeError: if `stream` is neither an iterator, an async iterator, an iterable nor a
            context manager, for example a coroutine that was not awaited.
    """
    _check_stream(stream)
    provider = canonical_or_none(provider)
    options = metering._StepOptions(
        name or type(stream).__qualname__,
        agent,
        model,
        provider,
        metering._normalize_tags(tags),
        dict(metadata) if metadata else None,
    )
    return _wrap(stream, _StreamTurn(provider, options))
