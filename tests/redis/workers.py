"""Process bodies for the multi-process Redis tests (spawned, so they live in a module).

Each worker builds its own RedisStore and breaker, meets the others at a barrier, runs
threads or tasks against the shared breaker and reports counts on a queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Any

from chainlit_breaker import (
    BreakerConfig,
    CircuitOpenError,
    PersistentCircuitBreaker,
    StateChanged,
)
from chainlit_breaker.events import BreakerEvent
from chainlit_breaker.store.redis import RedisStore


class Boom(Exception):
    pass


def _breaker(url: str, ns: str, name: str, cfg: dict[str, Any]) -> tuple[RedisStore, Any]:
    # Exactness is a claim about Redis answering: a roomier timeout keeps a loaded 2-core
    # CI machine from turning a slow answer into an outage (test_faults covers those).
    store = RedisStore.from_url(url, namespace=ns, socket_timeout=0.5)
    breaker = PersistentCircuitBreaker(name, BreakerConfig(**cfg), store)
    breaker.snapshot  # noqa: B018 - the slot exists, so the listener is subscribed
    return store, breaker


def _trips(breaker: PersistentCircuitBreaker) -> list[StateChanged]:
    trips: list[StateChanged] = []

    def listener(event: BreakerEvent) -> None:
        if isinstance(event, StateChanged) and not event.remote and event.new.value == "open":
            trips.append(event)

    breaker.add_listener(listener)
    return trips


def _threads(n: int, target: Any) -> None:
    threads = [threading.Thread(target=target) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def count_failures(
    url: str, ns: str, name: str, threads: int, per_thread: int, barrier: Any, queue: Any
) -> None:
    """Every thread records ``per_thread`` failures; the breaker never trips."""
    store, breaker = _breaker(url, ns, name, {"failure_threshold": 10**9})
    raised = 0

    def work() -> None:
        nonlocal raised
        for _ in range(per_thread):
            try:
                breaker.call_sync(_boom)
            except Boom:
                raised += 1

    barrier.wait()
    _threads(threads, work)
    store.close()
    queue.put({"raised": raised})


def _boom() -> None:
    raise Boom


def trip_episodes(
    url: str, ns: str, name: str, threads: int, episodes: int, barrier: Any, queue: Any
) -> None:
    """Per episode, every thread fails as fast as it can for 0.3 s; the parent resets
    the breaker between episodes. Reports this process's trips per episode."""
    store, breaker = _breaker(url, ns, name, {"failure_threshold": 20, "reset_timeout": 60})
    trips = _trips(breaker)
    per_episode = []
    ran = 0

    def work() -> None:
        nonlocal ran
        end = time.monotonic() + 0.3
        while time.monotonic() < end:
            try:
                breaker.call_sync(_boom)
            except Boom:
                ran += 1
            except CircuitOpenError:
                time.sleep(0.001)

    for _ in range(episodes):
        barrier.wait()  # the parent has reset the breaker
        before = len(trips)
        _threads(threads, work)
        per_episode.append(len(trips) - before)
        barrier.wait()
    store.close()
    queue.put({"trips": per_episode, "ran": ran})


class _CountedTrial:
    """A protected call that counts itself into ``inflight``/``peak`` (shared by every
    process), lasts 4 ms, and fails every 7th time (re-opening: more episodes, more
    races)."""

    def __init__(self, inflight: Any, peak: Any, lock: Any) -> None:
        self.inflight, self.peak, self.lock = inflight, peak, lock
        self.count = 0

    def __call__(self) -> None:
        with self.lock:
            self.inflight.value += 1
            self.peak.value = max(self.peak.value, self.inflight.value)
            self.count += 1
            count = self.count
        try:
            time.sleep(0.004)
            if count % 7 == 0:
                raise Boom
        finally:
            with self.lock:
                self.inflight.value -= 1


