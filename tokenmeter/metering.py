"""`metered_turn` and `meter()`: read usage on the caller's side and hand one event per turn on.

The caller's side does only what it must: read the token counts out of what a step returned,
take the time, and append an event to the delivery engine's queue. Pricing, validation and
I/O happen on the delivery thread.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from decimal import Decimal
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, cast, overload

from tokenmeter import _turns
from tokenmeter._billing import with_billing
from tokenmeter._logging import RateLimitedLog
from tokenmeter._turns import (
    Deferred,
    Round,
    TurnEvent,
    TurnOptions,
    canonical_or_none,
    read_round,
    resolve,
)
from tokenmeter.delivery import get_engine
from tokenmeter.extract import (
    StreamReader,
    stream_reader,
)
from tokenmeter.records import Cost
from tokenmeter.usage import AgentTurn, Usage

__all__ = ["Meter", "meter", "metered_turn"]

logger = logging.getLogger(__name__)
_limited = RateLimitedLog(logger)

P = ParamSpec("P")
R = TypeVar("R")

_Scope = tuple[int, int, "Meter | None"]
"""The innermost metered turn: its id, its run id, and the nearest enclosing `Meter`."""

_current: ContextVar[_Scope | None] = ContextVar("tokenmeter_turn", default=None)


def _normalize_tags(tags: Iterable[str] | Mapping[str, Any] | None) -> tuple[str, ...]:
    if tags is None:
        return ()
    if isinstance(tags, str):
        return (tags,)
    if isinstance(tags, Mapping):
        return tuple(f"{key}:{value}" for key, value in tags.items())
    try:
        return tuple(str(tag) for tag in tags)
    except TypeError:
        logger.error(
            "tokenmeter: tags=%r is invalid: expected a string, a list of strings or a mapping; "
            "the turns are recorded without tags",
            tags,
        )
        return ()


def _text_or_none(name: str, value: object) -> str | None:
    # Records store these as text; a number passed by mistake is kept, as text.
    if value is None or isinstance(value, str):
        return value
    logger.warning(
        "tokenmeter: %s=%r is not a string; it is recorded as %r", name, value, str(value)
    )
    return str(value)


def _json_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Copy `metadata`, replacing values JSON cannot hold by their text, so every sink can
    store the record: a value SQLite or JSON rejects would fail the whole batch."""
    if not metadata:
        return None
    import json

    try:
        return dict(json.loads(json.dumps(dict(metadata), default=str)))
    except (TypeError, ValueError) as error:
        logger.error(
            "tokenmeter: metadata=%r cannot be stored as JSON (%s); the turns are recorded "
            "without metadata",
            metadata,
            error,
        )
        return None


def _rounds_from_result(result: object, provider: str | None) -> list[Round]:
    """The rounds a step's return value reports: none, or one, read later (`Deferred`).

    Reading a response costs a few microseconds, so the caller only keeps a reference and
    the delivery thread reads it (or `Meter.usage`, when asked for a running total).
    """
    if result is None:
        return []
    # type() and issubclass() never run the object's own attribute hooks, which may raise.
    kind = type(result)
    if issubclass(kind, AgentTurn):
        result = cast(AgentTurn[Any], result)
        usage = result.usage
        if usage is None:
            return []
        if type(usage) is Usage:
            if result.batch:
                usage = with_billing(usage, batch=True)
            return [(usage, result.model, result.provider)]
        deferred = Deferred(usage, result.provider or provider, result.batch)
        return [(deferred, result.model, result.provider)]
    if kind is Usage:
        return [(cast(Usage, result), None, None)]
    return [(Deferred(result, provider), None, None)]


def _marked_batch(round_: Round) -> Round:
    usage, model, provider = round_
    if isinstance(usage, Deferred):
        return (Deferred(usage.obj, usage.provider, batch=True), model, provider)
    if usage is None:
        return round_
    return (with_billing(usage, batch=True), model, provider)


