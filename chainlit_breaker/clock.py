"""The clocks breakers read: the monotonic clock, and a fake one for tests.

Tests (ours and users') drive a :class:`FakeClock` instead of sleeping.
"""

from __future__ import annotations

import threading
import time

from .core.clock import Clock

__all__ = ["Clock", "FakeClock", "MonotonicClock"]


class MonotonicClock:
    """``time.monotonic``: never jumps with wall-clock changes."""

    __slots__ = ()

    def now(self) -> float:
        return time.monotonic()


class FakeClock:
    """A clock that moves only when told to. Thread-safe.

    >>> clock = FakeClock()
    >>> clock.advance(30)
    30.0
    """

    __slots__ = ("_now", "_lock")

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        """Move forward by ``seconds`` (must be >= 0) and return the new time."""
        if seconds < 0:
            raise ValueError(f"FakeClock.advance: seconds must be >= 0, got {seconds!r}")
        with self._lock:
            self._now += float(seconds)
            return self._now

    def set(self, now: float) -> None:
        """Jump to ``now``; it may not go backwards."""
        with self._lock:
            if now < self._now:
                raise ValueError(f"FakeClock.set: cannot go back from {self._now} to {now}")
            self._now = float(now)
