"""Where breaker snapshots live: the store port and the embedded in-memory store.

The Redis store lives in ``chainlit_breaker.store.redis`` and is imported on demand.
"""

from .base import ChangeCallback, Slot, Store
from .memory import MemoryStore

__all__ = ["ChangeCallback", "MemoryStore", "Slot", "Store"]
