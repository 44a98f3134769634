"""The Redis store where it is easy to get wrong: garbage that looks almost right, a key
recreated with an older epoch, bursts of callers, loops that shut down with work in
flight, transitions caused by batches, stale mirrors, odd names, the default timeouts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from chainlit_breaker import (
    BreakerConfig,
    BreakerState,
    Op,
    PersistentCircuitBreaker,
    StateChanged,
)
from chainlit_breaker.events import BreakerEvent
from chainlit_breaker.store.redis import RedisStore

from .conftest import RedisServer

pytestmark = pytest.mark.slow

S = BreakerState


class Boom(Exception):
    pass


def boom() -> None:
    raise Boom


async def aboom() -> None:
    raise Boom


def wait_for(predicate: Callable[[], bool], seconds: float = 3.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


@pytest.fixture
def stores(redis_server: RedisServer, namespace: str) -> Iterator[Callable[..., RedisStore]]:
    made: list[RedisStore] = []

    def make(**options: Any) -> RedisStore:
        store = RedisStore.from_url(redis_server.url, namespace=namespace, **options)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


def changes(events: list[BreakerEvent]) -> list[tuple[S, S, bool]]:
    return [(e.old, e.new, e.remote) for e in events if isinstance(e, StateChanged)]


def shared(stores: Callable[..., RedisStore], name: str) -> Any:
    reader = stores(pubsub=False)
    return reader._read(reader.slot(name)).snapshot


# -- stored data that is almost right -------------------------------------------------------

SOUND = {"v": "1", "ep": "1700000000.000001", "st": "closed", "cf": "1", "oc": "0",
         "ts": "0", "ver": "3"}  # fmt: skip


@pytest.mark.parametrize(
    "plant",
    [
        pytest.param({"ep": "abc"}, id="epoch not a time"),
        pytest.param({"ver": "9007199254740993"}, id="version past 2^53"),
        pytest.param({"ver": "inf"}, id="version infinite"),
        pytest.param({"cf": "inf"}, id="count infinite"),
        pytest.param({"cf": "1e400"}, id="count overflowing"),
        pytest.param({"st": "half_open", "l:x": "inf"}, id="lease forever"),
        pytest.param({"st": "half_open", "l:x": "1e300"}, id="lease for ages"),
        pytest.param({"st": "open", "ou": "nan"}, id="open until nan"),
        pytest.param({"bk": "5," + "9" * 400 + ",1,1"}, id="window count overflowing"),
        pytest.param({"bk": "5,2,3,0"}, id="more failures than calls"),
    ],
)
def test_garbage_that_looks_almost_right_is_a_reset(
    redis_server: RedisServer,
    stores: Callable[..., RedisStore],
    caplog: pytest.LogCaptureFixture,
    plant: dict[str, str],
) -> None:
    caplog.set_level(logging.WARNING, "chainlit_breaker")
    store = stores()
    breaker = PersistentCircuitBreaker("garbage", BreakerConfig(failure_threshold=2), store)
    with redis_server.client() as client:
        client.delete(breaker._slot.key)  # type: ignore[attr-defined]
        client.hset(breaker._slot.key, mapping={**SOUND, **plant})  # type: ignore[attr-defined]
    with pytest.raises(Boom):
        breaker.call_sync(boom)
    snap = shared(stores, "garbage")
    assert (snap.state, snap.consecutive_failures) == (S.CLOSED, 1)  # counted from fresh
    assert store.available  # garbage is not an outage
    assert any("treated as a reset" in r.getMessage() for r in caplog.records)
    with pytest.raises(Boom):
        breaker.call_sync(boom)
    assert breaker.state is S.OPEN  # and the breaker works on


def test_a_key_recreated_with_an_older_epoch_is_picked_up(
    redis_server: RedisServer, stores: Callable[..., RedisStore]
) -> None:
    """Redis' clock went back (a failover, NTP): a recreated key carries an epoch older
    than the one a mirror has seen. The refresh must still take it."""
    tripper = PersistentCircuitBreaker("epoch", BreakerConfig(failure_threshold=1), stores())
    watcher = PersistentCircuitBreaker(
        "epoch", BreakerConfig(failure_threshold=1), stores(refresh_interval=0.1)
    )
    with pytest.raises(Boom):
        tripper.call_sync(boom)
    wait_for(lambda: watcher.state is S.OPEN)
    with redis_server.client() as client:
        key = watcher._slot.key  # type: ignore[attr-defined]
        client.delete(key)
        client.hset(key, mapping={**SOUND, "ep": "1000000000.000000", "cf": "0", "ver": "0"})
    wait_for(lambda: watcher.state is S.CLOSED)


def test_a_name_with_a_lone_surrogate(stores: Callable[..., RedisStore]) -> None:
    store = stores()
    odd = PersistentCircuitBreaker("caf\udce9", BreakerConfig(failure_threshold=1), store)
    fine = PersistentCircuitBreaker("café", BreakerConfig(failure_threshold=1), store)
    with pytest.raises(Boom):
        odd.call_sync(boom)
    assert odd.state is S.OPEN
    assert fine.state is S.CLOSED  # its own key
    assert store.available


# -- bursts -----------------------------------------------------------------------------------


def test_a_burst_of_threads_is_not_an_outage(stores: Callable[..., RedisStore]) -> None:
    """48 threads, 16 connections, the default 100 ms timeouts: the burst queues."""
    store = stores()
    breaker = PersistentCircuitBreaker("burst", BreakerConfig(failure_threshold=10**9), store)
    outages = 0

    def work() -> None:
        nonlocal outages
        for _ in range(30):
            with contextlib.suppress(Boom):
                breaker.call_sync(boom)
            outages += not store.available

    threads = [threading.Thread(target=work) for _ in range(48)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()
    assert outages == 0
    assert shared(stores, "burst").consecutive_failures == 48 * 30


async def test_a_burst_of_coroutines_is_not_an_outage(stores: Callable[..., RedisStore]) -> None:
    store = stores()
    breaker = PersistentCircuitBreaker("aburst", BreakerConfig(failure_threshold=10**9), store)
    await breaker.ready()
    results = await asyncio.gather(*(breaker.call(aboom) for _ in range(1000)),
                                   return_exceptions=True)  # fmt: skip
    assert all(isinstance(r, Boom) for r in results)
    assert store.available
    await store.aclose()
    assert shared(stores, "aburst").consecutive_failures == 1000


def test_queued_callers_leave_at_once_when_redis_stalls(own_redis: RedisServer) -> None:
    """With every connection stuck on a paused server, the callers queued behind them must
    not wait for a turn and then for a timeout of their own."""
    store = RedisStore.from_url(own_redis.url, namespace="stall", max_connections=4)
    breaker = PersistentCircuitBreaker("stall", BreakerConfig(failure_threshold=10**9), store)
    breaker.call_sync(lambda: None)  # connected and subscribed
    own_redis.pause()
    took: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(32)

    def work() -> None:
        start.wait()
        t0 = time.monotonic()
        with contextlib.suppress(Boom):
            breaker.call_sync(boom)
        with lock:
            took.append(time.monotonic() - t0)

    threads = [threading.Thread(target=work) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    own_redis.resume()
    store.close()
    took.sort()
    print(f"32 callers on 4 connections, server paused: worst {took[-1] * 1000:.0f} ms, "
          f"median {took[16] * 1000:.0f} ms")  # fmt: skip
    # One timeout (100 ms) and the thread switches of 32 threads on 2 cores; queueing for
    # a connection and then timing out again would take two.
    assert took[-1] < 0.19


async def test_queued_coroutines_leave_at_once_when_redis_stalls(own_redis: RedisServer) -> None:
    store = RedisStore.from_url(own_redis.url, namespace="astall", max_connections=4)
    breaker = PersistentCircuitBreaker("astall", BreakerConfig(failure_threshold=10**9), store)
    await breaker.ready()
    own_redis.pause()

    async def timed() -> float:
        t0 = time.monotonic()
        with contextlib.suppress(Boom):
            await breaker.call(aboom)
        return time.monotonic() - t0

    took = sorted(await asyncio.gather(*(timed() for _ in range(200))))
    own_redis.resume()
    await store.aclose()
    print(f"200 coroutines on 4 connections, server paused: worst {took[-1] * 1000:.0f} ms")
    assert took[-1] < 0.19


def test_the_first_call_does_not_wait_for_the_subscription(own_redis: RedisServer) -> None:
    own_redis.kill()
    store = RedisStore.from_url(own_redis.url, namespace="first")
    t0 = time.monotonic()
    breaker = PersistentCircuitBreaker("first", BreakerConfig(failure_threshold=1), store)
    with pytest.raises(Boom):
        breaker.call_sync(boom)
    took = time.monotonic() - t0
    store.close()
    assert took < 0.1, f"the first call took {took:.3f}s with Redis refusing connections"


def test_the_store_times_out_fast_and_never_retries(own_redis: RedisServer) -> None:
    """PEERS.md: redis-py's default retries made a pybreaker call block 6-12 s."""
    store = RedisStore.from_url(own_redis.url, namespace="defaults")
    try:
        kwargs = store._client.connection_pool.connection_kwargs
        assert kwargs["socket_timeout"] <= 0.1
        assert kwargs["socket_connect_timeout"] <= 0.1
        assert kwargs["retry"].get_retries() == 0
        assert kwargs["retry_on_timeout"] is False
    finally:
        store.close()


