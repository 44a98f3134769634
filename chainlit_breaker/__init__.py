"""chainlit_breaker: one circuit breaker for sync and async code, shared across processes.

Public names only. The Chainlit layer (``chainlit_breaker.integrations.chainlit``) and the
Redis store are imported on demand, so ``import chainlit_breaker`` pulls in neither.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .breaker import BreakerStatus, PersistentCircuitBreaker
from .clock import Clock, FakeClock, MonotonicClock
from .config import BreakerConfig
from .core.machine import Op
from .core.state import BreakerState, Snapshot
from .errors import BreakerError, CircuitOpenError, ConfigError, StoreError
from .events import (
    BreakerEvent,
    CallFailed,
    CallRejected,
    CallSucceeded,
    SlowCall,
    StateChanged,
    StoreStatusChanged,
)
from .proxy import CallableKind, CircuitBreakerProxy, breaker, callable_kind
from .registry import BreakerRegistry, configure, get_breaker, registry, reset_all
from .settings import Settings, apply_settings, load_settings
from .store.memory import MemoryStore

if TYPE_CHECKING:
    from .store.redis import RedisStore

__all__ = [
    "BreakerConfig",
    "BreakerError",
    "BreakerEvent",
    "BreakerRegistry",
    "BreakerState",
    "BreakerStatus",
    "CallFailed",
    "CallRejected",
    "CallSucceeded",
    "CallableKind",
    "CircuitBreakerProxy",
    "CircuitOpenError",
    "Clock",
    "ConfigError",
    "FakeClock",
    "MemoryStore",
    "MonotonicClock",
    "Op",
    "PersistentCircuitBreaker",
    "RedisStore",
    "Settings",
    "SlowCall",
    "Snapshot",
    "StateChanged",
    "StoreError",
    "StoreStatusChanged",
    "apply_settings",
    "breaker",
    "callable_kind",
    "configure",
    "get_breaker",
    "load_settings",
    "registry",
    "reset_all",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # RedisStore pulls in redis-py; only pay for it when asked.
    if name == "RedisStore":
        from .store.redis import RedisStore

        return RedisStore
    raise AttributeError(f"module 'chainlit_breaker' has no attribute {name!r}")
