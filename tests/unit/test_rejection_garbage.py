"""Rejections leave no reference cycles behind (purgatory's per-rejection growth, PEERS.md).

A rejected call's exception must be freed by reference counting alone: a cycle through the
raising frame would make every rejection wait for the cyclic GC while the circuit is open.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

import chainlit_breaker as cb


@pytest.fixture
def saved_garbage() -> Iterator[list[object]]:
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield gc.garbage
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def _open_proxy() -> cb.CircuitBreakerProxy:
    proxy = cb.breaker("garbage", failure_threshold=1)

    def boom() -> None:
        raise ValueError("down")

    with pytest.raises(ValueError, match="down"):
        proxy.call_sync(boom)
    assert proxy.state is cb.BreakerState.OPEN
    return proxy


def test_sync_and_async_rejections_leave_no_cycles(saved_garbage: list[object]) -> None:
    proxy = _open_proxy()
    sync_fn = proxy(lambda: 1)

    async def work() -> int:
        return 1

    async_fn = proxy(work)

    async def reject_async() -> None:
        for _ in range(200):
            with pytest.raises(cb.CircuitOpenError):
                await async_fn()

    for _ in range(200):
        with pytest.raises(cb.CircuitOpenError):
            sync_fn()
    asyncio.run(reject_async())
    gc.collect()
    leaked = [obj for obj in saved_garbage if isinstance(obj, cb.CircuitOpenError)]
    assert leaked == []
