"""RedisStore wiring: clients and URLs, the registry's environment variable, mirrors kept
current by pub/sub and refresh, batched successes, and sync calls on the event loop."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import threading
from collections.abc import Callable
from typing import Any

import pytest
import redis
import redis.asyncio

import chainlit_breaker
from chainlit_breaker import (
    BreakerConfig,
    BreakerState,
    CircuitOpenError,
    PersistentCircuitBreaker,
    StateChanged,
)
from chainlit_breaker.events import BreakerEvent
from chainlit_breaker.store.redis import RedisStore

from .conftest import RedisServer, free_port, wait_for


class Boom(Exception):
    pass


def boom() -> None:
    raise Boom


async def aboom() -> None:
    raise Boom


def test_registry_uses_the_environment_variable(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHAINLIT_BREAKER_REDIS_URL", redis_server.url)
    chainlit_breaker.registry.clear()
    store = chainlit_breaker.registry.store
    assert isinstance(store, RedisStore)
    assert chainlit_breaker.RedisStore is RedisStore
    breaker = chainlit_breaker.get_breaker("from-env")
    with pytest.raises(Boom):
        breaker.call_sync(boom)
    with redis_server.client() as client:
        assert client.exists("chainlit_breaker:{qfrom-env}") == 1
    chainlit_breaker.registry.clear()  # closes the store


async def test_store_from_existing_clients(redis_server: RedisServer, namespace: str) -> None:
    client = redis.Redis(port=redis_server.port, socket_timeout=0.1)
    aclient = redis.asyncio.Redis(port=redis_server.port, socket_timeout=0.1)
    store = RedisStore(client=client, async_client=aclient, namespace=namespace)
    breaker = PersistentCircuitBreaker("given", BreakerConfig(failure_threshold=2), store)
    with pytest.raises(Boom):
        await breaker.call(aboom)
    with pytest.raises(Boom):
        await asyncio.to_thread(breaker.call_sync, boom)
    assert breaker.state is BreakerState.OPEN
    await store.aclose()
    await aclient.aclose()
    client.close()  # the caller's clients stay the caller's to close


def test_bad_options_are_refused() -> None:
    client = redis.Redis()
    for kwargs in (
        {"namespace": "a{b}"},
        {"namespace": ""},
        {"on_store_error": "ignore"},
        {"flush_interval": 0},
        {"idle_ttl": -1},
    ):
        with pytest.raises(ValueError, match="must be"):
            RedisStore(client, **kwargs)


def test_a_trip_elsewhere_reaches_this_mirror(stores: Callable[..., RedisStore]) -> None:
    """Two stores stand for two processes: pub/sub carries the trip, reported as remote."""
    cfg = BreakerConfig(failure_threshold=2, reset_timeout=30)
    a = PersistentCircuitBreaker("shared", cfg, stores())
    seen: list[BreakerEvent] = []
    # A trip that lands before b listens, or before b's catch-up read after subscribing,
    # reaches b by a read instead ("refreshed from Redis"; test_faults covers reads).
    # This test is about the message: no periodic read, and b trips only once its
    # catch-up read is done.
    b_store = stores(refresh_interval=3600)
    caught_up = threading.Event()
    refresh_all = b_store._refresh_all

    def refresh_then_signal(force: bool) -> None:
        refresh_all(force)
        caught_up.set()

    b_store._refresh_all = refresh_then_signal  # type: ignore[method-assign]
    b = PersistentCircuitBreaker("shared", cfg, b_store, listeners=[seen.append])
    b.snapshot  # noqa: B018 - makes the slot, which starts the listener
    assert caught_up.wait(5), "b never subscribed"
    for _ in range(2):
        with pytest.raises(Boom):
            a.call_sync(boom)
    took = wait_for(lambda: b.state is BreakerState.OPEN)
    with pytest.raises(CircuitOpenError) as info:
        b.call_sync(lambda: None)
    assert 29 < info.value.retry_after <= 30
    changes = [e for e in seen if isinstance(e, StateChanged)]
    assert [(e.new, e.remote, e.reason) for e in changes] == [
        (BreakerState.OPEN, True, "2 consecutive failures")
    ]
    a.reset()
    wait_for(lambda: b.state is BreakerState.CLOSED)
    print(f"trip seen by the other store after {took * 1000:.2f} ms")


def test_refresh_bounds_staleness_without_pubsub(stores: Callable[..., RedisStore]) -> None:
    cfg = BreakerConfig(failure_threshold=1)
    a = PersistentCircuitBreaker("stale", cfg, stores())
    b = PersistentCircuitBreaker("stale", cfg, stores(pubsub=False, refresh_interval=0.2))
    with pytest.raises(Boom):
        a.call_sync(boom)
    took = wait_for(lambda: b.state is BreakerState.OPEN, seconds=1.0)
    assert took <= 0.2 + 0.15


def test_batched_successes_reset_the_shared_streak(stores: Callable[..., RedisStore]) -> None:
    cfg = BreakerConfig(failure_threshold=3)
    a = PersistentCircuitBreaker("streak", cfg, stores())
    b_store = stores(flush_interval=0.05)
    b = PersistentCircuitBreaker("streak", cfg, b_store)
    for _ in range(2):
        with pytest.raises(Boom):
            a.call_sync(boom)
    # B learns that a streak started (published when it goes 0 -> 1), so its success is
    # not skipped but batched, and the flush resets the shared streak.
    wait_for(lambda: b.snapshot.consecutive_failures > 0)
    assert b.call_sync(lambda: 1) == 1
    wait_for(lambda: a.snapshot.consecutive_failures == 0)
    with pytest.raises(Boom):
        a.call_sync(boom)
    assert a.state is BreakerState.CLOSED  # 2 + success + 1: no trip


async def test_sync_calls_on_the_loop_reach_redis(
    stores: Callable[..., RedisStore], redis_server: RedisServer
) -> None:
    store = stores()
    trips: list[StateChanged] = []
    breaker = PersistentCircuitBreaker(
        "on-loop",
        BreakerConfig(failure_threshold=3),
        store,
        listeners=[lambda e: trips.append(e) if isinstance(e, StateChanged) else None],
    )
    for _ in range(3):
        with pytest.raises(Boom):
            breaker.call_sync(boom)  # on the loop's thread: decided locally, sent by a task
    assert breaker.state is BreakerState.OPEN
    await asyncio.sleep(0.1)
    reader = stores()
    snap = reader._read(reader.slot("on-loop")).snapshot
    assert snap.state is BreakerState.OPEN
    assert snap.open_count == 1
    assert [(e.new, e.remote) for e in trips] == [(BreakerState.OPEN, False)]
    await store.aclose()


def test_config_in_code_wins_over_the_stored_record(stores: Callable[..., RedisStore]) -> None:
    """PEERS.md: purgatory gave a second process the stored 5 / 30 s instead of 100 / 1 s."""
    first = PersistentCircuitBreaker(
        "cfg", BreakerConfig(failure_threshold=5, reset_timeout=30), stores()
    )
    second = PersistentCircuitBreaker(
        "cfg", BreakerConfig(failure_threshold=100, reset_timeout=1), stores()
    )
    with pytest.raises(Boom):
        first.call_sync(boom)
    for _ in range(10):
        with pytest.raises(Boom):
            second.call_sync(boom)
    assert second.state is BreakerState.CLOSED  # 11 failures < 100: the code's number counts
    second.reconfigure(BreakerConfig(failure_threshold=12, reset_timeout=1))
    with pytest.raises(Boom):
        second.call_sync(boom)
    assert second.state is BreakerState.OPEN
    assert 0 < second.retry_after <= 1.0


@pytest.mark.slow
def test_tls_url(tmp_path: Any) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    port = free_port()
    server = RedisServer(
        "--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
        "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no",
    )  # fmt: skip
    try:
        url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={cert}&ssl_check_hostname=false"
        store = RedisStore.from_url(url, namespace="tls")
        breaker = PersistentCircuitBreaker("t", BreakerConfig(failure_threshold=1), store)
        with pytest.raises(Boom):
            breaker.call_sync(boom)
        assert store.available
        assert breaker.state is BreakerState.OPEN
        store.close()
        with server.client() as client:
            assert client.exists("tls:{qt}") == 1
    finally:
        server.stop()


async def test_a_breaker_made_on_the_loop_reads_the_shared_state_in_a_task(
    stores: Callable[..., RedisStore],
) -> None:
    cfg = BreakerConfig(failure_threshold=1)

    def trip_elsewhere() -> None:
        with pytest.raises(Boom):
            PersistentCircuitBreaker("late", cfg, stores()).call_sync(boom)

    await asyncio.to_thread(trip_elsewhere)
    store = stores()
    late = PersistentCircuitBreaker("late", cfg, store)  # on the loop: no blocking read
    for _ in range(100):
        if late.state is BreakerState.OPEN:
            break
        await asyncio.sleep(0.005)
    assert late.state is BreakerState.OPEN
    await store.aclose()


def test_a_dropped_subscription_is_restored_and_caught_up(
    stores: Callable[..., RedisStore], redis_server: RedisServer
) -> None:
    cfg = BreakerConfig(failure_threshold=1)
    a = PersistentCircuitBreaker("resub", cfg, stores(refresh_interval=600))
    b = PersistentCircuitBreaker("resub", cfg, stores(refresh_interval=600))
    with redis_server.client() as client:
        killed = client.client_kill_filter(_type="pubsub")
    assert killed >= 2
    with pytest.raises(Boom):
        a.call_sync(boom)  # published while B may not be listening
    # No periodic refresh for 600 s: only the resubscription's catch-up can bring it.
    took = wait_for(lambda: b.state is BreakerState.OPEN, seconds=3.0)
    print(f"after the subscription was killed, the trip arrived in {took * 1000:.1f} ms")
