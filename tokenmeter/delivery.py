"""The delivery engine: one background thread that prices, batches, retries and spools records.

Callers append `TurnEvent`s to a deque and return. The delivery thread runs its own asyncio
event loop (asyncio, because sinks such as asyncpg and aiosqlite need it), turns events into priced
`UsageRecord`s, and gives each sink its own worker task, so a hanging sink delays no other.
A batch that exhausts its retries, or that does not fit in memory, goes to the local spool
and is replayed once its sink takes writes again.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hashlib
import logging
import math
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.lowlevel
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from tokenmeter._logging import RateLimitedLog
from tokenmeter._turns import TurnEvent, build_record
from tokenmeter.config import DEFAULT_SINK, Settings, settings_from_env
from tokenmeter.records import UsageRecord
from tokenmeter.sinks.base import Sink
from tokenmeter.spool import Spool

__all__ = ["DeliveryStats", "Engine", "SinkStats", "flush_on_signal", "get_engine"]

logger = logging.getLogger(__name__)
_limited = RateLimitedLog(logger)


@dataclass
class SinkStats:
    """Counts of what happened to the records sent to one sink."""

    delivered: int = 0
    retried_batches: int = 0
    """Write attempts that failed and were tried again."""
    failed_batches: int = 0
    """Batches whose every attempt failed; their records went to the spool."""
    spooled: int = 0
    replayed: int = 0
    """Records read back from the spool and delivered."""
    dropped: dict[str, int] = field(default_factory=dict)
    """Records lost, by reason: only when the spool could not be written either."""
    pending: int = 0
    """Records accepted but not yet written, spooled or dropped."""
    pending_bytes: int = 0
    """Estimated memory of the records waiting in the queue."""
    last_error: str | None = None


@dataclass
class DeliveryStats:
    """A snapshot of the delivery engine's counters, from `tokenmeter.stats()`."""

    state: str
    produced: int
    """Turns handed to tokenmeter since the engine started."""
    queued: int
    """Turns not yet turned into records."""
    build_errors: int
    """Turns that could not become a record (a bug in tokenmeter, logged with the turn id)."""
    queue_full_drops: int
    """Turns dropped on the caller's side because the queue was full."""
    sinks: dict[str, SinkStats]

    @property
    def delivered(self) -> int:
        return sum(s.delivered for s in self.sinks.values())

    @property
    def spooled(self) -> int:
        return sum(s.spooled for s in self.sinks.values())

    @property
    def dropped(self) -> int:
        """Records lost: those no sink or spool could take, and turns the full queue rejected."""
        return self.queue_full_drops + sum(sum(s.dropped.values()) for s in self.sinks.values())


class SinkRaisedBaseException(Exception):
    """A sink's write raised a BaseException that is not cancellation, such as SystemExit."""


async def _guarded_write(sink: Sink, batch: Sequence[UsageRecord]) -> None:
    # A sink raising SystemExit or KeyboardInterrupt must fail its batch, not end the
    # delivery thread. Cancellation from tokenmeter's own timeouts passes through.
    try:
        await sink.write(batch)
    except Exception:
        raise
    except BaseException as error:
        task = asyncio.current_task()
        cancelled = isinstance(error, asyncio.CancelledError) and (
            task is not None and task.cancelling() > 0
        )
        if cancelled:
            raise
        raise SinkRaisedBaseException(f"the sink raised {error!r}") from error


class _Channel:
    """One sink, the records waiting for it, and its counters."""

    def __init__(self, sink: Sink, label: str, spool: Spool) -> None:
        self.sink = sink
        self.label = label
        self.spool = spool
        self.pending: deque[tuple[UsageRecord, int]] = deque()
        """Records waiting for this sink, each with its estimated size in bytes."""
        self.pending_bytes = 0
        self.in_flight = 0
        self.settled = 0
        """Records written, spooled or dropped so far, in arrival order."""
        self.wake = asyncio.Event()
        self.stats = SinkStats()
        self.scope: anyio.CancelScope | None = None
        self.down = False
        """Set when a batch exhausted its retries, cleared by the next successful write."""