def _status_of(error: BaseException) -> str:
    # Cancellation and interpreter exit stop a turn half way; everything else is an error.
    if isinstance(error, Exception):
        return "error"
    return "incomplete"


_StepOptions = TurnOptions


def _begin() -> tuple[int, int, int | None, Meter | None]:
    parent = _current.get()
    turn_id = _turns.new_id()
    if parent is None:
        return turn_id, turn_id, None, None
    parent_id, run_id, enclosing_meter = parent
    return turn_id, run_id, parent_id, enclosing_meter


def _emit(
    options: _StepOptions,
    turn_id: int,
    run_id: int,
    parent_id: int | None,
    started_ns: int,
    status: str,
    error_type: str | None,
    rounds: list[Round],
    enclosing_meter: Meter | None,
) -> None:
    try:
        event = TurnEvent(
            turn_id,
            run_id,
            parent_id,
            options,
            started_ns,
            time.time_ns() - started_ns,
            status,
            error_type,
            rounds,
        )
        if enclosing_meter is not None and rounds:
            if options.batch:
                # The enclosing meter's running cost must see these rounds at batch prices.
                rounds = [_marked_batch(round_) for round_ in rounds]
            enclosing_meter._add_child_rounds(rounds, options.model, options.provider)
        get_engine().submit(event)
    except Exception as error:
        _limited.log(
            logging.ERROR,
            "emit",
            "tokenmeter: could not queue the record of turn %s: %r",
            options.name,
            error,
        )


# Return types known not to be streams, so the common case costs one set lookup.
_plain_result_types: set[type] = {type(None), str, AgentTurn, Usage}


def _is_stream(result: object) -> bool:
    kind = type(result)
    if kind in _plain_result_types:
        return False
    try:
        if kind is dict:
            # boto3's converse_stream() returns its event stream inside a dict.
            return "stream" in result and _is_stream(result["stream"])  # type: ignore[index, operator]
        from tokenmeter.streams import is_stream

        if is_stream(result):
            return True
    except Exception as error:
        # An object whose attribute access raises is not a stream we could wrap anyway.
        _limited.once(
            logging.WARNING,
            ("is-stream", kind),
            "tokenmeter: could not inspect a returned %s: %r",
            kind.__qualname__,
            error,
        )
        return False
    _plain_result_types.add(kind)
    return False


def _wrap_stream(
    result: object,
    options: TurnOptions,
    turn_id: int,
    run_id: int,
    parent_id: int | None,
    enclosing: Meter | None,
    started_ns: int,
) -> object:
    from tokenmeter.streams import wrap_returned_stream

    begun = (turn_id, run_id, parent_id, enclosing)
    if type(result) is dict:
        # The caller keeps its dict; only its event stream is replaced by the wrapper.
        result["stream"] = wrap_returned_stream(result["stream"], options, begun, started_ns)
        return result
    return wrap_returned_stream(result, options, begun, started_ns)


def _emit_failure(
    options: TurnOptions,
    turn_id: int,
    run_id: int,
    parent_id: int | None,
    started_ns: int,
    error: BaseException,
    enclosing: Meter | None,
) -> None:
    status = _status_of(error)
    _emit(
        options, turn_id, run_id, parent_id, started_ns, status, type(error).__name__, [], enclosing
    )


def _finish(
    result: object,
    options: TurnOptions,
    turn_id: int,
    run_id: int,
    parent_id: int | None,
    enclosing: Meter | None,
    started_ns: int,
) -> object:
    """Emit the turn of a step that returned `result`, and return what the caller gets."""
    if type(result) not in _plain_result_types and _is_stream(result):
        # A returned stream is metered when it ends; the caller gets a wrapper that yields
        # the same chunks.
        return _wrap_stream(result, options, turn_id, run_id, parent_id, enclosing, started_ns)
    rounds = _rounds_from_result(result, options.provider)
    _emit(options, turn_id, run_id, parent_id, started_ns, "ok", None, rounds, enclosing)
    return result


