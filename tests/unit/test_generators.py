"""Generators under the breaker: items stream through, a failure mid-way is a failure,
completion is a success, and abandoning early is neither and releases the permit."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from chainlit_breaker import (
    BreakerRegistry,
    BreakerState,
    CircuitBreakerProxy,
    CircuitOpenError,
    FakeClock,
    MemoryStore,
    PersistentCircuitBreaker,
)

from ._helpers import Boom, leases
from .conftest import MakeBreaker

S = BreakerState


def gen(n: int, fail_at: int | None = None) -> Iterator[int]:
    for i in range(n):
        if i == fail_at:
            raise Boom(f"at {i}")
        yield i


async def agen(n: int, fail_at: int | None = None) -> AsyncIterator[int]:
    for i in range(n):
        if i == fail_at:
            raise Boom(f"at {i}")
        await asyncio.sleep(0)
        yield i


async def to_half_open(b: PersistentCircuitBreaker, clock: FakeClock) -> None:
    b.call_sync(lambda: None)
    for _ in range(b.config.failure_threshold or 1):
        with pytest.raises(Boom):
            b.call_sync(gen_fail)
    clock.advance(b.config.reset_timeout)
    assert b.retry_after == 0.0


def gen_fail() -> None:
    raise Boom


# The ways to run a sync generator function under a breaker.
def sync_via_call(b: PersistentCircuitBreaker, reg: BreakerRegistry) -> Callable[..., Any]:
    return lambda *a: b.call_sync(gen, *a)


def sync_via_stream(b: PersistentCircuitBreaker, reg: BreakerRegistry) -> Callable[..., Any]:
    return lambda *a: b.stream_sync(gen, *a)


def sync_via_decorator(b: PersistentCircuitBreaker, reg: BreakerRegistry) -> Callable[..., Any]:
    return CircuitBreakerProxy(b.name, registry=reg)(gen)


def sync_via_proxy_call(b: PersistentCircuitBreaker, reg: BreakerRegistry) -> Callable[..., Any]:
    return lambda *a: CircuitBreakerProxy(b.name, registry=reg).call_sync(gen, *a)


def async_via_call(b: PersistentCircuitBreaker, reg: BreakerRegistry) -> Callable[..., Any]:
    return lambda *a: AsyncHolder(b.call(agen, *a))


def async_via_stream(b: PersistentCircuitBreaker, reg: BreakerRegistry) -> Callable[..., Any]:
    return lambda *a: b.stream(agen, *a)


def async_via_decorator(b: PersistentCircuitBreaker, reg: BreakerRegistry) -> Callable[..., Any]:
    return CircuitBreakerProxy(b.name, registry=reg)(agen)


def async_via_proxy_stream(b: PersistentCircuitBreaker, reg: BreakerRegistry) -> Callable[..., Any]:
    return lambda *a: CircuitBreakerProxy(b.name, registry=reg).stream(agen, *a)


class AsyncHolder:
    """Adapts ``await b.call(agen)`` (which returns the guarded generator) to async iteration
    with aclose, so every async way can be driven alike."""

    def __init__(self, pending: Any) -> None:
        self._pending = pending
        self._it: Any = None

    def __aiter__(self) -> AsyncHolder:
        return self

    async def __anext__(self) -> Any:
        if self._it is None:
            self._it = await self._pending
        return await self._it.__anext__()

    async def aclose(self) -> None:
        if self._it is not None:
            await self._it.aclose()


SYNC_WAYS = [sync_via_call, sync_via_stream, sync_via_decorator, sync_via_proxy_call]
ASYNC_WAYS = [async_via_call, async_via_stream, async_via_decorator, async_via_proxy_stream]


@pytest.fixture
def setup(clock: FakeClock) -> tuple[PersistentCircuitBreaker, BreakerRegistry]:
    reg = BreakerRegistry()
    reg.configure(
        store=MemoryStore(),
        clock=clock,
        defaults={"failure_threshold": 2, "reset_timeout": 5.0, "success_threshold": 2},
    )
    return reg.get("g"), reg


@pytest.mark.parametrize("way", SYNC_WAYS, ids=lambda w: w.__name__)
async def test_sync_generator_semantics(
    setup: tuple[PersistentCircuitBreaker, BreakerRegistry],
    clock: FakeClock,
    way: Callable[..., Any],
) -> None:
    b, reg = setup
    run = way(b, reg)
    assert list(run(3)) == [0, 1, 2]
    with pytest.raises(Boom):
        list(run(3, 1))
    assert b.snapshot.consecutive_failures == 1
    assert list(run(2)) == [0, 1]  # completion is a success
    assert b.snapshot.consecutive_failures == 0

    await to_half_open(b, clock)
    it = run(5)
    assert next(it) == 0
    assert b.state is S.HALF_OPEN
    assert leases(b) == 1
    it.close()  # abandoned early: neither, permit released
    assert leases(b) == 0
    assert b.state is S.HALF_OPEN
    assert b.snapshot.trial_successes == 0

    # abandoned by `break` and dropping the generator
    for _item in run(5):
        assert leases(b) == 1
        break
    gc.collect()
    assert leases(b) == 0
    assert b.snapshot.trial_successes == 0

    assert list(run(2)) == [0, 1]
    assert b.snapshot.trial_successes == 1
    with pytest.raises(Boom):
        list(run(3, 2))
    assert b.state is S.OPEN


@pytest.mark.parametrize("way", ASYNC_WAYS, ids=lambda w: w.__name__)
async def test_async_generator_semantics(
    setup: tuple[PersistentCircuitBreaker, BreakerRegistry],
    clock: FakeClock,
    way: Callable[..., Any],
) -> None:
    b, reg = setup
    run = way(b, reg)
    assert [x async for x in run(3)] == [0, 1, 2]
    with pytest.raises(Boom):
        [x async for x in run(3, 1)]
    assert b.snapshot.consecutive_failures == 1
    assert [x async for x in run(2)] == [0, 1]
    assert b.snapshot.consecutive_failures == 0

    await to_half_open(b, clock)
    it = run(5)
    assert await it.__anext__() == 0
    assert b.state is S.HALF_OPEN
    assert leases(b) == 1
    await it.aclose()  # abandoned early: neither, permit released at once
    assert leases(b) == 0
    assert b.state is S.HALF_OPEN
    assert b.snapshot.trial_successes == 0

    assert [x async for x in run(2)] == [0, 1]
    assert b.snapshot.trial_successes == 1
    with pytest.raises(Boom):
        [x async for x in run(3, 2)]
    assert b.state is S.OPEN


@pytest.mark.parametrize("way", ASYNC_WAYS, ids=lambda w: w.__name__)
async def test_async_generator_abandoned_by_break_releases(
    setup: tuple[PersistentCircuitBreaker, BreakerRegistry],
    clock: FakeClock,
    way: Callable[..., Any],
) -> None:
    b, reg = setup
    await to_half_open(b, clock)
    run = way(b, reg)
    async for _ in run(5):
        assert leases(b) == 1
        break
    # the loop's async-generator finaliser closes the dropped generator
    gc.collect()
    for _ in range(5):
        await asyncio.sleep(0)
    assert leases(b) == 0
    assert b.snapshot.trial_successes == 0


@pytest.mark.parametrize("way", ASYNC_WAYS, ids=lambda w: w.__name__)
async def test_async_generator_cancelled_mid_stream(
    setup: tuple[PersistentCircuitBreaker, BreakerRegistry],
    clock: FakeClock,
    way: Callable[..., Any],
) -> None:
    """A user pressing Stop in Chainlit cancels the task consuming an LLM stream."""
    b, reg = setup
    await to_half_open(b, clock)
    started = asyncio.Event()

    async def hanging() -> AsyncIterator[int]:
        yield 1
        started.set()
        await asyncio.Event().wait()
        yield 2

    async def consume() -> None:
        async for _ in way_for(hanging):
            pass

    def way_for(fn: Callable[..., Any]) -> Any:
        if way is async_via_decorator:
            return CircuitBreakerProxy(b.name, registry=reg)(fn)()
        if way is async_via_call:
            return AsyncHolder(b.call(fn))
        if way is async_via_stream:
            return b.stream(fn)
        return CircuitBreakerProxy(b.name, registry=reg).stream(fn)

    task = asyncio.create_task(consume())
    await started.wait()
    assert leases(b) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert leases(b) == 0
    assert b.state is S.HALF_OPEN
    assert b.snapshot.trial_successes == 0


async def test_stream_is_admitted_at_first_next(make: MakeBreaker) -> None:
    b = make(failure_threshold=1)
    it = b.stream_sync(gen, 2)
    ait = b.stream(agen, 2)
    b.force_open()
    with pytest.raises(CircuitOpenError):
        next(it)
    with pytest.raises(CircuitOpenError):
        await ait.__anext__()


async def test_rejected_stream_iterates_the_fallback(make: MakeBreaker) -> None:
    b = make(failure_threshold=1)
    b.force_open()
    b.fallback = lambda err, n: ["cached"] * n
    assert list(b.stream_sync(gen, 2)) == ["cached", "cached"]
    assert [x async for x in b.stream(agen, 3)] == ["cached"] * 3
    b.fallback = lambda err, n: "one string is one item"
    assert list(b.stream_sync(gen, 2)) == ["one string is one item"]

    async def afb(err: CircuitOpenError, n: int) -> AsyncIterator[str]:
        for i in range(n):
            yield f"fb{i}"

    async def coro_fb(err: CircuitOpenError, n: int) -> list[int]:
        return list(range(n))

    b.fallback = afb
    assert [x async for x in b.stream(agen, 2)] == ["fb0", "fb1"]
    b.fallback = coro_fb
    assert [x async for x in b.stream(agen, 2)] == [0, 1]


async def test_generator_return_value_passes_through(make: MakeBreaker) -> None:
    b = make()

    def returns() -> Iterator[int]:
        yield 1
        return 42

    def outer() -> Iterator[int]:
        value = yield from b.stream_sync(returns)
        yield value

    assert list(outer()) == [1, 42]


async def test_generator_creation_failure_counts(make: MakeBreaker) -> None:
    b = make(failure_threshold=1)

    def not_iterable() -> Any:
        raise Boom("before the first item")

    with pytest.raises(Boom):
        list(b.stream_sync(not_iterable))
    assert b.state is S.OPEN


async def test_sync_generator_returned_by_call_sync_closed_before_first_item(
    setup: tuple[PersistentCircuitBreaker, BreakerRegistry], clock: FakeClock
) -> None:
    """A callable that returns a generator (not a generator function) goes through
    call_sync; closing what it returned before the first item must free the permit."""
    b, _ = setup
    await to_half_open(b, clock)
    it = b.call_sync(lambda: gen(3))
    it.close()
    assert leases(b) == 0
    it = b.call_sync(lambda: gen(3))
    del it
    gc.collect()
    assert leases(b) == 0
    assert list(b.call_sync(lambda: gen(2))) == [0, 1]
    assert b.snapshot.trial_successes == 1


async def test_async_generator_returned_by_call_closed_before_first_item(
    setup: tuple[PersistentCircuitBreaker, BreakerRegistry], clock: FakeClock
) -> None:
    b, _ = setup
    await to_half_open(b, clock)
    it = await b.call(agen, 3)
    await it.aclose()
    assert leases(b) == 0
    it = await b.call(agen, 3)
    del it
    gc.collect()
    for _ in range(5):
        await asyncio.sleep(0)
    assert leases(b) == 0
    assert [x async for x in await b.call(agen, 2)] == [0, 1]
    assert b.snapshot.trial_successes == 1


@pytest.mark.parametrize(
    "exc", [KeyboardInterrupt(), SystemExit(2), asyncio.CancelledError()], ids=repr
)
async def test_cancellation_raised_inside_a_generator_is_neither(
    setup: tuple[PersistentCircuitBreaker, BreakerRegistry],
    clock: FakeClock,
    exc: BaseException,
) -> None:
    b, reg = setup
    await to_half_open(b, clock)

    def sync_source() -> Iterator[int]:
        yield 1
        raise exc

    async def async_source() -> AsyncIterator[int]:
        yield 1
        raise exc

    with pytest.raises(BaseException) as info:  # noqa: PT011
        list(CircuitBreakerProxy("g", registry=reg)(sync_source)())
    assert info.value is exc
    assert (b.state, leases(b), b.snapshot.trial_successes) == (S.HALF_OPEN, 0, 0)
    with pytest.raises(BaseException) as info:  # noqa: PT011
        [x async for x in CircuitBreakerProxy("g", registry=reg)(async_source)()]
    assert info.value is exc
    assert (b.state, leases(b), b.snapshot.trial_successes) == (S.HALF_OPEN, 0, 0)


async def test_sync_generator_through_the_async_call_is_guarded(
    setup: tuple[PersistentCircuitBreaker, BreakerRegistry],
) -> None:
    """``await b.call(sync_gen_fn)`` must not count a success before the first item:
    a failure while iterating is a failure there too."""
    b, _ = setup
    it = await b.call(gen, 3, 1)  # type: ignore[arg-type]
    assert b.snapshot.consecutive_failures == 0
    with pytest.raises(Boom):
        list(it)
    assert b.snapshot.consecutive_failures == 1
    assert list(await b.call(gen, 2)) == [0, 1]  # type: ignore[arg-type]
    assert b.snapshot.consecutive_failures == 0


async def test_proxy_fallback_answers_rejected_generators(
    setup: tuple[PersistentCircuitBreaker, BreakerRegistry],
) -> None:
    b, reg = setup
    got: list[Any] = []

    def fb(err: CircuitOpenError, *args: Any, **kwargs: Any) -> list[str]:
        got.append((type(err).__name__, args, kwargs))
        return ["cached"]

    proxy = CircuitBreakerProxy("g", registry=reg, fallback=fb)
    sync_stream = proxy(gen)
    async_stream = proxy(agen)
    b.force_open()
    assert list(sync_stream(3, fail_at=None)) == ["cached"]
    assert [x async for x in async_stream(2)] == ["cached"]
    assert got == [("CircuitOpenError", (3,), {"fail_at": None}), ("CircuitOpenError", (2,), {})]


async def test_sync_generator_through_call_closed_unstarted_in_half_open(
    setup: tuple[PersistentCircuitBreaker, BreakerRegistry], clock: FakeClock
) -> None:
    b, _ = setup
    await to_half_open(b, clock)
    it = await b.call(gen, 3)  # type: ignore[arg-type]
    assert leases(b) == 0  # admitted at the first item, not before
    it.close()
    assert leases(b) == 0
    assert list(await b.call(gen, 2)) == [0, 1]  # type: ignore[arg-type]
    assert b.snapshot.trial_successes == 1


async def test_async_stream_creation_failure_counts(make: MakeBreaker) -> None:
    b = make(failure_threshold=1)

    def not_iterable() -> Any:
        raise Boom("before the first item")

    with pytest.raises(Boom):
        [x async for x in b.stream(not_iterable)]
    assert b.state is S.OPEN