def _sink_label(spec: Any, sink: Sink) -> str:
    if isinstance(spec, str):
        from tokenmeter.sinks.urls import mask_url

        return mask_url(spec)
    return repr(sink)


def _spool_key(spec: Any, sink: Sink) -> str:
    """Name the spool directory of a sink: the same sink gets the same key in every process.

    A `spool_key` attribute wins. Otherwise the key is the sink's `url` attribute (the
    built-in file sinks give their absolute path), or else the URL the sink was opened
    from, with its password masked. So a sink object and its URL share a spool, and a
    changed password does not orphan one. Other objects fall back to their class name,
    which every object of that class then shares.
    """
    from tokenmeter.sinks.urls import mask_url

    ident: object
    url = getattr(sink, "url", None)
    if getattr(sink, "spool_key", None):
        ident = sink.spool_key  # type: ignore[attr-defined]
    elif isinstance(url, str):
        ident = mask_url(url)
    elif isinstance(spec, str):
        ident = mask_url(spec.strip())
    else:
        ident = f"{type(sink).__module__}.{type(sink).__qualname__}"
    return hashlib.sha256(str(ident).encode()).hexdigest()[:16]


class Engine:
    """The process's delivery engine. Lifecycle: not started, running, closed.

    `submit` is the only method on the metering path: it appends to a deque and wakes the
    delivery thread only when a batch is full, so a caller pays well under a microsecond.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._queue: deque[TurnEvent] = deque()
        self._state = "not started"
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = threading.Event()
        self._stopped = threading.Event()
        self._wake_requested = False
        self._wake_event: asyncio.Event | None = None
        self._stopping = False
        self._abort = False
        self._channels: list[_Channel] = []
        self._drained = 0
        self._build_errors = 0
        self._flush_waiters: list[tuple[int, threading.Event]] = []
        self._wake_threshold = settings.batch_size
        # The caller-side bound is looser than the per-sink one, which spills to the spool:
        # past this one, turns can only be dropped.
        self._max_queued = max(4 * settings.max_queue, 100_000)
        self._overflowed = 0
        """Turns dropped because the caller-side queue was full; updated without a lock, so
        concurrent callers may undercount it slightly."""
        self._overflow_logged = 0
        self._spill_tasks: set[asyncio.Task[Any]] = set()
        # How often an idle worker retries its spool, whose sink may be back.
        self._probe_interval_s = min(_REPLAY_INTERVAL_S, max(0.01, 2 * settings.retry_max_s))
        self._enabled = settings.enabled

    # -- caller side -------------------------------------------------------------------

    def submit(self, event: TurnEvent) -> None:
        """Queue one turn for delivery. Never blocks, never raises, does no I/O.

        The queue holds at most four times `max_queue` turns (100,000 at least). A caller
        that outpaces the delivery thread for that long (it prices tens of thousands of
        turns a second) loses the turns past the bound: they are counted in `stats()` and
        logged by the delivery thread.
        """
        if not self._enabled:
            return
        queue = self._queue
        if len(queue) >= self._max_queued:
            self._overflowed += 1
            if not self._wake_requested:
                self._request_wake()
            return
        queue.append(event)
        if self._state != "running":
            self._start_or_note()
            return
        if len(queue) >= self._wake_threshold and not self._wake_requested:
            self._request_wake()

    def _start_or_note(self) -> None:
        with self._lock:
            if self._state == "running":
                return
            if self._state == "closed":
                # Records after shutdown() restart the engine rather than vanish.
                logger.info("tokenmeter: delivery was stopped or crashed; restarting it")
                self._reset_for_restart()
            self._start_locked()

    def _reset_for_restart(self) -> None:
        self._started = threading.Event()
        self._stopped = threading.Event()
        self._stopping = False
        self._abort = False
        self._channels = []

    def start(self) -> None:
        with self._lock:
            if self._state == "running":
                return
            if self._state == "closed":
                self._reset_for_restart()
            self._start_locked()

    def _start_locked(self) -> None:
        self._state = "running"
        self._thread = threading.Thread(
            target=self._thread_main, name="tokenmeter-delivery", daemon=True
        )
        self._thread.start()
        _register_exit_handler()

    def _request_wake(self) -> None:
        loop = self._loop
        if loop is None:
            return
        self._wake_requested = True
        try:
            loop.call_soon_threadsafe(self._set_wake)
        except RuntimeError:
            # The loop closed between the check and the call: the engine is shutting down.
            self._wake_requested = False

    def _set_wake(self) -> None:
        if self._wake_event is not None:
            self._wake_event.set()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every turn submitted so far is delivered or spooled.

        Returns True when that happened within `timeout` seconds, False otherwise. Safe to
        call from any thread, but it blocks: from async code use `aflush()`.
        """
        if self._state != "running":
            return not self._queue
        return self._flush(timeout)

    def _flush(self, timeout: float | None) -> bool:
        if not self._started.wait(timeout):
            return False
        done = threading.Event()
        loop = self._loop
        if loop is None:
            return not self._queue
        try:
            loop.call_soon_threadsafe(self._add_flush_waiter, done)
        except RuntimeError:
            return not self._queue
        return done.wait(timeout)

    def _add_flush_waiter(self, done: threading.Event) -> None:
        # The target counts turns: everything queued before this flush request arrived.
        self._flush_waiters.append((self._drained + len(self._queue), done))
        self._check_flush_waiters()
        self._set_wake()

    def shutdown(self, timeout: float | None = None) -> bool:
        """Deliver what is pending within `timeout` seconds, spool the rest, close the sinks.

        Idempotent. Returns True when nothing had to be spooled or dropped at shutdown.
        """
        timeout = self.settings.flush_timeout_s if timeout is None else timeout
        with self._lock:
            if self._state != "running":
                self._state = "closed"
                return True
            self._state = "closed"
        started = time.monotonic()

        delivered_in_time = self._flush(timeout)
        loop = self._loop
        if loop is not None:
            self._stopping = True
            self._abort = not delivered_in_time
            # RuntimeError: the loop already closed, so there is nothing left to stop.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._stop_soon)
        # Spooling what is left needs a moment even when the flush timed out.
        grace = max(1.0, timeout - (time.monotonic() - started))
        stopped = self._stopped.wait(grace)
        if not stopped:
            unsettled = len(self._queue) + sum(
                len(channel.pending) + channel.in_flight for channel in self._channels
            )
            logger.error(
                "tokenmeter: the delivery thread did not stop within %.1f s, because a sink "
                "write did not return; %d records not yet written or spooled may be lost",
                timeout + grace,
                unsettled,
            )
        self._log_summary()
        return delivered_in_time and stopped

    def _stop_soon(self) -> None:
        self._set_wake()
        for channel in self._channels:
            channel.wake.set()
            if self._abort and channel.scope is not None:
                channel.scope.cancel()

    def stats(self) -> DeliveryStats:
        sinks: dict[str, SinkStats] = {}
        for channel in list(self._channels):
            snapshot = SinkStats(**vars(channel.stats))
            snapshot.dropped = dict(channel.stats.dropped)
            snapshot.pending = len(channel.pending) + channel.in_flight
            snapshot.pending_bytes = channel.pending_bytes
            sinks[channel.label] = snapshot
        return DeliveryStats(
            state=self._state,
            produced=self._drained + len(self._queue) + self._overflowed,
            queued=len(self._queue),
            build_errors=self._build_errors,
            queue_full_drops=self._overflowed,
            sinks=sinks,
        )

    def _log_summary(self) -> None:
        stats = self.stats()
        if stats.spooled or stats.dropped or stats.build_errors:
            logger.warning(
                "tokenmeter: shut down after %d turns: %d records delivered, %d spooled, "
                "%d dropped, %d could not be built",
                stats.produced,
                stats.delivered,
                stats.spooled,
                stats.dropped,
                stats.build_errors,
            )
        else:
            logger.info(
                "tokenmeter: shut down after %d turns, %d records delivered",
                stats.produced,
                stats.delivered,
            )

    # -- delivery thread ---------------------------------------------------------------

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._main())
        except BaseException:
            logger.exception(
                "tokenmeter: the delivery thread crashed; the next metered turn restarts it, "
                "and records it held may be lost"
            )
            with self._lock:
                if self._state == "running":
                    self._state = "closed"
        finally:
            self._loop = None
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
                self._stopped.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake_event = asyncio.Event()
        self._channels = self._open_channels()
        self._started.set()
        logger.info(
            "tokenmeter: delivery started with %d sink(s): %s",
            len(self._channels),
            ", ".join(channel.label for channel in self._channels),
        )

        async with anyio.create_task_group() as tasks:
            for channel in self._channels:
                tasks.start_soon(self._channel_worker, channel)
            await self._dispatch()

        for channel in self._channels:
            try:
                await channel.sink.aclose()
            except Exception as error:
                logger.warning("tokenmeter: closing sink %s failed: %r", channel.label, error)

    def _open_channels(self) -> list[_Channel]:
        from tokenmeter.sinks import open_sink

        channels: list[_Channel] = []
        from_env = self.settings.sink_from_env
        for spec in self.settings.sink:
            try:
                # configure() already checked its URLs. Checking them again here would turn
                # a passing problem (a late mount) into records rerouted for good, whereas
                # an unchecked sink fails its writes and spools under its own key.
                sink = open_sink(spec, check=from_env) if isinstance(spec, str) else spec
            except (ValueError, ImportError, OSError) as error:
                from tokenmeter.sinks.urls import mask_url

                label = mask_url(spec) if isinstance(spec, str) else repr(spec)
                logger.error(
                    "tokenmeter: TOKENMETER_SINK entry %r is invalid (%s); records go to %s "
                    "instead. Accepted forms: jsonl:PATH, sqlite:///PATH, postgresql://..., "
                    "stdout, stdout:json, none",
                    label,
                    error,
                    DEFAULT_SINK,
                )
                spec = DEFAULT_SINK
                if any(channel.label == DEFAULT_SINK for channel in channels):
                    continue  # several invalid entries share one fallback, not one each
                sink = open_sink(spec)
            spool = Spool(self.settings.spool_dir, _spool_key(spec, sink), _sink_label(spec, sink))
            channels.append(_Channel(sink, _sink_label(spec, sink), spool))
        return channels

    async def _dispatch(self) -> None:
        assert self._wake_event is not None
        while True:
            with anyio.move_on_after(self.settings.flush_interval_s):
                await self._wake_event.wait()
            self._wake_event = asyncio.Event()
            self._wake_requested = False

            await self._drain_all()
            if self._stopping:
                break

        await self._drain_all()
        for channel in self._channels:
            channel.wake.set()
        if self._spill_tasks:
            # Spills started from _drain hold records that are in no queue; the loop must
            # not close before they reach the disk.
            await asyncio.gather(*list(self._spill_tasks), return_exceptions=True)
        if self._abort:
            await self._spool_all_pending()

    async def _spool_all_pending(self) -> None:
        """Spool every channel's pending records from here, not from its worker.

        A worker stuck in a write that ignores cancellation (a blocking client in a thread)
        would never reach its pending records, so they would die with the process.
        """
        for channel in self._channels:
            if not channel.pending:
                continue
            records = [record for record, _ in channel.pending]
            channel.pending.clear()
            channel.pending_bytes = 0
            channel.in_flight += len(records)
            await self._spool_batch(channel, records, reason="shutdown timeout")

    async def _drain_all(self) -> None:
        overflowed = self._overflowed
        if overflowed > self._overflow_logged:
            _limited.log(
                logging.ERROR,
                "overflow",
                "tokenmeter: %d turns were dropped because callers metered faster than the "
                "delivery thread could price them and the queue reached its bound of %d "
                "turns (four times TOKENMETER_MAX_QUEUE, 100,000 at least); raise "
                "TOKENMETER_MAX_QUEUE",
                overflowed - self._overflow_logged,
                self._max_queued,
            )
            self._overflow_logged = overflowed
        # Chunks keep the loop responsive: sink workers write while a burst is being priced.
        while self._drain(_DRAIN_CHUNK):
            self._check_flush_waiters()
            await anyio.lowlevel.checkpoint()
        self._check_flush_waiters()

    def _drain(self, limit: int | None = None) -> int:
        """Move up to `limit` queued turns, as priced records, to each sink's pending queue.

        Returns how many turns were taken from the queue.
        """
        queue = self._queue
        records: list[UsageRecord] = []
        taken = 0
        while queue and (limit is None or taken < limit):
            event = queue.popleft()
            taken += 1
            try:
                records.append(build_record(event))
            except Exception:
                self._build_errors += 1
                # A turn that cannot become a record counts as settled, so flush() ends.
                for channel in self._channels:
                    channel.settled += 1
                _limited.log(
                    logging.ERROR,
                    "build",
                    "tokenmeter: could not build a record for turn %s; it is lost",
                    event.id,
                    exc_info=None,
                )
                logger.debug("record build failure", exc_info=True)
        self._drained += taken
        if records:
            sized = [(record, _estimate_bytes(record)) for record in records]
            added_bytes = sum(size for _, size in sized)
            for channel in self._channels:
                channel.pending.extend(sized)
                channel.pending_bytes += added_bytes
                self._spill_overflow(channel)
                channel.wake.set()
        return taken

    def _spill_overflow(self, channel: _Channel) -> None:
        """Send the oldest pending records to the spool while the queue is over its bounds."""
        settings = self.settings
        if (
            len(channel.pending) <= settings.max_queue
            and channel.pending_bytes <= settings.max_queue_bytes
        ):
            return
        spilled: list[UsageRecord] = []
        while channel.pending and (
            len(channel.pending) > settings.max_queue
            or channel.pending_bytes > settings.max_queue_bytes
        ):
            record, size = channel.pending.popleft()
            channel.pending_bytes -= size
            spilled.append(record)
        channel.in_flight += len(spilled)
        self._loop_spawn(self._spool_batch(channel, spilled, reason="queue full"))

    def _loop_spawn(self, coroutine: Any) -> None:
        loop = asyncio.get_running_loop()
        task = loop.create_task(coroutine)
        self._spill_tasks.add(task)
        task.add_done_callback(self._spill_tasks.discard)

    def _check_flush_waiters(self) -> None:
        if not self._flush_waiters:
            return
        settled = min((c.settled for c in self._channels), default=self._drained)
        remaining = []
        for target, done in self._flush_waiters:
            if settled >= target:
                done.set()
            else:
                remaining.append((target, done))
        self._flush_waiters = remaining

    async def _channel_worker(self, channel: _Channel) -> None:
        if channel.spool.has_files():
            await self._replay(channel)
        while True:
            if not channel.pending:
                if self._stopping:
                    return
                # With batches in the spool, wake now and then to replay them even when no
                # new records arrive to show that the sink is back.
                waiting_spool = channel.spool.has_files()
                with anyio.move_on_after(self._probe_interval_s if waiting_spool else math.inf):
                    await channel.wake.wait()
                channel.wake.clear()
                if waiting_spool and not channel.pending and not self._stopping:
                    await self._replay(channel)
                continue

            batch = self._take_batch(channel)
            channel.in_flight += len(batch)
            if self._abort:
                await self._spool_batch(channel, batch, reason="shutdown timeout")
                continue
            delivered = await self._write_with_retry(channel, batch)
            if delivered:
                self._settle(channel, len(batch))
                channel.stats.delivered += len(batch)
                logger.debug("tokenmeter: wrote %d records to %s", len(batch), channel.label)
                if channel.spool.has_files() and not self._stopping:
                    await self._replay(channel)
            else:
                await self._spool_batch(channel, batch, reason="retries exhausted")

    def _take_batch(self, channel: _Channel) -> list[UsageRecord]:
        size = min(self.settings.batch_size, len(channel.pending))
        batch = []
        taken_bytes = 0
        for _ in range(size):
            record, record_bytes = channel.pending.popleft()
            batch.append(record)
            taken_bytes += record_bytes
        channel.pending_bytes -= taken_bytes
        return batch

    def _settle(self, channel: _Channel, count: int) -> None:
        channel.in_flight -= count
        channel.settled += count
        self._check_flush_waiters()

    async def _write_with_retry(self, channel: _Channel, batch: Sequence[UsageRecord]) -> bool:
        settings = self.settings

        def before_sleep(state: RetryCallState) -> None:
            channel.stats.retried_batches += 1
            error = state.outcome.exception() if state.outcome else None
            channel.stats.last_error = repr(error)
            _limited.log(
                logging.WARNING,
                ("retry", channel.label),
                "tokenmeter: writing %d records to %s failed (attempt %d of %d): %r; retrying",
                len(batch),
                channel.label,
                state.attempt_number,
                settings.retry_attempts,
                error,
            )

        # A sink whose last batch exhausted its retries gets one attempt per batch until a
        # write succeeds again, so its backlog reaches the spool at the rate records arrive.
        attempts = 1 if channel.down else settings.retry_attempts
        retrying = AsyncRetrying(
            stop=stop_after_attempt(attempts),
            wait=wait_exponential_jitter(
                initial=settings.retry_initial_s, max=settings.retry_max_s
            ),
            retry=retry_if_exception_type(Exception),
            before_sleep=before_sleep,
            reraise=True,
            sleep=anyio.sleep,
        )
        with anyio.CancelScope() as scope:
            channel.scope = scope
            try:
                async for attempt in retrying:
                    with attempt:
                        with anyio.fail_after(settings.write_timeout_s):
                            await _guarded_write(channel.sink, batch)
                channel.down = False
                return True
            except Exception as error:
                channel.down = True
                channel.stats.failed_batches += 1
                channel.stats.last_error = repr(error)
                _limited.log(
                    logging.ERROR,
                    ("failed", channel.label),
                    "tokenmeter: writing %d records to %s failed after %d attempts: %r; "
                    "spooling them for replay",
                    len(batch),
                    channel.label,
                    attempts,
                    error,
                )
                return False
            finally:
                channel.scope = None
        # Reached when shutdown cancelled the write: the batch goes to the spool.
        return False

    async def _spool_batch(
        self, channel: _Channel, batch: Sequence[UsageRecord], *, reason: str
    ) -> None:
        try:
            await channel.spool.write(batch)
        except Exception as error:
            channel.stats.dropped[reason] = channel.stats.dropped.get(reason, 0) + len(batch)
            _limited.log(
                logging.ERROR,
                ("dropped", channel.label),
                "tokenmeter: %d records for %s are lost: spooling them (%s) failed: %r",
                len(batch),
                channel.label,
                reason,
                error,
            )
        else:
            channel.stats.spooled += len(batch)
            _limited.log(
                logging.WARNING,
                ("spooled", channel.label),
                "tokenmeter: spooled %d records for %s (%s) to %s",
                len(batch),
                channel.label,
                reason,
                channel.spool.directory,
            )
        self._settle(channel, len(batch))

    async def _replay(self, channel: _Channel) -> None:
        """Deliver spooled batches of this sink, oldest first, stopping at the first failure."""
        for path in channel.spool.claim_files():
            try:
                records = await channel.spool.read(path)
                with anyio.fail_after(self.settings.write_timeout_s):
                    await channel.sink.write(records)
            except Exception as error:
                channel.spool.release(path)
                logger.debug("tokenmeter: replay to %s failed: %r", channel.label, error)
                return
            channel.spool.remove(path)
            channel.stats.replayed += len(records)
            logger.info(
                "tokenmeter: replayed %d spooled records to %s", len(records), channel.label
            )