def _wrap_sync(function: Callable[P, R], options: _StepOptions) -> Callable[P, R]:
    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        turn_id, run_id, parent_id, enclosing = _begin()
        token = _current.set((turn_id, run_id, enclosing))
        started_ns = time.time_ns()
        try:
            result = function(*args, **kwargs)
        except BaseException as error:
            _current.reset(token)
            _emit_failure(options, turn_id, run_id, parent_id, started_ns, error, enclosing)
            raise
        _current.reset(token)
        # No typing.cast here: it is a real call, and this is the caller's hot path.
        return _finish(result, options, turn_id, run_id, parent_id, enclosing, started_ns)  # type: ignore[return-value]

    return wrapper


def _wrap_async(
    function: Callable[P, Awaitable[R]], options: _StepOptions
) -> Callable[P, Awaitable[R]]:
    @functools.wraps(function)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        turn_id, run_id, parent_id, enclosing = _begin()
        token = _current.set((turn_id, run_id, enclosing))
        started_ns = time.time_ns()
        try:
            result = await function(*args, **kwargs)
        except BaseException as error:
            _current.reset(token)
            _emit_failure(options, turn_id, run_id, parent_id, started_ns, error, enclosing)
            raise
        _current.reset(token)
        # No typing.cast here: it is a real call, and this is the caller's hot path.
        return _finish(result, options, turn_id, run_id, parent_id, enclosing, started_ns)  # type: ignore[return-value]

    return wrapper


class _ItemReader:
    """Reads the rounds a generator step yields: `AgentTurn`s, `Usage`s or stream events."""

    __slots__ = ("_provider", "_rounds", "_stream")

    def __init__(self, rounds: list[Round], provider: str | None) -> None:
        self._rounds = rounds
        self._provider = provider
        self._stream: StreamReader | None = None

    def note(self, item: object) -> None:
        if isinstance(item, (AgentTurn, Usage)):
            self._rounds.extend(_rounds_from_result(item, self._provider))
            return
        try:
            if self._stream is None:
                self._stream = stream_reader(self._provider)
            self._stream.feed(item)
        except Exception as error:
            _limited.log(
                logging.ERROR,
                ("stream-bug", type(item)),
                "tokenmeter: reading a %s yielded by a metered generator failed: %r",
                type(item).__qualname__,
                error,
            )

    def finish(self, returned: object) -> None:
        if isinstance(returned, (AgentTurn, Usage)):
            self._rounds.extend(_rounds_from_result(returned, self._provider))
        if self._stream is None:
            return
        try:
            reading = self._stream.finish()
        except Exception as error:
            _limited.log(
                logging.ERROR, "stream-finish", "tokenmeter: reading a stream failed: %r", error
            )
            return
        if reading.usage is not None:
            self._rounds.append((reading.usage, reading.model, self._provider or reading.provider))


class _Tap:
    """Delegates to a generator, showing each item it yields to an `_ItemReader`."""

    __slots__ = ("_generator", "_reader")

    def __init__(self, generator: Any, reader: _ItemReader) -> None:
        self._generator = generator
        self._reader = reader

    def __iter__(self) -> _Tap:
        return self

    def __next__(self) -> Any:
        item = next(self._generator)
        self._reader.note(item)
        return item

    def send(self, value: Any) -> Any:
        item = self._generator.send(value)
        self._reader.note(item)
        return item

    def throw(self, *args: Any) -> Any:
        item = self._generator.throw(*args)
        self._reader.note(item)
        return item

    def close(self) -> None:
        self._generator.close()


