"""Rate-limited logging, so that a sink failing a thousand times a second logs a few lines."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Hashable

__all__ = ["RateLimitedLog"]


class RateLimitedLog:
    """Log each key at most once per `interval_s`, then report how many repeats were hidden.

    Thread-safe: the delivery thread and callers' threads share one instance.
    """

    def __init__(self, logger: logging.Logger, interval_s: float = 60.0) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._last: dict[Hashable, float] = {}
        self._suppressed: dict[Hashable, int] = {}
        self._lock = threading.Lock()

    def log(
        self,
        level: int,
        key: Hashable,
        message: str,
        *args: object,
        exc_info: BaseException | None = None,
    ) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval_s:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return
            self._last[key] = now
            hidden = self._suppressed.pop(key, 0)

        if hidden:
            message += " (%d similar messages suppressed)"
            args = (*args, hidden)
        self._logger.log(level, message, *args, exc_info=exc_info)

    def once(self, level: int, key: Hashable, message: str, *args: object) -> None:
        """Log `message` the first time `key` is seen in this process, never again."""
        with self._lock:
            if key in self._last:
                return
            self._last[key] = float("inf")
        self._logger.log(level, message, *args)
