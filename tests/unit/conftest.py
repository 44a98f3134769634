"""Shared fixtures for the core unit tests: a fake clock and a breaker factory.

Every unit test drives time by hand; nothing here sleeps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from chainlit_breaker import BreakerConfig, FakeClock, MemoryStore, PersistentCircuitBreaker
from chainlit_breaker.events import BreakerEvent

MakeBreaker = Callable[..., PersistentCircuitBreaker]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture
def events() -> list[BreakerEvent]:
    return []


@pytest.fixture
def make(clock: FakeClock, events: list[BreakerEvent]) -> MakeBreaker:
    """``make(**config)``: a breaker on a fresh MemoryStore and the test's FakeClock,
    recording its events into ``events``."""

    def factory(
        name: str = "b", *, fallback: Any = None, listen: bool = False, **config: Any
    ) -> PersistentCircuitBreaker:
        return PersistentCircuitBreaker(
            name,
            BreakerConfig(**config),
            MemoryStore(),
            clock=clock,
            fallback=fallback,
            listeners=[events.append] if listen else [],
        )

    return factory
