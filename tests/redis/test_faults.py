"""Redis failing under a breaker: killed, paused, restarted empty, script cache flushed,
loading, read-only. No protected call sees a store error or waits past the timeout."""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from chainlit_breaker import (
    BreakerConfig,
    BreakerState,
    CircuitOpenError,
    PersistentCircuitBreaker,
    StateChanged,
    StoreStatusChanged,
)
from chainlit_breaker.events import BreakerEvent
from chainlit_breaker.store.redis import RedisStore

from .conftest import RedisServer, free_port

pytestmark = pytest.mark.slow

TIMEOUT = 0.1  # the store's default client timeout
# A call may take the timeout plus scheduling noise on a loaded 2-core machine.
LIMIT = TIMEOUT + 0.15


class Boom(Exception):
    pass


def boom() -> None:
    raise Boom


class Harness:
    """A breaker on its own RedisStore, timing every call and recording every event."""

    def __init__(self, url: str, **options: Any) -> None:
        options.setdefault("probe_interval", 0.05)
        options.setdefault("refresh_interval", 0.2)
        self.store = RedisStore.from_url(url, namespace="faults", **options)
        self.events: list[BreakerEvent] = []
        self.breaker = PersistentCircuitBreaker(
            "svc",
            BreakerConfig(failure_threshold=3, reset_timeout=30),
            self.store,
            listeners=[self.events.append],
        )
        self.worst = 0.0

    def call(self, fn: Callable[[], Any]) -> str:
        """Run one call; only Boom (the service) and CircuitOpenError may come out."""
        start = time.monotonic()
        try:
            self.breaker.call_sync(fn)
            outcome = "ok"
        except Boom:
            outcome = "failed"
        except CircuitOpenError:
            outcome = "rejected"
        finally:
            self.worst = max(self.worst, time.monotonic() - start)
        return outcome

    async def acall(self, fn: Callable[[], Any]) -> str:
        start = time.monotonic()
        try:
            await self.breaker.call(fn)
            outcome = "ok"
        except Boom:
            outcome = "failed"
        except CircuitOpenError:
            outcome = "rejected"
        finally:
            self.worst = max(self.worst, time.monotonic() - start)
        return outcome

    def statuses(self) -> list[bool]:
        return [e.available for e in self.events if isinstance(e, StoreStatusChanged)]

    def shared(self, server: RedisServer) -> Any:
        store = RedisStore.from_url(server.url, namespace="faults")
        try:
            return store._read(store.slot("svc")).snapshot
        finally:
            store.close()

    def wait_available(self, seconds: float = 5.0) -> None:
        deadline = time.monotonic() + seconds
        while not self.store.available:
            assert time.monotonic() < deadline, "the store did not come back"
            time.sleep(0.01)

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def harness(own_redis: RedisServer) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(**options: Any) -> Harness:
        h = Harness(own_redis.url, **options)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


async def _ok() -> str:
    return "ok"


async def _aboom() -> None:
    raise Boom