# -- work that outlives the caller's event loop ------------------------------------------------


def test_sync_calls_on_a_loop_reach_redis_after_the_loop_ends(
    stores: Callable[..., RedisStore],
) -> None:
    """asyncio.run() cancels what is left on its loop; events decided on the mirror are
    sent by the store's thread, so they arrive anyway."""
    store = stores()

    async def main() -> None:
        tripped = PersistentCircuitBreaker("ends", BreakerConfig(failure_threshold=3), store)
        forced = PersistentCircuitBreaker("ends-forced", store=store)
        await tripped.ready()
        for _ in range(3):
            with pytest.raises(Boom):
                tripped.call_sync(boom)  # on the loop's thread
        forced.force_open()  # likewise: an operator's command from sync code on the loop
        # no aclose(): the loop ends with the work still queued

    asyncio.run(main())
    wait_for(lambda: shared(stores, "ends").state is S.OPEN)
    assert shared(stores, "ends").open_count == 1
    wait_for(lambda: shared(stores, "ends-forced").state is S.FORCED_OPEN)


# -- transitions told exactly once -----------------------------------------------------------


def test_a_trip_made_by_a_batch_of_successes_is_told_once_as_local(
    stores: Callable[..., RedisStore],
) -> None:
    """Five failures elsewhere, then five successes here, batched: the flush completes the
    window (10 calls, 50 %) and trips the breaker. This process made the transition."""
    cfg = BreakerConfig(
        failure_threshold=None, failure_rate_threshold=0.5, window_size=10, minimum_calls=10
    )
    here_events: list[BreakerEvent] = []
    there_events: list[BreakerEvent] = []
    here = PersistentCircuitBreaker(
        "batch-trip", cfg, stores(refresh_interval=60), listeners=[here_events.append]
    )
    there = PersistentCircuitBreaker(
        "batch-trip", cfg, stores(refresh_interval=60), listeners=[there_events.append]
    )
    for _ in range(5):
        with pytest.raises(Boom):
            there.call_sync(boom)
    for _ in range(5):
        here.call_sync(lambda: None)  # batched: no script call yet
    wait_for(lambda: here.state is S.OPEN)
    wait_for(lambda: there.state is S.OPEN)
    assert changes(here_events) == [(S.CLOSED, S.OPEN, False)]
    assert changes(there_events) == [(S.CLOSED, S.OPEN, True)]