def half_open_load(
    url: str,
    ns: str,
    name: str,
    threads: int,
    seconds: float,
    inflight: Any,
    peak: Any,
    lock: Any,
    barrier: Any,
    queue: Any,
) -> None:
    """Threads hammer a breaker that only ever half-opens; every admitted call is a trial.
    ``inflight``/``peak`` count concurrent trial calls across all processes."""
    cfg = {
        "failure_threshold": 1,
        "reset_timeout": 0.05,
        "half_open_max_calls": 2,
        "success_threshold": 10**6,
    }
    store, breaker = _breaker(url, ns, name, cfg)
    trial = _CountedTrial(inflight, peak, lock)
    calls = 0

    def work() -> None:
        nonlocal calls
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            calls += 1
            try:
                breaker.call_sync(trial)
            except (CircuitOpenError, Boom):
                time.sleep(0.0005)

    barrier.wait()
    _threads(threads, work)
    store.close()
    queue.put({"trials": trial.count, "calls": calls})


def hammer_after_expiry(
    url: str, ns: str, name: str, threads: int, window: float, barrier: Any, queue: Any
) -> None:
    """The parent opens the breaker (reset timeout 0.3 s) between the two barriers; every
    thread then calls for ``window`` seconds. The trial call lasts longer than the window,
    so every call that ran in it was a trial."""
    cfg = {"failure_threshold": 1, "reset_timeout": 0.3, "half_open_max_calls": 1}
    store, breaker = _breaker(url, ns, name, cfg)
    ran = 0
    rejected = 0

    def slow_ok() -> None:
        nonlocal ran
        ran += 1
        time.sleep(window + 0.3)

    def work() -> None:
        nonlocal rejected
        end = time.monotonic() + window
        while time.monotonic() < end:
            try:
                breaker.call_sync(slow_ok)
            except CircuitOpenError:
                rejected += 1
                time.sleep(0.001)

    barrier.wait()
    barrier.wait()
    _threads(threads, work)
    store.close()
    queue.put({"ran": ran, "rejected": rejected})


def one_call_each(url: str, ns: str, name: str, coroutines: int, barrier: Any, queue: Any) -> None:
    """pybreaker 8/8 and purgatory 50/50: after the reset timeout, ``coroutines`` tasks
    (1 for a plain process) call at once; report how many calls ran."""
    cfg = {"failure_threshold": 1, "reset_timeout": 0.3, "half_open_max_calls": 1}
    store, breaker = _breaker(url, ns, name, cfg)
    ran = 0
    times: list[float] = []

    async def call() -> None:
        nonlocal ran
        ran += 1
        times.append(time.monotonic())
        await asyncio.sleep(1.0)  # outlasts every caller's attempt: whatever ran was a trial

    async def main() -> tuple[int, int]:
        # Ready: wait for the parent to open the breaker, then for the timeout to pass.
        await asyncio.to_thread(barrier.wait)
        await asyncio.to_thread(barrier.wait)
        await asyncio.sleep(0.35)
        starts.append(time.monotonic())
        results = await asyncio.gather(
            *(breaker.call(call) for _ in range(coroutines)), return_exceptions=True
        )
        rejected = sum(isinstance(r, CircuitOpenError) for r in results)
        others = [r for r in results if isinstance(r, BaseException)]
        assert len(others) == rejected, others
        await store.aclose()
        return ran, rejected

    starts: list[float] = []
    ran, rejected = asyncio.run(main())
    queue.put({"ran": ran, "rejected": rejected, "times": times, "start": starts[0]})


def concurrent_failures(
    url: str, ns: str, name: str, coroutines: int, barrier: Any, queue: Any
) -> None:
    """purgatory's lost trip: after one failure, many concurrent failures (threshold 5)."""
    store, breaker = _breaker(url, ns, name, {"failure_threshold": 5, "reset_timeout": 60})
    trips = _trips(breaker)
    ran = 0

    async def fail() -> None:
        nonlocal ran
        ran += 1
        await asyncio.sleep(0.01)
        raise Boom

    async def main() -> None:
        await asyncio.to_thread(barrier.wait)
        await asyncio.gather(
            *(breaker.call(fail) for _ in range(coroutines)), return_exceptions=True
        )
        await store.aclose()

    asyncio.run(main())
    queue.put({"ran": ran, "trips": len(trips)})


