"""The embedded default store: snapshots in this process's memory.

Thread-safe and asyncio-safe; a lock is held only while the core decides, never while
the protected function runs.
"""

from __future__ import annotations

import threading

from ..core.machine import Decision, Event, decide
from ..core.policy import Policy
from ..core.state import Snapshot
from .base import ChangeCallback

__all__ = ["MemoryStore", "MemorySlot"]


class MemorySlot:
    """One breaker's authoritative snapshot, guarded by a short lock."""

    __slots__ = ("snapshot", "_lock", "_callback")

    def __init__(self) -> None:
        # A plain attribute, not a property: the breaker's hot path reads it on every call.
        self.snapshot = Snapshot()
        self._lock = threading.Lock()
        self._callback: ChangeCallback | None = None

    def apply(
        self, event: Event, now: float, policy: Policy, rand: float
    ) -> tuple[Snapshot, Decision]:
        with self._lock:
            new, decision = decide(self.snapshot, event, now, policy, rand)
            self.snapshot = new
        return new, decision

    async def apply_async(
        self, event: Event, now: float, policy: Policy, rand: float
    ) -> tuple[Snapshot, Decision]:
        # No I/O to wait for; the lock is uncontended long enough to never block the loop.
        return self.apply(event, now, policy, rand)

    def on_change(self, callback: ChangeCallback | None) -> None:
        # Nothing outside this process changes a memory slot; kept for the port.
        self._callback = callback


class MemoryStore:
    """In-process state: the default, needs nothing else.

    >>> store = MemoryStore()
    >>> store.slot("a") is store.slot("a")
    True
    """

    def __init__(self) -> None:
        self._slots: dict[str, MemorySlot] = {}
        self._lock = threading.Lock()

    def slot(self, name: str) -> MemorySlot:
        slot = self._slots.get(name)
        if slot is None:
            with self._lock:
                slot = self._slots.setdefault(name, MemorySlot())
        return slot

    def names(self) -> list[str]:
        return sorted(self._slots)

    def close(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"MemoryStore({len(self._slots)} breakers)"