def _warnings(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(1 for r in caplog.records if r.levelno == logging.WARNING and text in r.getMessage())


@pytest.mark.parametrize("fault", ["kill", "pause"])
def test_outage_falls_back_trips_locally_and_resyncs(
    own_redis: RedisServer,
    harness: Callable[..., Harness],
    caplog: pytest.LogCaptureFixture,
    fault: str,
) -> None:
    caplog.set_level(logging.WARNING, "chainlit_breaker")
    h = harness()
    assert h.call(boom) == "failed"  # one failure is in Redis before the fault
    assert h.shared(own_redis).consecutive_failures == 1
    getattr(own_redis, fault)()
    outcomes = [h.call(lambda: "ok") for _ in range(20)]
    outcomes += [h.call(boom) for _ in range(3)]
    outcomes += [h.call(lambda: "ok") for _ in range(20)]
    assert outcomes == ["ok"] * 20 + ["failed"] * 3 + ["rejected"] * 20
    assert h.breaker.state is BreakerState.OPEN  # tripped on in-process state
    assert not h.store.available
    assert h.worst < LIMIT, f"a call waited {h.worst:.3f}s"
    print(f"{fault}: worst call {h.worst * 1000:.1f} ms")
    if fault == "pause":
        own_redis.resume()
    else:
        own_redis.start()  # same port, empty
    h.wait_available()
    # Shared state wins: the paused server still has 1 failure; the restarted one nothing.
    assert h.breaker.state is BreakerState.CLOSED
    assert h.breaker.snapshot.consecutive_failures == (1 if fault == "pause" else 0)
    assert h.statuses() == [False, True]
    assert _warnings(caplog, "failed") == 1  # one warning per outage, not per call
    remote = [e for e in h.events if isinstance(e, StateChanged) and e.remote]
    assert [(e.old, e.new) for e in remote] == [(BreakerState.OPEN, BreakerState.CLOSED)]
    assert h.call(boom) == "failed"  # counted in Redis again
    assert h.shared(own_redis).consecutive_failures == (2 if fault == "pause" else 1)


def test_an_override_during_an_outage_reaches_redis_when_it_returns(
    own_redis: RedisServer, harness: Callable[..., Harness]
) -> None:
    h = harness()
    other = harness()  # another process
    own_redis.kill()
    assert h.breaker.force_open() is BreakerState.FORCED_OPEN  # applied locally at once
    assert h.call(lambda: "ok") == "rejected"
    own_redis.start()
    h.wait_available()
    assert h.breaker.state is BreakerState.FORCED_OPEN  # replayed before the resync
    assert h.shared(own_redis).state is BreakerState.FORCED_OPEN
    wait = time.monotonic() + 3
    while other.breaker.state is not BreakerState.FORCED_OPEN:
        assert time.monotonic() < wait
        time.sleep(0.01)


def test_restart_empty_is_noticed_and_resynced(
    own_redis: RedisServer, harness: Callable[..., Harness]
) -> None:
    h = harness()
    for _ in range(3):
        h.call(boom)
    assert h.shared(own_redis).state is BreakerState.OPEN
    own_redis.restart_empty()
    # The mirror is OPEN, so calls are rejected locally; the periodic refresh notices the
    # dead connection, and the resync brings the empty server's CLOSED state back.
    deadline = time.monotonic() + 3
    while h.breaker.state is not BreakerState.CLOSED:
        assert h.call(lambda: "ok") == "rejected"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert h.call(lambda: "ok") == "ok"
    assert h.call(boom) == "failed"
    assert h.shared(own_redis).consecutive_failures == 1
    assert h.worst < LIMIT


def test_script_flush_is_not_an_outage(
    own_redis: RedisServer, harness: Callable[..., Harness]
) -> None:
    h = harness()
    h.call(boom)
    own_redis.script_flush()
    h.call(boom)
    before = own_redis.commandstats()
    own_redis.script_flush()
    h.call(boom)
    after = own_redis.commandstats()
    assert h.shared(own_redis).state is BreakerState.OPEN
    assert h.statuses() == []
    assert after.get("eval", 0) - before.get("eval", 0) == 1  # re-sent once after NOSCRIPT


async def test_async_path_survives_kill(
    own_redis: RedisServer, harness: Callable[..., Harness]
) -> None:
    h = harness()
    assert await h.acall(_aboom) == "failed"
    own_redis.kill()
    outcomes = [await h.acall(_ok) for _ in range(5)]
    outcomes += [await h.acall(_aboom) for _ in range(3)]
    outcomes += [await h.acall(_ok)]
    assert outcomes == ["ok"] * 5 + ["failed"] * 3 + ["rejected"]
    assert h.worst < LIMIT
    own_redis.start()
    await asyncio.to_thread(h.wait_available)
    assert h.breaker.state is BreakerState.CLOSED
    assert await h.acall(_aboom) == "failed"
    await h.store.aclose()


@pytest.mark.parametrize("path", ["async", "sync-on-loop"])
async def test_event_loop_keeps_ticking_while_redis_is_paused(
    own_redis: RedisServer, harness: Callable[..., Harness], path: str
) -> None:
    h = harness(probe_interval=0.2)
    assert await h.acall(_ok) == "ok"
    ticks: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            ticks.append(time.monotonic())
            await asyncio.sleep(0.005)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)
    own_redis.pause()
    t0 = time.monotonic()
    outcomes = []
    while time.monotonic() - t0 < 0.8:
        if path == "async":
            outcomes.append(await h.acall(_aboom))
        else:  # a sync function called on the loop's own thread must not block it
            outcomes.append(h.call(boom))
        await asyncio.sleep(0.01)
    own_redis.resume()
    stop.set()
    await task
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    print(f"{path}: worst tick gap while paused {max(gaps) * 1000:.1f} ms, "
          f"worst call {h.worst * 1000:.1f} ms")  # fmt: skip
    # Blocking on Redis would cost a whole client timeout (100 ms) per call.
    assert max(gaps) < 0.09
    assert outcomes[:3] == ["failed"] * 3
    assert set(outcomes[3:]) == {"rejected"}
    await asyncio.to_thread(h.wait_available)
    await h.store.aclose()


