"""Typed events a breaker hands to its listeners.

Listeners are plain callables ``(event) -> None``; they run in the thread that caused the
event (or the store's listener thread for remote changes) and must not block.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .core.state import BreakerState

__all__ = [
    "BreakerEvent",
    "CallFailed",
    "CallRejected",
    "CallSucceeded",
    "Listener",
    "SlowCall",
    "StateChanged",
    "StoreStatusChanged",
]


@dataclass(frozen=True, slots=True)
class BreakerEvent:
    """Base of every event: the breaker's name."""

    name: str


@dataclass(frozen=True, slots=True)
class StateChanged(BreakerEvent):
    """The breaker moved from ``old`` to ``new``.

    ``remote`` is True when another process (or a resync with the shared store) caused it.
    ``retry_after`` is the seconds until a trial call for OPEN, else 0.
    """

    old: BreakerState
    new: BreakerState
    reason: str | None = None
    remote: bool = False
    retry_after: float = 0.0


@dataclass(frozen=True, slots=True)
class CallSucceeded(BreakerEvent):
    """A protected call counted as a success. ``duration`` is in seconds."""

    duration: float


@dataclass(frozen=True, slots=True)
class CallFailed(BreakerEvent):
    """A protected call counted as a failure: it raised ``error`` or its result failed the
    result predicate (``error`` is None then)."""

    error: BaseException | None
    duration: float


@dataclass(frozen=True, slots=True)
class CallRejected(BreakerEvent):
    """A call was not run."""

    state: BreakerState
    retry_after: float


@dataclass(frozen=True, slots=True)
class SlowCall(BreakerEvent):
    """A call took longer than ``slow_call_duration``; emitted in addition to its outcome."""

    duration: float


@dataclass(frozen=True, slots=True)
class StoreStatusChanged(BreakerEvent):
    """The shared store became unreachable (``available=False``) or came back."""

    available: bool
    detail: str = ""


Listener = Callable[[BreakerEvent], None]