def _wrap_generator(
    function: Callable[P, Iterator[Any]], options: _StepOptions
) -> Callable[P, Any]:
    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        turn_id, run_id, parent_id, enclosing = _begin()
        started_ns = time.time_ns()
        rounds: list[Round] = []
        reader = _ItemReader(rounds, options.provider)
        status, error_type = "ok", None
        token = _current.set((turn_id, run_id, enclosing))
        try:
            generator = function(*args, **kwargs)
        finally:
            _current.reset(token)
        try:
            # `yield from` forwards send(), throw() and close(), and returns the return value.
            returned = yield from _Tap(generator, reader)
            reader.finish(returned)
            return returned
        except GeneratorExit:
            status, error_type = "incomplete", "GeneratorExit"
            reader.finish(None)
            raise
        except BaseException as error:
            status, error_type = _status_of(error), type(error).__name__
            reader.finish(None)
            raise
        finally:
            _emit(
                options,
                turn_id,
                run_id,
                parent_id,
                started_ns,
                status,
                error_type,
                rounds,
                enclosing,
            )

    return wrapper


def _wrap_async_generator(
    function: Callable[P, AsyncIterator[Any]], options: _StepOptions
) -> Callable[P, Any]:
    @functools.wraps(function)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        turn_id, run_id, parent_id, enclosing = _begin()
        started_ns = time.time_ns()
        rounds: list[Round] = []
        status, error_type = "ok", None
        token = _current.set((turn_id, run_id, enclosing))
        try:
            generator = function(*args, **kwargs)
        finally:
            _current.reset(token)
        agen = cast(Any, generator)
        reader = _ItemReader(rounds, options.provider)
        try:
            to_send: Any = None
            to_throw: BaseException | None = None
            while True:
                try:
                    if to_throw is not None:
                        item = await agen.athrow(to_throw)
                    else:
                        item = await agen.asend(to_send)
                except StopAsyncIteration:
                    break
                to_throw = None
                reader.note(item)
                try:
                    to_send = yield item
                except GeneratorExit:
                    await agen.aclose()
                    raise
                except BaseException as thrown:
                    to_throw = thrown
            reader.finish(None)
        except GeneratorExit:
            status, error_type = "incomplete", "GeneratorExit"
            reader.finish(None)
            raise
        except BaseException as error:
            status, error_type = _status_of(error), type(error).__name__
            reader.finish(None)
            raise
        finally:
            _emit(
                options,
                turn_id,
                run_id,
                parent_id,
                started_ns,
                status,
                error_type,
                rounds,
                enclosing,
            )

    return wrapper


