"""Breaker states and the immutable snapshot of one breaker.

A snapshot is everything a store keeps for a breaker; the core turns one into the next.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["BreakerState", "Snapshot", "Lease", "Bucket"]


class BreakerState(enum.Enum):
    """Where a breaker is. FORCED_OPEN and DISABLED are manual overrides."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    DISABLED = "disabled"


Lease = tuple[str, float]
"""A half-open trial permit: (permit id, expires at)."""

Bucket = tuple[int, int, int, int]
"""One second of a time-based window: (second, calls, failures, slow calls)."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The whole state of one breaker at one version.

    ``codes`` is the count-based window, oldest first, one character per call:
    ``"0"`` success, ``"1"`` failure, ``"2"`` slow success, ``"3"`` slow failure.
    ``buckets`` is the time-based window, one entry per second that saw calls.
    Times (``opened_at``, ``open_until``, lease expiries) are in the driver's clock.
    """

    state: BreakerState = BreakerState.CLOSED
    consecutive_failures: int = 0
    codes: str = ""
    buckets: tuple[Bucket, ...] = ()
    opened_at: float | None = None
    open_until: float | None = None
    open_count: int = 0
    trial_successes: int = 0
    leases: tuple[Lease, ...] = ()
    version: int = 0
