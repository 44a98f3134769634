"""The pure breaker core: states, policy, the transition function and the clock port.

Nothing here does I/O, touches asyncio or threads, or reads a clock on its own.
"""

from .clock import Clock
from .machine import (
    Acquire,
    Command,
    Decision,
    Event,
    Op,
    Record,
    Release,
    Verdict,
    decide,
    retry_after,
    window_totals,
)
from .policy import Policy, WindowKind
from .state import BreakerState, Snapshot

__all__ = [
    "Acquire",
    "BreakerState",
    "Clock",
    "Command",
    "Decision",
    "Event",
    "Op",
    "Policy",
    "Record",
    "Release",
    "Snapshot",
    "Verdict",
    "WindowKind",
    "decide",
    "retry_after",
    "window_totals",
]