async def test_a_decision_on_a_stale_mirror_is_corrected_and_told(
    stores: Callable[..., RedisStore],
) -> None:
    """A sync call on the loop decides on the mirror; when Redis disagrees (another
    process reset the breaker meanwhile, unheard), the mirror follows Redis, and the
    listeners hear about it instead of being left with a phantom OPEN."""
    events: list[BreakerEvent] = []
    deaf = stores(pubsub=False, refresh_interval=60)
    stale = PersistentCircuitBreaker(
        "stale", BreakerConfig(failure_threshold=3), deaf, listeners=[events.append]
    )
    await stale.ready()
    for _ in range(2):
        with pytest.raises(Boom):
            await stale.call(aboom)
    other = PersistentCircuitBreaker("stale", BreakerConfig(failure_threshold=3), stores())
    await other.command_async(Op.RESET)  # unheard by `stale`: no listener, no refresh soon
    with pytest.raises(Boom):
        stale.call_sync(boom)  # third failure on the mirror: OPEN, locally
    for _ in range(300):
        if stale.state is S.CLOSED:
            break
        await asyncio.sleep(0.01)
    assert stale.state is S.CLOSED
    assert changes(events) == [(S.CLOSED, S.OPEN, False), (S.OPEN, S.CLOSED, True)]
    assert shared(stores, "stale").consecutive_failures == 1
    await deaf.aclose()


