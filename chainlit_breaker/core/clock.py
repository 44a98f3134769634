"""The clock port: what the breaker reads time from. The core itself never reads one; the
clocks that do (MonotonicClock, FakeClock) live in ``chainlit_breaker.clock``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["Clock"]


@runtime_checkable
class Clock(Protocol):
    """Anything with ``now() -> float`` seconds on a monotonic scale."""

    def now(self) -> float: ...