_REPLAY_INTERVAL_S = 30.0
_RECORD_BASE_BYTES = 4000
"""About what tracemalloc counted per record (3,965 bytes) for one-model records without tags
or metadata, built from OpenAI chat completions on CPython 3.11."""


def _estimate_bytes(record: UsageRecord) -> int:
    # An estimate, not a measurement: exact sizes would cost more than building the record.
    size = _RECORD_BASE_BYTES + 1500 * (len(record.by_model) - 1) + 60 * len(record.tags)
    if record.rounds_usage:
        size += 250 * len(record.rounds_usage)
    if record.metadata:
        size += 4 * len(repr(record.metadata))
    return size


_DRAIN_CHUNK = 500

_engine: Engine | None = None
_engine_lock = threading.Lock()
_exit_handler_registered = False


def get_engine() -> Engine:
    """Return the process's engine, creating it from the environment on first use."""
    engine = _engine
    if engine is not None:
        return engine
    with _engine_lock:
        if _engine is None:
            _set_engine(Engine(settings_from_env()))
        assert _engine is not None
        return _engine


def _set_engine(engine: Engine | None) -> None:
    global _engine
    _engine = engine


def replace_engine(settings: Settings, timeout: float | None = None) -> Engine:
    """Shut the current engine down (delivering what it holds) and install a new one."""
    with _engine_lock:
        old = _engine
        _set_engine(Engine(settings))
    if old is not None:
        old.shutdown(timeout)
    assert _engine is not None
    return _engine


