"""Breaker state shared across processes through Redis: one Lua script per state change.

``RedisStore.from_url(url)`` or ``RedisStore(client, async_client)``; see the README.
"""

from .store import OnStoreError, RedisSlot, RedisStore

__all__ = ["OnStoreError", "RedisSlot", "RedisStore"]