def test_a_store_that_does_not_listen_still_publishes(stores: Callable[..., RedisStore]) -> None:
    quiet = PersistentCircuitBreaker(
        "quiet", BreakerConfig(failure_threshold=1), stores(pubsub=False)
    )
    listener = PersistentCircuitBreaker(
        "quiet", BreakerConfig(failure_threshold=1), stores(refresh_interval=60)
    )
    time.sleep(0.1)  # subscribed
    with pytest.raises(Boom):
        quiet.call_sync(boom)
    wait_for(lambda: listener.state is S.OPEN, seconds=1.0)  # by message, not by refresh


def test_a_stale_message_does_not_move_a_mirror_back(stores: Callable[..., RedisStore]) -> None:
    store = stores(refresh_interval=60)
    breaker = PersistentCircuitBreaker("order", BreakerConfig(failure_threshold=1), store)
    slot = breaker._slot
    old = store._read(slot)  # type: ignore[arg-type]
    with pytest.raises(Boom):
        breaker.call_sync(boom)
    assert breaker.state is S.OPEN
    slot._absorb_remote(old, ours=False, force=False, reason=None)  # type: ignore[attr-defined]
    assert breaker.state is S.OPEN  # an older version of the same key is ignored


def test_a_new_streak_is_published(stores: Callable[..., RedisStore]) -> None:
    """A success elsewhere must be able to end this process's streak of failures, so the
    start of a streak is published (not only state changes)."""
    a = PersistentCircuitBreaker("streak", BreakerConfig(failure_threshold=3),
                                 stores(refresh_interval=60))  # fmt: skip
    b = PersistentCircuitBreaker("streak", BreakerConfig(failure_threshold=3),
                                 stores(refresh_interval=60))  # fmt: skip
    time.sleep(0.1)
    with pytest.raises(Boom):
        a.call_sync(boom)
    wait_for(lambda: b.snapshot.consecutive_failures == 1, seconds=1.0)


def test_the_flush_interval_is_kept(stores: Callable[..., RedisStore]) -> None:
    store = stores(flush_interval=0.2, refresh_interval=60)
    rated = PersistentCircuitBreaker(
        "flush",
        BreakerConfig(failure_threshold=None, failure_rate_threshold=0.5, minimum_calls=10),
        store,
    )
    latencies = []
    for _ in range(5):
        t0 = time.monotonic()
        rated.call_sync(lambda: None)
        wait_for(lambda: rated._slot._pending == 0)  # type: ignore[attr-defined]
        latencies.append(time.monotonic() - t0)
        time.sleep(0.05)
    assert max(latencies) < 0.2 + 0.08, latencies  # not a second interval on top
