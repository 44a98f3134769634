"""The peers' failures (../shared/PEERS.md) reproduced against our breaker.

Each test is named after the peer and the scenario; each one fails on the peer's behaviour.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import threading
import tracemalloc
from typing import Any

import pytest

import chainlit_breaker
from chainlit_breaker import (
    BreakerState,
    CircuitBreakerProxy,
    CircuitOpenError,
    FakeClock,
    MemoryStore,
    PersistentCircuitBreaker,
    breaker,
)
from chainlit_breaker.core import Acquire

from ._helpers import Boom, leases
from .conftest import MakeBreaker

S = BreakerState
WAIT = 10.0  # generous: only reached when the behaviour under test is broken


async def fetch(base: str, path: str, *, fail: bool = False) -> str:
    await asyncio.sleep(0)
    if fail:
        raise Boom(path)
    return base + path


class AsyncClient:
    def __init__(self) -> None:
        self.fail = False

    async def __call__(self, path: str) -> str:
        await asyncio.sleep(0)
        if self.fail:
            raise Boom(path)
        return "got " + path


# -- detection gaps ---------------------------------------------------------------------------


async def test_aiobreaker_partial_of_coroutine_function(make: MakeBreaker) -> None:
    """aiobreaker: a functools.partial of a coroutine function raised TypeError."""
    b = make(failure_threshold=2)
    call = functools.partial(fetch, "https://x")
    assert await b.call(call, "/a") == "https://x/a"
    with pytest.raises(Boom):
        await b.call(call, "/a", fail=True)
    assert b.snapshot.consecutive_failures == 1
    decorated = CircuitBreakerProxy("p")(call)
    assert await decorated("/b") == "https://x/b"
    with pytest.raises(Boom):
        await decorated("/b", fail=True)
    assert chainlit_breaker.get_breaker("p").snapshot.consecutive_failures == 1


async def test_aiobreaker_object_with_async_call(make: MakeBreaker) -> None:
    """aiobreaker: an object with ``async __call__`` raised TypeError."""
    b = make(failure_threshold=2)
    client = AsyncClient()
    assert await b.call(client, "/x") == "got /x"
    decorated = breaker("obj", failure_threshold=2)(client)
    assert await decorated("/y") == "got /y"


async def test_circuitbreaker_async_call_failures_are_counted(make: MakeBreaker) -> None:
    """circuitbreaker: an object with ``async __call__`` got the sync wrapper, so its
    failures (raised when awaited) were never counted and the breaker never opened."""
    client = AsyncClient()
    client.fail = True
    decorated = breaker("llm", failure_threshold=3)(client)
    for _ in range(3):
        with pytest.raises(Boom):
            await decorated("/q")
    assert chainlit_breaker.get_breaker("llm").state is S.OPEN
    with pytest.raises(CircuitOpenError):
        await decorated("/q")
    b = make(failure_threshold=3)
    for _ in range(3):
        with pytest.raises(Boom):
            await b.call(client, "/q")
    assert b.state is S.OPEN


# -- serialised calls --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"failure_threshold": None, "failure_rate_threshold": 0.5},  # every success stored
        {"slow_call_duration": 5.0},  # the timed path
    ],
    ids=["plain", "window", "timed"],
)
def test_pybreaker_serialised_calls(make: MakeBreaker, config: dict[str, Any]) -> None:
    """pybreaker holds its lock around the protected call: 10 threads x 0.2 s took 2.0 s.

    Here all 10 calls must be inside the protected function at the same time: each waits
    at a barrier for the other nine, which only works if nothing serialises them."""
    b = make(listen=True, **config)
    barrier = threading.Barrier(10, timeout=WAIT)
    results: list[Any] = []

    def blocking(i: int) -> int:
        barrier.wait()  # BrokenBarrierError if the calls were serialised
        return i

    def worker(i: int) -> None:
        try:
            results.append(b.call_sync(blocking, i))
        except BaseException as exc:  # the assertion below reports it
            results.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == list(range(10))


async def test_pybreaker_serialised_calls_asyncio(make: MakeBreaker) -> None:
    b = make(failure_threshold=None, failure_rate_threshold=0.5)
    barrier = asyncio.Barrier(10)

    async def blocking(i: int) -> int:
        async with asyncio.timeout(WAIT):
            await barrier.wait()
        return i

    results = await asyncio.gather(*(b.call(blocking, i) for i in range(10)))
    assert sorted(results) == list(range(10))


# -- half-open stampede -----------------------------------------------------------------------


async def expired_open(b: PersistentCircuitBreaker, clock: FakeClock) -> None:
    with pytest.raises(Boom):
        b.call_sync(_raise)
    assert b.state is S.OPEN
    clock.advance(b.config.reset_timeout)


def _raise() -> None:
    raise Boom


@pytest.mark.parametrize("max_calls", [1, 3])
async def test_purgatory_half_open_stampede_asyncio(
    make: MakeBreaker, clock: FakeClock, max_calls: int
) -> None:
    """purgatory: 50/50 coroutines became trial calls on an expired OPEN breaker."""
    b = make(failure_threshold=1, reset_timeout=5.0, half_open_max_calls=max_calls)
    await expired_open(b, clock)
    gate = asyncio.Event()
    running = 0
    peak = 0

    async def trial() -> str:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await gate.wait()
        running -= 1
        return "ok"

    async def attempt() -> str:
        try:
            return await b.call(trial)
        except CircuitOpenError as err:
            return f"rejected {err.retry_after}"

    tasks = [asyncio.create_task(attempt()) for _ in range(50)]
    for _ in range(1000):  # bounded: a broken breaker would leave every task waiting
        if sum(t.done() for t in tasks) >= 50 - max_calls:
            break
        await asyncio.sleep(0)
    assert running == max_calls
    assert leases(b) == max_calls
    gate.set()
    results = await asyncio.gather(*tasks)
    assert results.count("ok") == max_calls
    assert results.count("rejected 0.0") == 50 - max_calls
    assert peak == max_calls
    assert b.state is S.CLOSED
    assert leases(b) == 0


@pytest.mark.parametrize("max_calls", [1, 4])
def test_pybreaker_half_open_stampede_threads(
    make: MakeBreaker, clock: FakeClock, max_calls: int
) -> None:
    """pybreaker: 8 processes on an expired OPEN breaker ran 8/8 trial calls."""
    n = 16
    b = make(failure_threshold=1, reset_timeout=5.0, half_open_max_calls=max_calls)
    asyncio.run(expired_open(b, clock))
    start = threading.Barrier(n, timeout=WAIT)
    gate = threading.Event()
    done = threading.Condition()
    outcomes: list[str] = []
    ran: list[int] = []

    def trial(i: int) -> str:
        with done:
            ran.append(i)
            done.notify_all()
        assert gate.wait(WAIT)
        return "ok"

    def worker(i: int) -> None:
        start.wait()  # all threads hit the breaker at once
        try:
            outcome = b.call_sync(trial, i)
        except CircuitOpenError:
            outcome = "rejected"
        with done:
            outcomes.append(outcome)
            done.notify_all()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    with done:
        assert done.wait_for(lambda: len(ran) + len(outcomes) == n, WAIT)
    assert len(ran) == max_calls
    assert leases(b) == max_calls
    gate.set()
    for t in threads:
        t.join()
    assert outcomes.count("ok") == max_calls
    assert outcomes.count("rejected") == n - max_calls
    assert b.state is S.CLOSED


# -- lost trips, timestamps, config, leaks, stuck half-open -------------------------------


def test_purgatory_lost_trips(make: MakeBreaker) -> None:
    """purgatory decided from a stale count: 1 + 50 concurrent failures with threshold 5
    left the breaker closed."""
    b = make(failure_threshold=5, reset_timeout=60.0)
    with pytest.raises(Boom):
        b.call_sync(_raise)
    barrier = threading.Barrier(50, timeout=WAIT)

    def failing() -> None:
        barrier.wait()  # 50 failures in flight at once
        raise Boom

    errors: list[BaseException] = []

    def worker() -> None:
        try:
            b.call_sync(failing)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 50
    assert all(isinstance(e, Boom) for e in errors)
    assert b.state is S.OPEN
    assert b.status().open_count == 1


def test_pybreaker_whole_second_timestamps(make: MakeBreaker, clock: FakeClock) -> None:
    """pybreaker stored opened_at in whole seconds: a 1.5 s timeout admitted after 0.55 s."""
    clock.set(1000.95)
    b = make(failure_threshold=1, reset_timeout=1.5)
    with pytest.raises(Boom):
        b.call_sync(_raise)
    clock.advance(1.49)
    with pytest.raises(CircuitOpenError) as info:
        b.call_sync(int)
    assert info.value.retry_after == pytest.approx(0.01)
    clock.advance(0.01)
    assert b.call_sync(int) == 0


def test_purgatory_config_ignored(clock: FakeClock) -> None:
    """purgatory read threshold/ttl from the shared record: a second user asking for
    100 / 1 s got the first one's 5 / 30 s."""
    store = MemoryStore()
    first = PersistentCircuitBreaker(
        "shared", chainlit_breaker.BreakerConfig(failure_threshold=5, reset_timeout=30.0),
        store, clock=clock,
    )  # fmt: skip
    second = PersistentCircuitBreaker(
        "shared", chainlit_breaker.BreakerConfig(failure_threshold=100, reset_timeout=1.0),
        store, clock=clock,
    )  # fmt: skip
    for _ in range(10):
        with pytest.raises(Boom):
            second.call_sync(_raise)
    assert second.state is S.CLOSED
    second.reset()
    for _ in range(100):
        with pytest.raises(Boom):
            second.call_sync(_raise)
    assert first.state is S.OPEN
    assert second.retry_after == pytest.approx(1.0)


