"""RedisStore: breaker state shared by every process through one Redis, one script per change.

Each process mirrors the breakers it uses; the hot path reads the mirror, pub/sub and a
periodic refresh keep it current, and a Redis outage falls back to in-process state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
import weakref
from collections.abc import Callable, Coroutine
from dataclasses import replace
from secrets import token_hex
from typing import Any, Literal, cast

import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError

from ...clock import Clock, MonotonicClock
from ...core.machine import Acquire, Command, Decision, Event, Record, Verdict, decide
from ...core.policy import Policy
from ...core.state import BreakerState, Snapshot
from ..base import ChangeCallback, StatusCallback
from .scripts import SCRIPTS, Reply, Script, encode_name, event_args, flush_args, parse, policy_args

__all__ = ["OnStoreError", "RedisSlot", "RedisStore"]

log = logging.getLogger("chainlit_breaker")

OnStoreError = Literal["local", "allow", "reject"]
"""What a breaker does while Redis does not answer: keep deciding on in-process state
(``local``), admit every call (``allow``, fail-open) or reject every call (``reject``)."""

_CLOSED = BreakerState.CLOSED
_OPEN = BreakerState.OPEN
_FORCED_OPEN = BreakerState.FORCED_OPEN
_DISABLED = BreakerState.DISABLED
_DONE = Decision(Verdict.DONE)
_ADMIT = Decision(Verdict.ADMIT)
_IGNORED_STATES = (_OPEN, _FORCED_OPEN, _DISABLED)
_READ = SCRIPTS["read"]


class RedisSlot:
    """One breaker's mirror in this process, and the way to change the shared state."""

    __slots__ = (
        "snapshot",
        "name",
        "key",
        "_enc",
        "_store",
        "_lock",
        "_order",
        "_callback",
        "_status",
        "_pending",
        "_pending_since",
        "_policy",
        "_replays",
        "_command",
        "_first",
    )

    def __init__(self, store: RedisStore, name: str, enc: str) -> None:
        # A plain attribute: the breaker reads it on every call.
        self.snapshot = Snapshot()
        self.name = name
        self.key = f"{store.namespace}:{{{enc}}}"
        self._enc = enc
        self._store = store
        self._lock = threading.Lock()
        self._order = (0, 0, -1)  # (epoch, version) of the mirror: see Reply.order
        self._callback: ChangeCallback | None = None
        self._status: StatusCallback | None = None
        self._pending = 0
        self._pending_since = 0.0
        self._policy = Policy()
        self._replays = 0  # events decided on the loop thread and not yet sent to Redis
        self._command: tuple[Command, Policy] | None = None  # issued during an outage
        self._first: asyncio.Task[None] | None = None  # the first read, when made on a loop

    # -- the port ------------------------------------------------------------------------

    def on_change(self, callback: ChangeCallback | None) -> None:
        self._callback = callback

    async def ready(self) -> None:
        """Wait for this mirror's first read of the shared state. A slot made on an event
        loop's thread reads it in a task and is CLOSED until that lands; await this
        before showing its state. Returns at once if the read is done (or the slot was
        made off the loop); a failed read leaves the store down, as any failure does."""
        first = self._first
        if first is None:
            return
        if not first.done():
            if first.get_loop() is asyncio.get_running_loop():
                await asyncio.shield(first)  # a cancelled waiter must not cancel the read
            else:  # another loop's task cannot be awaited here: read again on ours
                await self._store._first_read(self)
                return
        self._first = None

    def on_status(self, callback: StatusCallback | None) -> None:
        """Register ``callback(available, detail)`` for Redis outages and recoveries; it
        hears at once if Redis is already down."""
        self._status = callback
        if callback is not None and self._store._down:
            callback(False, self._store._detail)

    def apply(
        self, event: Event, now: float, policy: Policy, rand: float
    ) -> tuple[Snapshot, Decision]:
        quick = self._quick(event, now, policy, rand)
        if quick is not None:
            return quick
        loop = _running_loop()
        if loop is not None:
            return self._on_loop(loop, event, now, policy, rand)
        pending = self._take_pending() if type(event) is Record else 0
        script, op = event_args(event, pending)
        try:
            raw = self._store._eval(script, self.key, self._enc, now, policy, rand, op)
            return self._absorb(parse(raw), now)
        except Exception as exc:
            self._store._failed(exc)
            return self._fallback(event, now, policy, rand)

    async def apply_async(
        self, event: Event, now: float, policy: Policy, rand: float
    ) -> tuple[Snapshot, Decision]:
        quick = self._quick(event, now, policy, rand)
        if quick is not None:
            return quick
        store = self._store
        client = store._async_client()
        if client is None:  # built from a sync client only: keep the loop free anyway
            return await asyncio.to_thread(self.apply, event, now, policy, rand)
        pending = self._take_pending() if type(event) is Record else 0
        script, op = event_args(event, pending)
        try:
            raw = await store._eval_async(
                client, script, self.key, self._enc, now, policy, rand, op
            )
            return self._absorb(parse(raw), now)
        except Exception as exc:
            store._failed(exc)
            return self._fallback(event, now, policy, rand)

    # -- local decisions -------------------------------------------------------------------

    def _quick(
        self, event: Event, now: float, policy: Policy, rand: float
    ) -> tuple[Snapshot, Decision] | None:
        """Decide without Redis when that is exact enough (see the README), else None."""
        store = self._store
        if store._down:
            return self._fallback(event, now, policy, rand)
        if type(event) is Record and event.permit is None:
            state = self.snapshot.state
            if state in _IGNORED_STATES:
                return self.snapshot, _DONE  # the core ignores outcomes here
            if state is _CLOSED and not event.failure and not event.slow and store._batch > 1:
                return self._batch(event, now, policy, rand)
        return None

    def _batch(
        self, event: Record, now: float, policy: Policy, rand: float
    ) -> tuple[Snapshot, Decision] | None:
        with self._lock:
            snap = self.snapshot
            if snap.state is not _CLOSED:
                return None
            new, decision = decide(snap, event, now, policy, rand)
            if decision.previous is not None:
                return None  # this success changes the state: not a batch matter
            # The version stays: Redis' next reply, at that version or later, replaces it.
            self.snapshot = replace(new, version=snap.version)
            if not self._pending:
                self._pending_since = time.monotonic()
            self._policy = policy
            self._pending += event.count
            full = self._pending >= self._store._batch
        if full:
            self._store._wake.set()
        return new, decision

    def _take_pending(self) -> int:
        with self._lock:
            pending, self._pending = self._pending, 0
        return pending

    def _fallback(
        self, event: Event, now: float, policy: Policy, rand: float
    ) -> tuple[Snapshot, Decision]:
        mode = self._store.on_store_error
        if type(event) is Command:
            # An operator's override outlives the outage: it is sent once Redis answers.
            self._command = (event, policy)
        if mode == "local" or type(event) is Command:
            with self._lock:
                new, decision = decide(self.snapshot, event, now, policy, rand)
                self.snapshot = new
            return new, decision
        if type(event) is not Acquire:
            return self.snapshot, _DONE
        if mode == "allow":
            return self.snapshot, _ADMIT
        wait = self._store.probe_interval
        with self._lock:
            self.snapshot = replace(self.snapshot, open_until=now + wait)
        return self.snapshot, Decision(Verdict.REJECT, wait)

    def _on_loop(
        self,
        loop: asyncio.AbstractEventLoop,
        event: Event,
        now: float,
        policy: Policy,
        rand: float,
    ) -> tuple[Snapshot, Decision]:
        """A sync call on the event loop's thread: decide on the mirror now, send the event
        to Redis from a task on that loop (in order), never block the loop."""
        with self._lock:
            snap = self.snapshot
            new, decision = decide(snap, event, now, policy, rand)
            self.snapshot = replace(new, version=snap.version)
        pending = self._take_pending() if type(event) is Record else 0
        with self._lock:
            self._replays += 1
        self._store._schedule(loop, self, event, policy, rand, pending)
        return new, decision

    async def _replay(self, event: Event, policy: Policy, rand: float, pending: int) -> None:
        store = self._store
        script, op = event_args(event, pending)
        now = store.clock.now()
        try:
            client = store._async_client()
            if client is None:
                raw = await asyncio.to_thread(
                    store._eval, script, self.key, self._enc, now, policy, rand, op
                )
            else:
                raw = await store._eval_async(
                    client, script, self.key, self._enc, now, policy, rand, op
                )
            self._absorb(parse(raw), now)
        except Exception as exc:
            store._failed(exc)
        finally:
            with self._lock:
                self._replays -= 1

    # -- mirror updates ----------------------------------------------------------------------

    def _absorb(self, reply: Reply, now: float) -> tuple[Snapshot, Decision]:
        """A reply to this process's own script call."""
        if reply.warning:
            self._store._garbage(self, reply.warning)
        snap = self._store._local(reply, now)
        order = reply.order
        with self._lock:
            if order >= self._order:
                self.snapshot = snap
                self._order = order
        return snap, reply.decision

    def _absorb_remote(self, reply: Reply, ours: bool, force: bool, reason: str | None) -> None:
        """A published change, a refresh or a resync."""
        if reply.warning:
            self._store._garbage(self, reply.warning)
        snap = self._store._local(reply, None)
        order = reply.order
        with self._lock:
            old = self.snapshot
            # Local decisions still on their way to Redis are newer than any read.
            if not force and (order < self._order or self._replays):
                return
            self.snapshot = snap
            self._order = order
        callback = self._callback
        if not ours and callback is not None and old.state is not snap.state:
            try:
                callback(old, snap, reply.decision.reason or reason)
            except Exception:
                log.exception("breaker %r: change callback failed", self.name)

    def _outage_started(self, now: float, detail: str) -> None:
        store = self._store
        new: Snapshot | None = None
        with self._lock:
            old = self.snapshot
            if store.on_store_error == "allow":
                new = Snapshot(state=_DISABLED, open_count=old.open_count, version=old.version)
                reason = "Redis unavailable: admitting every call"
            elif store.on_store_error == "reject":
                new = Snapshot(
                    state=_OPEN,
                    opened_at=now,
                    open_until=now + store.probe_interval,
                    open_count=old.open_count,
                    version=old.version,
                )
                reason = "Redis unavailable: rejecting every call"
            if new is not None:
                self.snapshot = new
        if new is not None and self._callback is not None and old.state is not new.state:
            self._callback(old, new, reason)
        if self._status is not None:
            self._status(False, detail)

    def _outage_ended(self) -> None:
        if self._status is not None:
            self._status(True, "Redis answers again; state resynced")

    def __repr__(self) -> str:
        return f"<RedisSlot {self.name!r} {self.snapshot.state.value}>"


