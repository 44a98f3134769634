"""Exact counts under concurrency (threads and asyncio tasks), and proof that the memory
store never holds its lock while the protected function runs."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from chainlit_breaker import (
    BreakerState,
    CircuitOpenError,
    FakeClock,
    MemoryStore,
    PersistentCircuitBreaker,
)

from ._helpers import Boom, leases
from .conftest import MakeBreaker


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Switch threads every microsecond instead of every 5 ms, so that a missing lock
    loses updates in every run instead of once in a while."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


S = BreakerState
WAIT = 10.0


def open_then_expire(b: PersistentCircuitBreaker, clock: FakeClock) -> None:
    b.force_closed()
    for _ in range(b.config.failure_threshold or 1):
        with pytest.raises(Boom):
            b.call_sync(_raise)
    assert b.state is S.OPEN
    clock.advance(b.retry_after)


def _raise() -> None:
    raise Boom


def run_threads(n: int, target: Callable[[int], Any]) -> list[Any]:
    results: list[Any] = [None] * n
    start = threading.Barrier(n, timeout=WAIT)

    def worker(i: int) -> None:
        start.wait()
        try:
            results[i] = target(i)
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
        assert not t.is_alive(), "a worker hung"
    return results


@pytest.mark.parametrize(("max_calls", "successes"), [(1, 1), (2, 3), (5, 5), (8, 2)])
def test_exact_permits_with_threads(
    make: MakeBreaker, clock: FakeClock, max_calls: int, successes: int, fast_switching: None
) -> None:
    b = make(
        failure_threshold=1,
        reset_timeout=3.0,
        half_open_max_calls=max_calls,
        success_threshold=successes,
    )
    open_then_expire(b, clock)
    n = 12
    cond = threading.Condition()
    entered: list[int] = []
    rejected: list[str] = []
    gate = threading.Event()

    def trial(i: int) -> int:
        with cond:
            entered.append(i)
            cond.notify_all()
        assert gate.wait(WAIT)
        return i

    def attempt(i: int) -> str:
        try:
            b.call_sync(trial, i)
        except CircuitOpenError as err:
            with cond:
                rejected.append(f"{err.state.value} {err.retry_after}")
                cond.notify_all()
            return "rejected"
        return "trial"

    results: list[Any] = []
    holder = threading.Thread(target=lambda: results.extend(run_threads(n, attempt)))
    holder.start()
    # everyone has either entered a trial or been turned away before any trial ends
    with cond:
        assert cond.wait_for(lambda: len(entered) + len(rejected) == n, WAIT)
    assert len(entered) == max_calls
    assert leases(b) == max_calls
    assert rejected == ["half_open 0.0"] * (n - max_calls)
    gate.set()
    holder.join(WAIT)
    assert results.count("trial") == max_calls
    expected = S.CLOSED if successes <= max_calls else S.HALF_OPEN
    assert b.state is expected
    assert leases(b) == 0


@pytest.mark.parametrize(("max_calls", "successes"), [(1, 1), (3, 3), (3, 5), (10, 1)])
async def test_exact_permits_with_tasks(
    make: MakeBreaker, clock: FakeClock, max_calls: int, successes: int
) -> None:
    b = make(
        failure_threshold=2,
        reset_timeout=3.0,
        half_open_max_calls=max_calls,
        success_threshold=successes,
    )
    open_then_expire(b, clock)
    gate = asyncio.Event()
    inside = 0

    async def trial() -> str:
        nonlocal inside
        inside += 1
        await gate.wait()
        return "trial"

    async def attempt() -> str:
        try:
            return await b.call(trial)
        except CircuitOpenError as err:
            return f"rejected {err.state.value} {err.retry_after}"

    tasks = [asyncio.create_task(attempt()) for _ in range(40)]
    for _ in range(100):
        await asyncio.sleep(0)
    assert inside == max_calls
    assert leases(b) == max_calls
    gate.set()
    results = await asyncio.gather(*tasks)
    assert results.count("trial") == max_calls
    assert results.count("rejected half_open 0.0") == 40 - max_calls
    assert b.state is (S.CLOSED if successes <= max_calls else S.HALF_OPEN)
    assert b.snapshot.trial_successes == (0 if successes <= max_calls else max_calls)


async def test_cancelled_trial_frees_exactly_one_permit(
    make: MakeBreaker, clock: FakeClock
) -> None:
    b = make(failure_threshold=1, reset_timeout=1.0, half_open_max_calls=3, success_threshold=9)
    open_then_expire(b, clock)
    gate = asyncio.Event()

    async def trial() -> None:
        await gate.wait()

    tasks = [asyncio.create_task(b.call(trial)) for _ in range(3)]
    await asyncio.sleep(0)
    assert leases(b) == 3
    with pytest.raises(CircuitOpenError):
        await b.call(trial)
    tasks[0].cancel()
    await asyncio.gather(tasks[0], return_exceptions=True)
    assert leases(b) == 2
    replacement = asyncio.create_task(b.call(trial))
    await asyncio.sleep(0)
    assert leases(b) == 3
    with pytest.raises(CircuitOpenError):
        await b.call(trial)
    gate.set()
    await asyncio.gather(*tasks[1:], replacement)
    assert b.snapshot.trial_successes == 3
    assert leases(b) == 0


@pytest.mark.parametrize("window", [False, True])
def test_no_lost_updates_under_thread_contention(
    make: MakeBreaker, window: bool, fast_switching: None
) -> None:
    config: dict[str, Any] = {"failure_threshold": 10_000}
    if window:
        config.update(failure_rate_threshold=1.0, window_size=10_000, minimum_calls=10_000)
    b = make(**config)

    def many(i: int) -> None:
        for j in range(200):
            if window and j % 2:
                b.call_sync(int)
                continue
            with contextlib.suppress(Boom):
                b.call_sync(_raise)

    run_threads(8, many)
    if window:
        assert b.status().calls == 1600
        assert b.status().failures == 800
    else:
        assert b.snapshot.consecutive_failures == 1600
    assert b.state is S.CLOSED


# -- the memory store's lock is never held across the protected call ------------------------


def test_protected_function_may_call_the_same_breaker(make: MakeBreaker, clock: FakeClock) -> None:
    b = make(failure_threshold=1, reset_timeout=1.0, half_open_max_calls=2, success_threshold=2)
    open_then_expire(b, clock)

    def outer() -> str:
        # a non-reentrant lock held around this call would deadlock here
        inner = b.call_sync(lambda: "inner")
        with pytest.raises(Boom):
            b.call_sync(_raise)
        return inner

    result = run_threads(1, lambda _: b.call_sync(outer))
    assert result == ["inner"]
    # the inner failure re-opened the breaker; the outer success came too late to count
    assert b.state is S.OPEN


@pytest.mark.parametrize("state", ["closed", "half_open"])
def test_other_threads_complete_while_one_call_is_blocked(
    make: MakeBreaker, clock: FakeClock, state: str
) -> None:
    b = make(
        failure_threshold=3,
        reset_timeout=1.0,
        half_open_max_calls=2,
        success_threshold=5,
        failure_rate_threshold=0.9,  # every outcome goes through the store
        minimum_calls=50,
    )
    if state == "half_open":
        open_then_expire(b, clock)
    entered = threading.Event()
    release = threading.Event()

    def blocked() -> str:
        entered.set()
        assert release.wait(WAIT)
        return "blocked"

    t = threading.Thread(target=lambda: b.call_sync(blocked))
    t.start()
    assert entered.wait(WAIT)
    # while that call is inside, other calls run and finish, store included
    other: list[Any] = []
    worker = threading.Thread(target=lambda: other.append(b.call_sync(lambda: "other")))
    worker.start()
    worker.join(WAIT)
    assert other == ["other"]
    if state == "half_open":
        assert b.snapshot.trial_successes == 1
        assert leases(b) == 1
    release.set()
    t.join(WAIT)
    assert not t.is_alive()


async def test_tasks_on_one_loop_interleave_inside_protected_calls(make: MakeBreaker) -> None:
    b = make(failure_threshold=None, failure_rate_threshold=0.5)
    order: list[str] = []
    first_inside = asyncio.Event()
    second_done = asyncio.Event()

    async def first() -> None:
        order.append("first in")
        first_inside.set()
        await second_done.wait()
        order.append("first out")

    async def second() -> None:
        await first_inside.wait()
        order.append("second")

    t1 = asyncio.create_task(b.call(first))
    await b.call(second)
    second_done.set()
    await t1
    assert order == ["first in", "second", "first out"]


def test_a_forked_child_hands_out_its_own_permit_ids() -> None:
    """A child forked after import (gunicorn --preload) must not repeat its parent's trial
    permit ids: two holders of one id would share a lease in Redis."""
    import multiprocessing

    b = PersistentCircuitBreaker("fork", store=MemoryStore())
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=lambda: queue.put(b._acquire_event().permit))
    child.start()
    theirs = queue.get(timeout=10)
    child.join(10)
    ours = b._acquire_event().permit
    assert theirs != ours
    assert theirs.split(".")[0] != ours.split(".")[0]  # the pid part differs too