_finalizer_pid = 0


def _register_exit_handler() -> None:
    global _exit_handler_registered, _finalizer_pid
    if not _exit_handler_registered:
        _exit_handler_registered = True
        atexit.register(_shutdown_at_exit)

    multiprocessing = sys.modules.get("multiprocessing")
    if multiprocessing is None or _finalizer_pid == os.getpid():
        return
    if multiprocessing.parent_process() is not None:
        # Forked multiprocessing children end with os._exit(), which skips atexit handlers,
        # but they run multiprocessing's finalizers first. Registering at fork time is too
        # early: the child clears the finalizer registry before it runs its target.
        import multiprocessing.util

        multiprocessing.util.Finalize(None, _shutdown_at_exit, exitpriority=100)
        _finalizer_pid = os.getpid()


def _shutdown_at_exit() -> None:
    engine = _engine
    if engine is not None:
        engine.shutdown()


def flush_on_signal(
    signals: tuple[signal.Signals, ...] = (signal.SIGTERM,), timeout: float | None = None
) -> None:
    """On each of `signals`, deliver or spool pending records, then let the signal proceed.

    Python's default SIGTERM handling ends the process without running exit handlers, so
    records still queued would be lost. The installed handler calls `shutdown(timeout)`
    (default: `TOKENMETER_FLUSH_TIMEOUT`), then the handler that was there before, or, if
    that was the default action, restores it and sends the signal again.

    Call it from the main thread, as Python requires for signal handlers.

    Raises:
        ValueError: if called from another thread than the main thread.
    """
    for signum in signals:
        previous = signal.getsignal(signum)

        def handler(
            received: int, frame: Any, previous: Any = previous, signum: signal.Signals = signum
        ) -> None:
            engine = _engine
            if engine is not None:
                engine.shutdown(timeout)
            if callable(previous):
                previous(received, frame)
            elif previous == signal.SIG_IGN:
                return
            else:
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)

        signal.signal(signum, handler)


def _after_fork_in_child() -> None:
    # The parent's thread and loop do not exist in the child, and its queued turns are the
    # parent's to deliver: the child starts empty with a fresh engine and the same settings.
    global _engine, _engine_lock, _exit_handler_registered
    _engine_lock = threading.Lock()
    if _engine is not None:
        _engine = Engine(_engine.settings)


os.register_at_fork(after_in_child=_after_fork_in_child)