class RedisStore:
    """Breaker state in Redis, shared by every process that uses the same namespace.

    >>> store = RedisStore.from_url("redis://localhost:6379/0", namespace="myapp")  # doctest: +SKIP

    Options (all keyword-only):

    - ``success_batch_size`` (100) / ``flush_interval`` (0.1 s): CLOSED successes are
      counted locally and sent in one script call per batch, by count or by age;
      1 sends every success at once.
    - ``refresh_interval`` (1 s): how often the mirrors are re-read, which bounds their
      staleness if the pub/sub subscription is lost.
    - ``idle_ttl`` (86400 s): a breaker's key expires after this long without a state
      change (0: never). An OPEN key lives at least until its reset timeout has passed.
    - ``on_store_error``: ``"local"`` (default), ``"allow"`` or ``"reject"``.
    - ``probe_interval`` (0.25 s): how often a failed Redis is retried in the background.
    - ``clock``: scripts use the callers' ``now`` instead of Redis ``TIME`` (tests, or one
      machine); give the breakers the same clock.
    - ``pubsub`` (True): listen for other processes' changes.
    """

    def __init__(
        self,
        client: redis.Redis,
        async_client: redis.asyncio.Redis | None = None,
        namespace: str = "chainlit_breaker",
        *,
        success_batch_size: int = 100,
        flush_interval: float = 0.1,
        refresh_interval: float = 1.0,
        idle_ttl: float = 86400.0,
        on_store_error: OnStoreError = "local",
        probe_interval: float = 0.25,
        clock: Clock | None = None,
        pubsub: bool = True,
        _async_factory: Callable[[], redis.asyncio.Redis] | None = None,
        _owns_clients: bool = False,
        _where: str | None = None,
    ) -> None:
        if not namespace or "{" in namespace or "}" in namespace:
            raise ValueError(f"namespace must be non-empty and without braces, got {namespace!r}")
        if on_store_error not in ("local", "allow", "reject"):
            raise ValueError(
                f"on_store_error must be 'local', 'allow' or 'reject', got {on_store_error!r}"
            )
        for label, value in (
            ("flush_interval", flush_interval),
            ("refresh_interval", refresh_interval),
            ("probe_interval", probe_interval),
        ):
            if not value > 0:
                raise ValueError(f"{label} must be > 0, got {value!r}")
        if idle_ttl < 0:
            raise ValueError(f"idle_ttl must be >= 0, got {idle_ttl!r}")
        self.namespace = namespace
        self.on_store_error: OnStoreError = on_store_error
        self.probe_interval = float(probe_interval)
        self.flush_interval = float(flush_interval)
        self.refresh_interval = float(refresh_interval)
        self.idle_ttl = float(idle_ttl)
        self.clock: Clock = clock if clock is not None else MonotonicClock()
        self._caller_time = clock is not None
        self._batch = max(int(success_batch_size), 1)
        self._client = client
        self._aclient = async_client
        self._afactory = _async_factory
        self._aclients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, redis.asyncio.Redis
        ] = weakref.WeakKeyDictionary()
        self._replay_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        self._owns = _owns_clients
        self._where = _where or _describe(client)
        self._channel = f"{namespace}:changes" if pubsub else ""
        self._token = token_hex(8)
        self._ttl_ms = str(int(self.idle_ttl * 1000))
        self._slots: dict[str, RedisSlot] = {}
        self._by_enc: dict[str, RedisSlot] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._subscribed = threading.Event()
        self._down = False
        self._detail = ""
        self._closed = False
        self._refresh_requested = False
        self._threads: list[threading.Thread] = []
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    def from_url(
        cls,
        url: str,
        namespace: str = "chainlit_breaker",
        *,
        socket_timeout: float = 0.1,
        connect_timeout: float | None = None,
        max_connections: int = 16,
        client_options: dict[str, Any] | None = None,
        **options: Any,
    ) -> RedisStore:
        """A store on ``url`` (``redis://``, ``rediss://`` or ``unix://``, with user,
        password and db as usual), with its own clients: short timeouts, no retries, and a
        bounded pool per client (a burst of callers queues for a connection, at most
        ``socket_timeout``, instead of opening hundreds of sockets at once)."""
        from redis.asyncio.retry import Retry as AsyncRetry
        from redis.retry import Retry

        timeout = socket_timeout if connect_timeout is None else connect_timeout
        common: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": timeout,
            "retry_on_timeout": False,
            "health_check_interval": 0,
            "max_connections": max_connections,
            "timeout": socket_timeout,
        }
        common.update(client_options or {})
        pool = redis.BlockingConnectionPool.from_url(url, retry=Retry(NoBackoff(), 0), **common)
        client = redis.Redis(connection_pool=pool)

        def factory() -> redis.asyncio.Redis:
            apool = redis.asyncio.BlockingConnectionPool.from_url(
                url, retry=AsyncRetry(NoBackoff(), 0), **common
            )
            return redis.asyncio.Redis(connection_pool=apool)

        return cls(
            client,
            None,
            namespace,
            _async_factory=factory,
            _owns_clients=True,
            _where=_redact(url),
            **options,
        )

    # -- the port ------------------------------------------------------------------------

    def slot(self, name: str) -> RedisSlot:
        slot = self._slots.get(name)
        if slot is not None:
            return slot
        loop = _running_loop()
        with self._lock:
            slot = self._slots.get(name)
            if slot is None:
                enc = encode_name(name)
                slot = RedisSlot(self, name, enc)
                self._slots[name] = slot
                self._by_enc[enc] = slot
                if not self._threads and not self._closed:
                    self._start(wait=loop is None)
        if self._down:
            slot._outage_started(self.clock.now(), self._detail)
            return slot
        # A new mirror must not admit calls the shared state would reject: read it once
        # now (bounded by the client timeout), so a fresh process starts where the others
        # are. On the event loop's thread the read runs as a task instead: until it lands
        # (one round trip) the new mirror is CLOSED.
        if loop is not None:
            slot._first = self._spawn(loop, self._first_read(slot))
            return slot
        try:
            reply = self._read(slot)
        except Exception as exc:
            self._failed(exc)
        else:
            slot._absorb_remote(reply, ours=True, force=False, reason=None)
        return slot

    async def _first_read(self, slot: RedisSlot) -> None:
        try:
            client = self._async_client()
            script = SCRIPTS["read"]
            now = self.clock.now()
            if client is None:
                raw = await asyncio.to_thread(
                    self._eval, script, slot.key, slot._enc, now, Policy(), 0.5, ()
                )
            else:
                raw = await self._eval_async(
                    client, script, slot.key, slot._enc, now, Policy(), 0.5, ()
                )
            slot._absorb_remote(parse(raw), ours=True, force=False, reason=None)
        except Exception as exc:
            self._failed(exc)

    def names(self) -> list[str]:
        return sorted(self._slots)

    @property
    def available(self) -> bool:
        """False while Redis is failing and breakers run on in-process state."""
        return not self._down

    def refresh(self) -> None:
        """Re-read every mirror from Redis now (the background thread does it periodically)."""
        self._refresh_all(force=False)

    def flush(self) -> None:
        """Send every pending batch of successes now."""
        self._flush(force=True)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        self._wake.set()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=1.0)
        if not self._down:
            self._flush(force=True)
        if self._owns:
            self._client.close()
            self._client.connection_pool.disconnect()

    async def aclose(self) -> None:
        try:
            loop = asyncio.get_running_loop()
            client = self._aclients.pop(loop, None)
            if self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
            if client is not None:
                await client.aclose()
                await client.connection_pool.disconnect()
        finally:
            await asyncio.to_thread(self.close)

    def __repr__(self) -> str:
        state = "down" if self._down else "up"
        return f"RedisStore({self._where}, namespace={self.namespace!r}, {state})"

    # -- script calls --------------------------------------------------------------------------

    def _argv(
        self,
        script: Script,
        enc: str,
        now: float,
        policy: Policy,
        rand: float,
        op: tuple[str, ...],
    ) -> list[str]:
        clock = repr(float(now)) if self._caller_time else ""
        if script is _READ:
            return [clock]  # a read never saves or publishes: the rest would be unused
        return [
            clock,
            self._ttl_ms,
            self._channel,
            self._token,
            enc,
            policy_args(policy),
            repr(float(rand)),
            *op,
        ]

    def _eval(
        self,
        script: Script,
        key: str,
        enc: str,
        now: float,
        policy: Policy,
        rand: float,
        op: tuple[str, ...],
    ) -> list[Any]:
        args = self._argv(script, enc, now, policy, rand, op)
        client = self._client
        try:
            return cast(list[Any], client.evalsha(script.sha, 1, key, *args))
        except NoScriptError:  # the cache was flushed or the server restarted: send it once
            return cast(list[Any], client.eval(script.source, 1, key, *args))

    async def _eval_async(
        self,
        client: redis.asyncio.Redis,
        script: Script,
        key: str,
        enc: str,
        now: float,
        policy: Policy,
        rand: float,
        op: tuple[str, ...],
    ) -> list[Any]:
        args = self._argv(script, enc, now, policy, rand, op)
        try:
            return cast(list[Any], await client.evalsha(script.sha, 1, key, *args))
        except NoScriptError:
            return cast(list[Any], await client.eval(script.source, 1, key, *args))

    def _local(self, reply: Reply, now: float | None) -> Snapshot:
        """The reply's snapshot on the callers' clock. With a ``clock`` option the scripts
        already ran on it; else times move by (local now - Redis TIME at the script)."""
        if self._caller_time:
            return reply.snapshot
        return reply.local(self.clock.now() if now is None else now)

    def _async_client(self) -> redis.asyncio.Redis | None:
        if self._aclient is not None:
            return self._aclient
        if self._afactory is None:
            return None
        # asyncio clients are bound to the loop they first ran on: one per loop.
        loop = asyncio.get_running_loop()
        client = self._aclients.get(loop)
        if client is None:
            client = self._afactory()
            self._aclients[loop] = client
        return client

    def _schedule(
        self,
        loop: asyncio.AbstractEventLoop,
        slot: RedisSlot,
        event: Event,
        policy: Policy,
        rand: float,
        pending: int,
    ) -> None:
        lock = self._replay_locks.get(loop)
        if lock is None:
            lock = self._replay_locks[loop] = asyncio.Lock()

        async def replay() -> None:
            async with lock:  # FIFO: Redis sees this loop's events in the order they happened
                await slot._replay(event, policy, rand, pending)

        self._spawn(loop, replay())

    def _spawn(
        self, loop: asyncio.AbstractEventLoop, work: Coroutine[Any, Any, None]
    ) -> asyncio.Task[None]:
        task = loop.create_task(work)
        self._tasks.add(task)  # a reference, so the task is not collected mid-flight
        task.add_done_callback(self._tasks.discard)
        return task

    # -- outages --------------------------------------------------------------------------------

    def _failed(self, exc: BaseException) -> None:
        with self._lock:
            if self._down or self._closed:
                return
            self._down = True
        self._wake.set()
        detail = self._detail = f"{type(exc).__name__}: {exc}"
        modes = {
            "local": "in-process state",
            "allow": "admitting every call",
            "reject": "rejecting every call",
        }
        if isinstance(exc, redis.RedisError):
            log.warning(
                "chainlit_breaker: Redis store %s failed (%s); breakers fall back to %s "
                "until it answers again",
                self._where,
                detail,
                modes[self.on_store_error],
            )
        else:
            log.error(
                "chainlit_breaker: Redis store %s: unexpected error; breakers fall back to %s",
                self._where,
                modes[self.on_store_error],
                exc_info=exc,
            )
        now = self.clock.now()
        for slot in list(self._slots.values()):
            slot._outage_started(now, detail)

    def _garbage(self, slot: RedisSlot, warning: str) -> None:
        log.warning(
            "chainlit_breaker: breaker %r: %s in Redis key %r; treated as a reset",
            slot.name,
            warning,
            slot.key[:200],
        )

    def _probe(self) -> bool:
        """Try Redis with a write (a replica or a loading server must fail it), then
        resync every mirror: the shared state wins over what was decided locally."""
        try:
            self._client.set(f"{self.namespace}:probe", b"1", px=10_000)
            for slot in list(self._slots.values()):
                if slot._command is not None:
                    command, policy = slot._command
                    script, op = event_args(command, 0)
                    self._eval(script, slot.key, slot._enc, self.clock.now(), policy, 0.5, op)
                    slot._command = None
            replies = [(slot, self._read(slot)) for slot in list(self._slots.values())]
        except Exception:
            return False
        for slot, reply in replies:
            slot._absorb_remote(reply, ours=False, force=True, reason="resynced with Redis")
        with self._lock:
            self._down = False
        log.warning("chainlit_breaker: Redis store %s answers again; state resynced", self._where)
        for slot in list(self._slots.values()):
            slot._outage_ended()
        return True

    def _read(self, slot: RedisSlot) -> Reply:
        raw = self._eval(SCRIPTS["read"], slot.key, slot._enc, self.clock.now(), Policy(), 0.5, ())
        return parse(raw)

    # -- background work ---------------------------------------------------------------------

    def _start(self, wait: bool) -> None:
        maintain = threading.Thread(
            target=self._maintain, name=f"chainlit-breaker-redis-{self._token}", daemon=True
        )
        self._threads.append(maintain)
        if self._channel:
            listen = threading.Thread(
                target=self._listen, name=f"chainlit-breaker-pubsub-{self._token}", daemon=True
            )
            self._threads.append(listen)
            listen.start()
            # Changes published before we listen arrive only with the refresh that follows
            # the subscription: off the loop, give it a moment (once per store).
            if wait:
                self._subscribed.wait(0.25)
        maintain.start()

    def _maintain(self) -> None:
        next_refresh = time.monotonic() + self.refresh_interval
        while not self._closed:
            try:
                if self._down:
                    self._wake.wait(self.probe_interval)
                    self._wake.clear()
                    if not self._closed:
                        self._probe()
                    next_refresh = time.monotonic() + self.refresh_interval
                    continue
                wait = min(self.flush_interval, max(next_refresh - time.monotonic(), 0.0))
                self._wake.wait(wait)
                self._wake.clear()
                if self._closed:
                    break
                self._flush(force=False)
                if self._refresh_requested or time.monotonic() >= next_refresh:
                    self._refresh_requested = False
                    self._refresh_all(force=False)
                    next_refresh = time.monotonic() + self.refresh_interval
            except Exception:  # the thread must survive anything; the next round retries
                log.exception("chainlit_breaker: Redis maintenance failed")
                time.sleep(self.probe_interval)

    def _flush(self, force: bool) -> None:
        now_mono = time.monotonic()
        for slot in list(self._slots.values()):
            if self._down:
                return
            pending = slot._pending
            if not pending:
                continue
            young = now_mono - slot._pending_since < self.flush_interval
            if not force and pending < self._batch and young:
                continue
            pending = slot._take_pending()
            if not pending:
                continue
            script, op = flush_args(pending)
            now = self.clock.now()
            try:
                raw = self._eval(script, slot.key, slot._enc, now, slot._policy, 0.5, op)
                slot._absorb(parse(raw), now)
            except Exception as exc:
                self._failed(exc)
                return

    def _refresh_all(self, force: bool) -> None:
        for slot in list(self._slots.values()):
            if self._down:
                return
            try:
                reply = self._read(slot)
            except Exception as exc:
                self._failed(exc)
                return
            slot._absorb_remote(reply, ours=False, force=force, reason="refreshed from Redis")

    def _listen(self) -> None:
        backoff = 0.05
        while not self._closed:
            pubsub = None
            try:
                pubsub = self._client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
                pubsub.subscribe(self._channel)
                pubsub.get_message(timeout=0.1)  # the confirmation: we are listening now
                self._subscribed.set()
                # Messages may have been missed while unsubscribed: catch up.
                self._refresh_requested = True
                self._wake.set()
                backoff = 0.05
                while not self._closed:
                    message = pubsub.get_message(timeout=0.1)
                    if message is not None and message.get("type") == "message":
                        self._on_message(message["data"])
            except Exception:
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 1.0)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        pubsub.close()

    def _on_message(self, data: bytes | str) -> None:
        if self._down:
            return  # local state rules until the resync
        try:
            fields = json.loads(data)
            slot = self._by_enc.get(fields[0])
            if slot is None:
                return
            reply = parse(fields[2:])
        except Exception:
            log.warning("chainlit_breaker: ignoring a malformed change message", exc_info=True)
            return
        slot._absorb_remote(reply, ours=fields[1] == self._token, force=False, reason=None)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _describe(client: redis.Redis) -> str:
    try:
        kw = client.connection_pool.connection_kwargs
        where = kw.get("path") or f"{kw.get('host')}:{kw.get('port')}"
        return f"{where}/{kw.get('db', 0)}"
    except Exception:
        return type(client).__name__


def _redact(url: str) -> str:
    """The URL without its password, for log lines."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))
