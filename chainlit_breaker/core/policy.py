"""The numbers that drive the transition function, free of pydantic and callables.

``BreakerConfig`` (chainlit_breaker.config) validates user input and produces a Policy.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

__all__ = ["MAX_BACKOFF_EXPONENT", "Policy", "WindowKind"]

MAX_BACKOFF_EXPONENT = 64


class WindowKind(enum.Enum):
    """How the sliding window for rate policies is measured."""

    COUNT = "count"  # the last ``window_size`` calls
    TIME = "time"  # the calls of the last ``window_size`` seconds


@dataclass(frozen=True, slots=True)
class Policy:
    """When to trip, how long to stay open, how to probe. See BreakerConfig for the docs."""

    failure_threshold: int | None = 5
    failure_rate_threshold: float | None = None
    slow_call_rate_threshold: float | None = None
    window_kind: WindowKind = WindowKind.COUNT
    window_size: int = 100
    minimum_calls: int = 10
    reset_timeout: float = 30.0
    backoff_multiplier: float = 1.0
    max_reset_timeout: float | None = None
    jitter: float = 0.0
    half_open_max_calls: int = 1
    success_threshold: int = 1
    trial_lease_ttl: float = 60.0

    @property
    def uses_window(self) -> bool:
        return self.failure_rate_threshold is not None or self.slow_call_rate_threshold is not None

    def open_timeout(self, open_count: int, rand: float) -> float:
        """Seconds to stay open on the ``open_count``-th consecutive opening (1-based).

        ``rand`` in [0, 1) is supplied by the driver, so the core stays deterministic.
        """
        # The exponent is clamped so a breaker that re-opens for days cannot overflow
        # (multiplier <= 100, so 100 ** 64 is still a finite float); the Lua does the same.
        exponent = min(max(open_count - 1, 0), MAX_BACKOFF_EXPONENT)
        timeout = self.reset_timeout * self.backoff_multiplier**exponent
        cap = self.max_reset_timeout if self.max_reset_timeout is not None else math.inf
        timeout = min(timeout, cap)
        if self.jitter:
            timeout *= 1.0 + self.jitter * (2.0 * rand - 1.0)
        return max(timeout, 0.0)
