"""What the hot path costs in Redis commands, counted by the server (INFO commandstats).

CLOSED successes and OPEN rejections must not send a command per call.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from chainlit_breaker import BreakerConfig, BreakerState, CircuitOpenError, PersistentCircuitBreaker
from chainlit_breaker.store.redis import RedisStore

from .conftest import RedisServer

N = 10_000


def scripts(server: RedisServer) -> int:
    stats = server.commandstats()
    return stats.get("evalsha", 0) + stats.get("eval", 0)


def commands(server: RedisServer) -> int:
    """Every command the server ran (those inside scripts too), but what the asking
    connection itself sends (its HELLO, CLIENT SETINFO and the INFO)."""
    stats = server.commandstats()
    asking = ("info", "hello", "client")
    return sum(calls for name, calls in stats.items() if not name.startswith(asking))


def ok() -> int:
    return 1


def boom() -> None:
    raise ValueError("down")


async def aok() -> int:
    return 1


@pytest.mark.slow
def test_hot_paths_send_no_command_per_call(redis_server: RedisServer, namespace: str) -> None:
    # No periodic refresh during the count: only the calls' own commands are measured.
    store = RedisStore.from_url(redis_server.url, namespace=namespace, refresh_interval=600)
    plain = PersistentCircuitBreaker("plain", BreakerConfig(failure_threshold=5), store)
    rated = PersistentCircuitBreaker(
        "rated",
        BreakerConfig(failure_threshold=None, failure_rate_threshold=0.5, minimum_calls=10),
        store,
    )
    time.sleep(0.05)  # let the subscription settle
    figures = {}

    start = commands(redis_server)
    t0 = time.perf_counter()
    for _ in range(N):
        plain.call_sync(ok)
    figures["closed successes (sync, 10k)"] = commands(redis_server) - start
    closed_us = (time.perf_counter() - t0) / N * 1e6

    start = scripts(redis_server)
    for _ in range(N):
        rated.call_sync(ok)
    store.flush()
    batched = scripts(redis_server) - start
    figures["closed successes with a rate window (10k, batched)"] = batched
    assert rated.snapshot.codes == "0" * 100  # every success reached Redis' window

    start = scripts(redis_server)
    for _ in range(5):
        with pytest.raises(ValueError, match="down"):
            plain.call_sync(boom)
    figures["failures (5, the 5th trips)"] = scripts(redis_server) - start
    assert plain.state is BreakerState.OPEN

    start = commands(redis_server)
    t0 = time.perf_counter()
    for _ in range(N):
        with contextlib.suppress(CircuitOpenError):
            plain.call_sync(ok)
    figures["open rejections (10k)"] = commands(redis_server) - start
    open_us = (time.perf_counter() - t0) / N * 1e6

    async def open_async() -> None:
        for _ in range(N):
            with contextlib.suppress(CircuitOpenError):
                await plain.call(aok)

    start = commands(redis_server)
    asyncio.run(open_async())
    figures["open rejections (async, 10k)"] = commands(redis_server) - start

    plain.reset()
    start = commands(redis_server)

    async def closed_async() -> None:
        for _ in range(N):
            await plain.call(aok)
        await store.aclose()

    asyncio.run(closed_async())
    figures["closed successes (async, 10k)"] = commands(redis_server) - start

    print(f"script calls: {figures}; closed {closed_us:.2f} us/call, open {open_us:.2f} us/call")
    assert figures["closed successes (sync, 10k)"] == 0
    assert figures["closed successes (async, 10k)"] == 0
    assert 1 <= batched <= N // 100 + 1
    assert figures["failures (5, the 5th trips)"] == 5
    assert figures["open rejections (10k)"] == 0
    assert figures["open rejections (async, 10k)"] == 0