def watch_propagation(url: str, ns: str, name: str, trials: int, barrier: Any, queue: Any) -> None:
    """Process B: for each trial, record when its mirror turned OPEN (the moment it starts
    rejecting without asking Redis) and prove it rejects; then wait for the reset."""
    store, breaker = _breaker(url, ns, name, {"failure_threshold": 1, "reset_timeout": 600})
    seen: list[float] = []
    opened = threading.Event()

    def listener(event: BreakerEvent) -> None:
        if isinstance(event, StateChanged) and event.remote and event.new.value == "open":
            seen.append(time.monotonic())
            opened.set()

    breaker.add_listener(listener)
    rejected = 0
    for _ in range(trials):
        opened.clear()
        barrier.wait()  # A trips after this
        if not opened.wait(5):
            seen.append(float("nan"))
        try:
            breaker.call_sync(lambda: None)
        except CircuitOpenError:
            rejected += 1
        barrier.wait()  # A resets after this
        deadline = time.monotonic() + 5
        while breaker.state.value != "closed" and time.monotonic() < deadline:
            time.sleep(0.0005)
        barrier.wait()
    store.close()
    queue.put({"seen": seen, "rejected": rejected})


def die_holding_a_trial(url: str, ns: str, name: str, barrier: Any, queue: Any) -> None:
    """Take the only trial permit, report it, and die without releasing it."""
    import os

    cfg = {"failure_threshold": 1, "reset_timeout": 0.1, "trial_lease_ttl": 0.5}
    _store, breaker = _breaker(url, ns, name, cfg)
    barrier.wait()  # the parent has opened the breaker
    time.sleep(0.15)

    def trial() -> None:
        queue.put({"trial_at": time.monotonic()})
        time.sleep(0.05)
        os._exit(0)  # killed mid-call: the lease is never reported or released

    breaker.call_sync(trial)


def half_open_on_the_loop(
    url: str,
    ns: str,
    name: str,
    seconds: float,
    inflight: Any,
    peak: Any,
    lock: Any,
    barrier: Any,
    queue: Any,
) -> None:
    """Like half_open_load, but every call is a *sync* function called on the event loop's
    own thread: its Redis work may not block the loop, and its trials still count against
    the limit of every process together."""
    cfg = {
        "failure_threshold": 1,
        "reset_timeout": 0.05,
        "half_open_max_calls": 1,
        "success_threshold": 10**6,
    }
    trial = _CountedTrial(inflight, peak, lock)
    calls = 0

    async def main() -> None:
        nonlocal calls
        store = RedisStore.from_url(url, namespace=ns, socket_timeout=0.5)
        breaker = PersistentCircuitBreaker(name, BreakerConfig(**cfg), store)
        await breaker.ready()
        await asyncio.to_thread(barrier.wait)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            calls += 1
            with contextlib.suppress(CircuitOpenError, Boom):
                breaker.call_sync(trial)  # on the loop's thread
            await asyncio.sleep(0.001)
        await store.aclose()

    asyncio.run(main())
    queue.put({"trials": trial.count, "calls": calls})


def count_failures_default_store(
    url: str, ns: str, name: str, threads: int, per_thread: int, barrier: Any, queue: Any
) -> None:
    """count_failures on a store with the default settings (100 ms timeouts, 16 callers in
    flight): more threads than connections queue for a turn, and nothing is lost."""
    store = RedisStore.from_url(url, namespace=ns)
    breaker = PersistentCircuitBreaker(name, BreakerConfig(failure_threshold=10**9), store)
    raised = 0
    outages = 0

    def work() -> None:
        nonlocal raised, outages
        for _ in range(per_thread):
            try:
                breaker.call_sync(_boom)
            except Boom:
                raised += 1
            if not store.available:
                outages += 1

    barrier.wait()
    _threads(threads, work)
    store.close()  # sends what is still queued
    queue.put({"raised": raised, "outages": outages})
