"""The store port: how the breaker reads and changes one breaker's snapshot.

A store hands out one :class:`Slot` per breaker name; every change goes through the core.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from ..core.machine import Decision, Event
from ..core.policy import Policy
from ..core.state import Snapshot

__all__ = ["ChangeCallback", "Slot", "StatusCallback", "Store"]

ChangeCallback = Callable[[Snapshot, Snapshot, "str | None", bool], None]
"""Called with (old, new, reason, remote) when a slot's state changes without the breaker
being handed the decision: another process changed it, a resync or fallback did
(``remote`` true), or a script this process sent later changed it (a batch of successes,
an event decided on the mirror; ``remote`` false: this process made the transition)."""

StatusCallback = Callable[[bool, str], None]
"""Called with (available, detail) when a shared store stops or starts answering. Slots of
shared stores offer ``on_status(callback)``; the breaker registers one when present.

Slots of shared stores may also offer ``async ready()``: it returns once the slot has read
the shared state for the first time (a slot made on an event loop reads it in a task)."""


@runtime_checkable
class Slot(Protocol):
    """One breaker's state in one store.

    ``snapshot`` is the local view, readable without I/O or locks: authoritative for the
    memory store, a mirror for shared stores. Its times are in the caller's clock.
    ``apply``/``apply_async`` run one event through the core atomically and return the
    resulting snapshot and decision. Neither may raise because the store failed: a shared
    store falls back to local state instead.
    """

    @property
    def snapshot(self) -> Snapshot: ...

    def apply(
        self, event: Event, now: float, policy: Policy, rand: float
    ) -> tuple[Snapshot, Decision]: ...

    async def apply_async(
        self, event: Event, now: float, policy: Policy, rand: float
    ) -> tuple[Snapshot, Decision]: ...

    def on_change(self, callback: ChangeCallback | None) -> None:
        """Register the one callback for changes this process did not cause."""


@runtime_checkable
class Store(Protocol):
    """Hands out slots by breaker name. Two slots of one name in one store share state."""

    def slot(self, name: str) -> Slot: ...

    def close(self) -> None: ...

    async def aclose(self) -> None: ...