@overload
def metered_turn(function: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def metered_turn(
    *,
    agent: str | None = None,
    model: str | None = None,
    provider: str | None = None,
    tags: Iterable[str] | Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    name: str | None = None,
    batch: bool = False,
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def metered_turn(
    function: Callable[P, R] | None = None,
    /,
    *,
    agent: str | None = None,
    model: str | None = None,
    provider: str | None = None,
    tags: Iterable[str] | Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    name: str | None = None,
    batch: bool = False,
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Meter every call of an agent step: one record per call, in the background.

    Use it bare (`@metered_turn`) or with options. The step may be a sync or async function
    or generator, or an object with an async `__call__`. Its return value is read for token
    usage: an `AgentTurn`, a provider response (SDK object or dict), or anything with a
    `usage` attribute. The value is
    returned untouched, except a live stream, which comes back wrapped so that its usage
    can be read when it ends. Exceptions propagate untouched and are recorded with
    `status="error"`.

    Args:
        agent: Name of the agent the step belongs to, for reports.
        model: Model to price with when the response does not name one.
        provider: Provider id or alias (`openai`, `anthropic`, `xai`, ...). It overrides
            detection from the response's shape, which cannot tell OpenAI-compatible APIs
            apart.
        tags: Labels to filter and group by; a mapping becomes `key:value` tags.
        metadata: JSON-serializable data stored with each record.
        name: The step's name in records; the function's qualified name by default.
        batch: Whether every round of the step runs as a batch job, priced at batch prices.

    Raises:
        TypeError: if `function` is not callable.
    """
    normalized_tags = _normalize_tags(tags)
    metadata_dict = _json_metadata(metadata)

    def decorate(target: Callable[P, R]) -> Callable[P, R]:
        if not callable(target):
            raise TypeError(
                f"metered_turn decorates functions, got {target!r} ({type(target).__name__})"
            )
        options = _StepOptions(
            _text_or_none("name", name) or getattr(target, "__qualname__", None) or repr(target),
            _text_or_none("agent", agent),
            _text_or_none("model", model),
            canonical_or_none(provider),
            normalized_tags,
            metadata_dict,
            batch,
        )
        call = getattr(target, "__call__", None)  # noqa: B004 - objects with async __call__
        if inspect.isasyncgenfunction(target):
            return cast(Callable[P, R], _wrap_async_generator(cast(Any, target), options))
        if inspect.iscoroutinefunction(target) or (
            not inspect.isfunction(target)
            and not inspect.ismethod(target)
            and inspect.iscoroutinefunction(call)
        ):
            return cast(Callable[P, R], _wrap_async(cast(Any, target), options))
        if inspect.isgeneratorfunction(target):
            return cast(Callable[P, R], _wrap_generator(cast(Any, target), options))
        return _wrap_sync(target, options)

    if function is not None:
        return decorate(function)
    return decorate


class Meter:
    """A metered turn made of explicit rounds: `with meter(...) as m: m.add(response)`.

    Usable as `with` and `async with`. `add()` records one LLM call; at exit the meter
    emits one record holding the rounds added to it, with `status="error"` when the block
    raised. Metered steps and meters inside the block emit their own records, sharing this
    meter's run id, so summing every record never counts a round twice. `usage` and `cost`
    are running totals of the whole block, those children included.
    """

    def __init__(
        self,
        *,
        agent: str | None = None,
        name: str | None = None,
        model: str | None = None,
        provider: str | None = None,
        tags: Iterable[str] | Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self._options = _StepOptions(
            _text_or_none("name", name),
            _text_or_none("agent", agent),
            _text_or_none("model", model),
            canonical_or_none(provider),
            _normalize_tags(tags),
            _json_metadata(metadata),
        )
        self._rounds: list[Round] = []
        self._child_rounds: list[tuple[Round, str | None, str | None]] = []
        self._lock = threading.Lock()
        self._state = "new"
        self._id = 0
        self._run_id = 0
        self._parent_id: int | None = None
        self._enclosing: Meter | None = None
        self._started_ns = 0
        self._token: Any = None

    @property
    def run_id(self) -> str | None:
        """The run id shared with every turn inside this block, once entered."""
        if not self._id:
            return None
        from uuid import UUID

        return str(UUID(int=self._run_id))

    def add(
        self,
        response_or_usage: object,
        *,
        model: str | None = None,
        provider: str | None = None,
        batch: bool = False,
    ) -> Usage | None:
        """Record one round: a provider response, a usage object or dict, or a `Usage`.

        `batch=True` marks the round as a batch job (OpenAI Batch API, Anthropic Message
        Batches...), priced at batch prices. Results read from batch output files are
        recognized as batch without it.

        Returns the usage read from it, or None when it reports none (the round is still
        counted, as unmeasured). Never raises on bad input: it logs a warning instead.
        """
        provider = provider or self._options.provider
        if isinstance(response_or_usage, AgentTurn):
            rounds = _rounds_from_result(response_or_usage, provider)
            round_ = resolve(rounds[0], None, None) if rounds else (None, model, provider)
            if model:
                round_ = (round_[0], model, round_[2])
        else:
            round_ = read_round(response_or_usage, model, provider)
        if batch and round_[0] is not None:
            round_ = (with_billing(round_[0], batch=True), round_[1], round_[2])

        with self._lock:
            late = self._state != "open"
            if not late:
                self._rounds.append(round_)
        if late:
            _limited.log(
                logging.WARNING,
                ("late-add", id(self)),
                "tokenmeter: meter %r received add() outside its with block; the round is "
                "recorded as a separate turn",
                self._options.name or self._options.agent,
            )
            _emit(
                self._options,
                _turns.new_id(),
                self._run_id or _turns.new_id(),
                self._id or None,
                time.time_ns(),
                "ok",
                None,
                [round_],
                None,
            )
        elif self._enclosing is not None:
            self._enclosing._add_child_rounds([round_], self._options.model, self._options.provider)
        return round_[0]

    def _add_child_rounds(
        self, rounds: list[Round], model: str | None, provider: str | None
    ) -> None:
        entries = [(round_, model, provider) for round_ in rounds]
        self._add_child_entries(entries)

    def _add_child_entries(self, entries: list[tuple[Round, str | None, str | None]]) -> None:
        # Each entry keeps the defaults of the step or meter that produced it, because a
        # response's own model must win over them when the round is finally read.
        with self._lock:
            self._child_rounds.extend(entries)
        if self._enclosing is not None:
            self._enclosing._add_child_entries(entries)

    def _all_rounds(self) -> list[tuple[Usage | None, str | None, str | None]]:
        with self._lock:
            own = [(round_, self._options.model, self._options.provider) for round_ in self._rounds]
            entries = own + list(self._child_rounds)
        return [resolve(round_, model, provider) for round_, model, provider in entries]

    @property
    def usage(self) -> Usage:
        """Tokens of every measured round in the block so far, children included."""
        total = Usage()
        for usage, _, _ in self._all_rounds():
            if usage is not None:
                total = total + usage
        return total

    @property
    def cost(self) -> Cost | None:
        """Cost of the block so far, children included; None while some round is unpriced.

        Prices each round on the caller's thread (cached after each model's first lookup).
        """
        from tokenmeter.pricing import estimate_cost

        costs: list[Cost] = []
        for usage, model, provider in self._all_rounds():
            if usage is None:
                continue
            cost = estimate_cost(usage, model, provider) if model else None
            if cost is None:
                return None
            costs.append(cost)
        if not costs:
            return Cost(total_usd=Decimal(0))
        return sum(costs[1:], costs[0])

    @property
    def rounds(self) -> int:
        """Rounds added to this meter itself, measured or not."""
        return len(self._rounds)

    def _enter(self) -> Meter:
        with self._lock:
            if self._state != "new":
                raise RuntimeError(
                    "this meter was already entered; create a new meter() for each turn"
                )
            self._state = "open"
        self._id, self._run_id, self._parent_id, self._enclosing = _begin()
        self._token = _current.set((self._id, self._run_id, self))
        self._started_ns = time.time_ns()
        return self

    def _exit(self, error: BaseException | None) -> None:
        with self._lock:
            self._state = "closed"
            rounds = list(self._rounds)
        # ValueError means the block exited in another context (task) than it entered in.
        # The context var then returns to its previous value when that context ends.
        with contextlib.suppress(ValueError):
            _current.reset(self._token)
        if error is None:
            status, error_type = "ok", None
        else:
            status, error_type = _status_of(error), type(error).__name__
        # Children already reported their own rounds to the enclosing meter.
        _emit(
            self._options,
            self._id,
            self._run_id,
            self._parent_id,
            self._started_ns,
            status,
            error_type,
            rounds,
            None,
        )

    def __enter__(self) -> Meter:
        return self._enter()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._exit(exc)

    async def __aenter__(self) -> Meter:
        return self._enter()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._exit(exc)

    def __repr__(self) -> str:
        return (
            f"<tokenmeter.Meter agent={self._options.agent!r} state={self._state} "
            f"rounds={len(self._rounds)}>"
        )


Meter.__module__ = "tokenmeter"


def meter(
    *,
    agent: str | None = None,
    name: str | None = None,
    model: str | None = None,
    provider: str | None = None,
    tags: Iterable[str] | Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Meter:
    """Meter a block of code as one turn: `with meter(agent="bot") as m: m.add(response)`.

    Args:
        agent: Name of the agent, for reports.
        name: Name of the turn in records.
        model: Model to price rounds with when neither `add()` nor the response names one.
        provider: Provider id or alias, overriding detection from responses.
        tags: Labels to filter and group by; a mapping becomes `key:value` tags.
        metadata: JSON-serializable data stored with the record.
    """
    return Meter(
        agent=agent, name=name, model=model, provider=provider, tags=tags, metadata=metadata
    )
