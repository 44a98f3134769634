"""``/breakers`` on an instance that shares a real Redis with another: its first answer
already shows what the other instance did (the new mirrors' first read is awaited)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from chainlit_breaker import BreakerRegistry, BreakerState, PersistentCircuitBreaker
from chainlit_breaker.config import BreakerConfig
from chainlit_breaker.integrations import chainlit as cb
from chainlit_breaker.settings import Settings
from chainlit_breaker.store.memory import MemoryStore
from chainlit_breaker.store.redis import RedisStore

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    from tests.redis.conftest import RedisServer

    server = RedisServer()
    yield server.url
    server.stop()


async def force_open_elsewhere(url: str, namespace: str, name: str) -> None:
    """Another instance (its own store and clients) forces ``name`` open; in a thread,
    so the sync command goes to Redis before this returns."""

    def other_instance() -> None:
        store = RedisStore.from_url(url, namespace=namespace, pubsub=False)
        try:
            PersistentCircuitBreaker(name, BreakerConfig(), store).force_open()
        finally:
            store.close()

    await asyncio.to_thread(other_instance)


async def test_a_slot_made_on_the_loop_is_ready_once_awaited(redis_url: str) -> None:
    await force_open_elsewhere(redis_url, "ready", "late")
    store = RedisStore.from_url(redis_url, namespace="ready")
    try:
        slot = store.slot("late")  # on the loop: its first read runs as a task
        assert slot.snapshot.state is BreakerState.CLOSED  # not read yet
        await slot.ready()
        assert slot.snapshot.state is BreakerState.FORCED_OPEN
        await slot.ready()  # done: returns at once
        await force_open_elsewhere(redis_url, "ready", "late2")
        brk = PersistentCircuitBreaker("late2", BreakerConfig(), store)
        assert brk.state is BreakerState.CLOSED
        await brk.ready()
        assert brk.state is BreakerState.FORCED_OPEN
        # Stores without a first read (memory) are ready at once.
        await PersistentCircuitBreaker("mem", BreakerConfig(), MemoryStore()).ready()
    finally:
        await store.aclose()


async def test_breakers_on_another_instance_shows_the_shared_state_at_once(
    session: Any, redis_url: str
) -> None:
    await force_open_elsewhere(redis_url, "status", "weather-api")
    store = RedisStore.from_url(redis_url, namespace="status")
    reg = BreakerRegistry()
    try:
        settings = Settings.model_validate({"breakers": {"weather-api": {}, "llm": {}}})
        reg.configure(store=store, breakers=settings.breakers)
        cb.setup(settings=settings, registry=reg)
        reply = await cb.command_reply(cb_message("/breakers"), reg, settings, None)
        assert "| weather-api | forced open |" in reply, reply
        assert "| llm | closed |" in reply
    finally:
        reg.clear()
        await store.aclose()


def cb_message(text: str) -> Any:
    from chainlit.message import Message

    return Message(content=text, type="user_message")