async def test_making_a_breaker_on_the_loop_does_not_wait_for_a_paused_redis(
    own_redis: RedisServer,
) -> None:
    own_redis.pause()
    start = time.monotonic()
    store = RedisStore.from_url(own_redis.url, namespace="faults")
    breaker = PersistentCircuitBreaker("new", BreakerConfig(failure_threshold=1), store)
    took = time.monotonic() - start
    assert took < 0.05, f"building the breaker blocked the loop for {took:.3f}s"
    with pytest.raises(Boom):
        await breaker.call(_aboom)
    await asyncio.sleep(0.15)  # the first read times out in its task: an outage
    assert not store.available
    own_redis.resume()
    await store.aclose()


class LoadingServer:
    """Answers every command with LOADING, like a Redis still reading its dataset."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            while conn.recv(65536):
                conn.sendall(b"-LOADING Redis is loading the dataset in memory\r\n")

    def close(self) -> None:
        self.closed = True
        self.sock.close()


def test_loading_server_falls_back(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "chainlit_breaker")
    server = LoadingServer()
    h = Harness(f"redis://127.0.0.1:{server.port}/0")
    try:
        outcomes = [h.call(boom) for _ in range(3)] + [h.call(lambda: "ok")]
        assert outcomes == ["failed"] * 3 + ["rejected"]
        assert not h.store.available
        assert h.worst < LIMIT
        assert h.statuses() == [False]
        assert _warnings(caplog, "failed") == 1
    finally:
        h.close()
        server.close()


def test_read_only_replica_falls_back_and_stays_down() -> None:
    master = free_port()
    replica = RedisServer("--replicaof", "127.0.0.1", str(master))
    h = Harness(replica.url)
    try:
        assert h.call(lambda: "ok") == "ok"
        outcomes = [h.call(boom) for _ in range(3)] + [h.call(lambda: "ok")]
        assert outcomes == ["failed"] * 3 + ["rejected"]
        time.sleep(0.3)  # probes keep failing: writes are refused, so it stays down
        assert not h.store.available
        assert h.statuses() == [False]
    finally:
        h.close()
        replica.stop()


@pytest.mark.parametrize("mode", ["allow", "reject"])
def test_on_store_error_modes(
    own_redis: RedisServer, harness: Callable[..., Harness], mode: str
) -> None:
    h = harness(on_store_error=mode)
    own_redis.kill()
    first = h.call(boom)
    outcomes = [h.call(boom) for _ in range(5)]
    if mode == "allow":  # fail-open: every call runs, nothing trips
        assert first == "failed"
        assert outcomes == ["failed"] * 5
        assert h.breaker.state is BreakerState.DISABLED
    else:  # fail-closed: after the call that found Redis down, every call is rejected
        assert outcomes == ["rejected"] * 5
        with pytest.raises(CircuitOpenError) as info:
            h.breaker.call_sync(lambda: "ok")
        assert 0 < info.value.retry_after <= h.store.probe_interval
    assert h.worst < LIMIT
    own_redis.start()
    h.wait_available()
    assert h.breaker.state is BreakerState.CLOSED
    assert h.call(lambda: "ok") == "ok"


def test_garbage_in_the_key_is_a_reset(
    own_redis: RedisServer, harness: Callable[..., Harness], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "chainlit_breaker")
    h = harness()
    key = h.store.slot("svc").key
    with own_redis.client() as client:
        for plant in (
            lambda: client.set(key, "not a hash"),
            lambda: client.rpush(key, "a", "b"),
            lambda: client.hset(key, mapping={"v": "999", "st": "open"}),
            lambda: client.hset(key, mapping={"v": "1", "ep": "1.0", "st": "weird", "cf": "x"}),
            lambda: client.hset(
                key,
                mapping={
                    "v": "1",
                    "ep": "1.0",
                    "st": "closed",
                    "cf": "1",
                    "oc": "0",
                    "ts": "0",
                    "ver": "3",
                    "codes": "01xyz",
                },
            ),
            lambda: client.hset(
                key,
                mapping={
                    "v": "1",
                    "ep": "1.0",
                    "st": "closed",
                    "cf": "1",
                    "oc": "0",
                    "ts": "0",
                    "ver": "3",
                    "bk": "1,2,3",
                },
            ),
        ):
            client.delete(key)
            plant()
            assert h.call(boom) == "failed"
            snap = h.shared(own_redis)
            assert snap.consecutive_failures == 1  # counted from a fresh state
            assert client.type(key) == b"hash"
    assert _warnings(caplog, "treated as a reset") == 6
    assert h.store.available


def test_idle_keys_expire_but_overrides_do_not(
    own_redis: RedisServer, harness: Callable[..., Harness]
) -> None:
    h = harness(idle_ttl=0.3)
    key = h.store.slot("svc").key
    with own_redis.client() as client:
        h.call(boom)
        assert 0 < client.pttl(key) <= 300
        for _ in range(2):
            h.call(boom)
        # OPEN for 30 s: the key lives at least that long, plus the idle time.
        assert 30_000 < client.pttl(key) <= 30_300
        h.breaker.force_open()
        assert client.pttl(key) == -1
        h.breaker.reset()
        h.call(boom)
        time.sleep(0.5)
        assert client.exists(key) == 0
        # Many short-lived names leave nothing behind. Each key is checked right after its
        # call (on a loaded machine the first may expire before the last is written).
        for i in range(200):
            name = f"tmp-{i}"
            with pytest.raises(Boom):
                PersistentCircuitBreaker(name, store=h.store).call_sync(boom)
            assert 0 < client.pttl(h.store.slot(name).key) <= 300
        deadline = time.monotonic() + 5.0
        while client.keys("faults:{q*") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.keys("faults:{q*") == []


def test_urls_unix_socket_password_and_db() -> None:
    server = RedisServer("--requirepass", "s3cret")
    try:
        for url in (
            f"redis://:s3cret@127.0.0.1:{server.port}/3",
            f"redis://default:s3cret@127.0.0.1:{server.port}/4",
            f"unix://:s3cret@{server.socket_path}?db=5",
        ):
            store = RedisStore.from_url(url, namespace="urls")
            assert "s3cret" not in repr(store)
            b = PersistentCircuitBreaker("u", BreakerConfig(failure_threshold=2), store)
            with pytest.raises(Boom):
                b.call_sync(boom)
            assert store.available
            store.close()
        with redis.Redis(port=server.port, password="s3cret") as client:
            dbs = {db: client.execute_command("SELECT", db) and len(client.keys("urls:*"))
                   for db in (0, 3, 4, 5)}  # fmt: skip
        assert dbs == {0: 0, 3: 1, 4: 1, 5: 1}
        bad = RedisStore.from_url(f"redis://:wrong@127.0.0.1:{server.port}/0", namespace="urls")
        b = PersistentCircuitBreaker("u", BreakerConfig(failure_threshold=2), bad)
        with pytest.raises(Boom):
            b.call_sync(boom)  # a wrong password is an outage, not the caller's error
        assert not bad.available
        bad.close()
    finally:
        server.stop()