def test_purgatory_rejections_do_not_leak(make: MakeBreaker) -> None:
    """purgatory kept ~1.4 KB per rejected call while open."""
    b = make(failure_threshold=1)
    with pytest.raises(Boom):
        b.call_sync(_raise)

    def reject_many(n: int) -> None:
        for _ in range(n):
            with contextlib.suppress(CircuitOpenError):
                b.call_sync(int)

    reject_many(1000)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        reject_many(10_000)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 10_000 * 10  # far below purgatory's ~1.4 KB per rejection


def test_resilience4j_935_lost_permit_does_not_wedge(make: MakeBreaker, clock: FakeClock) -> None:
    """resilience4j #935: a half-open permit that was never released wedged the breaker."""
    b = make(failure_threshold=1, reset_timeout=1.0, trial_lease_ttl=30.0)
    with pytest.raises(Boom):
        b.call_sync(_raise)
    clock.advance(1.0)
    # a caller that took the permit and died without reporting (a killed worker)
    b.store.slot(b.name).apply(Acquire("dead-worker"), clock.now(), b.config.policy, 0.5)
    assert b.state is S.HALF_OPEN
    with pytest.raises(CircuitOpenError):
        b.call_sync(int)
    clock.advance(30.0)
    assert b.call_sync(int) == 0
    assert b.state is S.CLOSED


def test_circuitbreaker_64_reset_for_test_isolation() -> None:
    """circuitbreaker #64: users asked for a way to reset every breaker between tests."""
    chainlit_breaker.configure(store=MemoryStore(), defaults={"failure_threshold": 1})
    one = CircuitBreakerProxy("one")
    two = CircuitBreakerProxy("two")
    with pytest.raises(Boom):
        one.call_sync(_raise)
    two.force_open()
    chainlit_breaker.reset_all()
    assert (one.state, two.state) == (S.CLOSED, S.CLOSED)
