"""RedisStore: breaker state shared by every process through one Redis, one script per change.

Each process mirrors the breakers it uses; the hot path reads the mirror, pub/sub and a
periodic refresh keep it current, and a Redis outage falls back to in-process state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from secrets import token_hex
from typing import Any, Literal, cast

import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError

from ...clock import Clock, MonotonicClock
from ...core.machine import Acquire, Command, Decision, Event, Record, Release, Verdict, decide
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


class _Gate:
    """At most ``limit`` script calls of this process's callers in flight on the sync
    client. A burst queues here instead of in the connection pool, where outwaiting a pool
    timeout would look like an outage; every waiter leaves at once when the store goes
    down, so a stalled server costs a queued caller nothing more."""

    __slots__ = ("_cond", "_free")

    def __init__(self, limit: int) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._free = limit

    def enter(self, store: RedisStore) -> str:
        cond = self._cond
        with cond:
            if self._free > 0:
                self._free -= 1
                return _ENTERED
            deadline = time.monotonic() + store.queue_timeout
            while self._free <= 0:
                if store._down or store._closed:
                    return _DOWN
                left = deadline - time.monotonic()
                if left <= 0:
                    return _BUSY
                cond.wait(left)
            if store._down or store._closed:
                return _DOWN  # a turn freed up because a call failed: Redis is down
            self._free -= 1
            return _ENTERED

    def leave(self) -> None:
        with self._cond:
            self._free += 1
            self._cond.notify()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()


class _AsyncGate:
    """The same for one event loop's asyncio client (used on that loop only)."""

    __slots__ = ("_free", "_waiters")

    def __init__(self, limit: int) -> None:
        self._free = limit
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def enter(self, store: RedisStore) -> str:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return _ENTERED
        loop = asyncio.get_running_loop()
        deadline = loop.time() + store.queue_timeout
        while True:
            if store._down or store._closed:
                return _DOWN
            if self._free > 0:
                self._free -= 1
                return _ENTERED
            left = deadline - loop.time()
            if left <= 0:
                return _BUSY
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            timer = loop.call_later(left, _wake_future, waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # woken, but leaving: pass the turn on
                raise
            finally:
                timer.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)

    def leave(self) -> None:
        self._free += 1
        self._wake_one()

    def _wake_one(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
                return

    def wake(self) -> None:
        for waiter in self._waiters:
            _wake_future(waiter)


def _wake_future(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


_ENTERED = "entered"
_DOWN = "down"
_BUSY = "busy"


@dataclass(slots=True)
class _Deferred:
    """An event decided on the local mirror, to be sent to Redis by the store's thread."""

    slot: RedisSlot
    event: Event
    now: float
    policy: Policy
    rand: float
    pending: int
    reserve: bool = False  # a trial permit asked for a sync caller on the event loop


def _mergeable(last: _Deferred, item: _Deferred) -> bool:
    """Two queued outcomes that one Record with a count can carry: the same breaker,
    plain (no trial permit), alike, in the same second (for time windows), same policy."""
    a, b = last.event, item.event
    return (
        type(a) is Record
        and type(b) is Record
        and last.slot is item.slot
        and a.permit is None
        and b.permit is None
        and a.failure == b.failure
        and a.slow == b.slow
        and last.policy is item.policy
        and math.floor(last.now) == math.floor(item.now)
        and not last.reserve
        and not item.reserve
        and item.pending == 0  # successes in between would end the streak: keep order
    )


_CLOSE_DRAIN = 3.0  # seconds close() spends sending what is owed, at most
_MAX_WAIT = 365 * 86400.0  # intervals and timeouts: far below threading.TIMEOUT_MAX
_TRIAL_DECISION = Decision(Verdict.TRIAL)
_BUSY_REJECT = Decision(Verdict.REJECT, 0.0)
# How long a permit reserved for a sync caller on the event loop waits to be claimed.
_CLAIM_WINDOW = 10.0


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
        "_seen",
        "_callback",
        "_status",
        "_pending",
        "_pending_since",
        "_policy",
        "_replays",
        "_command",
        "_first",
        "_reserved",
        "_reserving",
        "_aliases",
        "_made",
        "_inflight",
        "_told",
        "_claimed",
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
        self._seen = -math.inf  # time.monotonic() when the mirror last took a reply
        self._callback: ChangeCallback | None = None
        self._status: StatusCallback | None = None
        self._pending = 0
        self._pending_since = 0.0
        self._policy = Policy()
        self._replays = 0  # events decided on the mirror and not yet answered by Redis
        self._command: tuple[Command, Policy] | None = None  # issued during an outage
        self._first: asyncio.Task[None] | None = None  # the first read, when made on a loop
        # A trial permit taken in Redis for a sync caller on the event loop: (permit, claim
        # by, in time.monotonic); the caller's own permit id is an alias of it.
        self._reserved: tuple[str, float] | None = None
        self._reserving = False
        self._aliases: dict[str, str] = {}
        self._made: Decision | None = None  # a transition in a reply not yet settled
        self._inflight = 0  # sends carrying batched successes, not yet answered
        self._told = _CLOSED  # the state this breaker's listeners last heard of
        self._claimed: set[str] = set()  # reserved permits a caller is holding

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
        result = self._apply(event, now, policy, rand)
        if result[1].previous is not None:
            self._told = result[0].state  # the breaker tells its listeners of this one
        return result

    async def apply_async(
        self, event: Event, now: float, policy: Policy, rand: float
    ) -> tuple[Snapshot, Decision]:
        result = await self._apply_async(event, now, policy, rand)
        if result[1].previous is not None:
            self._told = result[0].state
        return result

    def _apply(
        self, event: Event, now: float, policy: Policy, rand: float
    ) -> tuple[Snapshot, Decision]:
        if self._aliases:
            event = self._unalias(event)
        quick = self._quick(event, now, policy, rand)
        if quick is not None:
            return quick
        store = self._store
        if _running_loop() is not None:
            return self._on_loop(event, now, policy, rand)
        gate = store._gate
        entered = gate.enter(store)
        if entered is not _ENTERED:
            return self._not_sent(entered, event, now, policy, rand)
        pending, issued = 0, 0.0
        try:
            pending, script, op = self._outgoing(event)
            issued = time.monotonic()
            raw: list[Any] | None = store._eval(script, self.key, self._enc, now, policy, rand, op)
        except Exception as exc:
            store._failed(exc)  # before the turn is given up: queued callers see the outage
            raw = None
        finally:
            gate.leave()
        return self._sent(raw, issued, pending, event, now, policy, rand)

    async def _apply_async(
        self, event: Event, now: float, policy: Policy, rand: float
    ) -> tuple[Snapshot, Decision]:
        if self._aliases:
            event = self._unalias(event)
        quick = self._quick(event, now, policy, rand)
        if quick is not None:
            return quick
        store = self._store
        client = store._async_client()
        if client is None:  # built from a sync client only: keep the loop free anyway
            return await asyncio.to_thread(self._apply, event, now, policy, rand)
        gate = store._async_gate()
        entered = await gate.enter(store)
        if entered is not _ENTERED:
            return self._not_sent(entered, event, now, policy, rand)
        pending, issued = 0, 0.0
        try:
            pending, script, op = self._outgoing(event)
            issued = time.monotonic()
            raw: list[Any] | None = await store._eval_async(
                client, script, self.key, self._enc, now, policy, rand, op
            )
        except Exception as exc:
            store._failed(exc)  # before the turn is given up: queued callers see the outage
            raw = None
        finally:
            gate.leave()
        return self._sent(raw, issued, pending, event, now, policy, rand)

    # -- one script call, shared by both paths -----------------------------------------------

    def _outgoing(self, event: Event) -> tuple[int, Script, tuple[str, ...]]:
        """The script and arguments for ``event``, with this slot's batched successes."""
        pending = self._take_pending(sending=True) if type(event) is Record else 0
        script, op = event_args(event, pending)
        return pending, script, op

    def _sent(
        self,
        raw: list[Any] | None,
        issued: float,
        pending: int,
        event: Event,
        now: float,
        policy: Policy,
        rand: float,
    ) -> tuple[Snapshot, Decision]:
        """The outcome of a script call (``raw`` None: it failed, and the store knows)."""
        try:
            if raw is None:
                return self._fallback(event, now, policy, rand)
            return self._answer(raw, issued, event, now, policy, rand)
        finally:
            if pending:
                self._landed()

    # -- local decisions -------------------------------------------------------------------

    def _quick(
        self, event: Event, now: float, policy: Policy, rand: float
    ) -> tuple[Snapshot, Decision] | None:
        """Decide without Redis when that is exact enough (see the README), else None."""
        store = self._store
        if store._down or store._closed:
            return self._fallback(event, now, policy, rand)
        if type(event) is Record and event.permit is None:
            state = self.snapshot.state
            if state in _IGNORED_STATES:
                return self.snapshot, _DONE  # the core ignores outcomes here
            if state is _CLOSED and not event.failure and store._batch > 1:
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
            started = not self._pending
            if started:
                self._pending_since = time.monotonic()
            self._policy = policy
            self._pending += event.count
            full = self._pending >= self._store._batch
        if started or full:
            self._store._wake.set()  # the thread times the flush from the batch's start
        return new, decision

    def _take_pending(self, *, sending: bool = False) -> int:
        """The batched successes, to send now. ``sending``: they are in flight until
        ``_landed()``; a read meanwhile may predate them, so the mirror ignores reads."""
        with self._lock:
            pending, self._pending = self._pending, 0
            if sending and pending:
                self._inflight += 1
        return pending

    def _landed(self) -> None:
        with self._lock:
            self._inflight -= 1

    def _fallback(
        self, event: Event, now: float, policy: Policy, rand: float
    ) -> tuple[Snapshot, Decision]:
        store = self._store
        mode = store.on_store_error
        if type(event) is Command and not store._closed:
            # An operator's override outlives the outage: it is sent once Redis answers.
            self._command = (event, policy)
        if mode == "local" or type(event) is Command or store._closed:
            return self._decide(event, now, policy, rand)
        if type(event) is not Acquire:
            return self.snapshot, _DONE
        if mode == "allow":
            return self.snapshot, _ADMIT
        wait = store.probe_interval
        with self._lock:
            self.snapshot = replace(self.snapshot, open_until=now + wait)
        return self.snapshot, Decision(Verdict.REJECT, wait)

    def _decide(
        self, event: Event, now: float, policy: Policy, rand: float
    ) -> tuple[Snapshot, Decision]:
        with self._lock:
            new, decision = decide(self.snapshot, event, now, policy, rand)
            self.snapshot = new
        return new, decision

    def _not_sent(
        self, why: str, event: Event, now: float, policy: Policy, rand: float
    ) -> tuple[Snapshot, Decision]:
        """No connection was free: Redis went down meanwhile, or it answers too slowly
        for the queue. Only the former is an outage."""
        if why is _DOWN:
            return self._fallback(event, now, policy, rand)
        if type(event) is Acquire:
            return self.snapshot, _BUSY_REJECT  # a trial needs Redis' word: retry shortly
        return self._defer(event, now, policy, rand)

    def _on_loop(
        self, event: Event, now: float, policy: Policy, rand: float
    ) -> tuple[Snapshot, Decision]:
        """A sync call on the event loop's thread: decide on the mirror now and let the
        store's thread send the event, so the loop never waits for Redis. A trial permit
        cannot be decided on the mirror: it is reserved in Redis for the next such call."""
        if type(event) is Acquire:
            return self._reserve(event, now, policy, rand)
        if type(event) is Release and self._repark(event.permit, policy):
            return self.snapshot, _DONE
        return self._defer(event, now, policy, rand)

    def _repark(self, permit: str, policy: Policy) -> bool:
        """A claimed reserved permit given back unused (a sync callable on the loop that
        returned a generator: it is admitted again at its first item) stays reserved for
        the next such call, instead of going back to Redis and being asked for again."""
        with self._lock:
            if permit not in self._claimed or self._reserved is not None:
                return False
            self._claimed.discard(permit)
            window = min(policy.trial_lease_ttl, _CLAIM_WINDOW)
            self._reserved = (permit, time.monotonic() + window)
            return True

    def _defer(
        self, event: Event, now: float, policy: Policy, rand: float
    ) -> tuple[Snapshot, Decision]:
        with self._lock:
            snap = self.snapshot
            new, decision = decide(snap, event, now, policy, rand)
            self.snapshot = replace(new, version=snap.version)
            self._replays += 1
        pending = self._take_pending() if type(event) is Record else 0
        self._store._defer(_Deferred(self, event, now, policy, rand, pending))
        return new, decision

    def _queue_release(self, permit: str, now: float, policy: Policy) -> None:
        """Give ``permit`` back to Redis from the store's thread."""
        with self._lock:
            self._replays += 1
        self._store._defer(_Deferred(self, Release(permit), now, policy, 0.5, 0))

    def _reserve(
        self, event: Acquire, now: float, policy: Policy, rand: float
    ) -> tuple[Snapshot, Decision]:
        stale: str | None = None
        with self._lock:
            reserved = self._reserved
            if reserved is not None:
                permit, claim_by = reserved
                self._reserved = None
                live = any(p == permit and t > now for p, t in self.snapshot.leases)
                if live and time.monotonic() < claim_by:
                    self._aliases[event.permit] = permit
                    self._claimed.add(permit)
                    return self.snapshot, _TRIAL_DECISION
                stale = permit
            ask = not self._reserving
            if ask:
                self._reserving = True
                self._replays += 1
            if stale is not None:
                self._replays += 1
        store = self._store
        if stale is not None:
            store._defer(_Deferred(self, Release(stale), now, policy, rand, 0))
        if ask:
            permit = f"{event.permit}.r"
            store._defer(_Deferred(self, Acquire(permit), now, policy, rand, 0, reserve=True))
        return self.snapshot, _BUSY_REJECT

    def _reserved_answer(self, permit: str, decision: Decision, policy: Policy) -> None:
        with self._lock:
            self._reserving = False
            if decision.verdict is Verdict.TRIAL:
                window = min(policy.trial_lease_ttl, _CLAIM_WINDOW)
                self._reserved = (permit, time.monotonic() + window)
                self._claimed.clear()  # an older claim reports or expires on its own

    def _unclaimed(self, now: float, *, all_of_them: bool = False) -> str | None:
        """The reserved permit, if nobody claimed it in time (or at all, when closing):
        dropped here, for the caller to release."""
        with self._lock:
            reserved = self._reserved
            if reserved is None or (not all_of_them and time.monotonic() < reserved[1]):
                return None
            self._reserved = None
        return reserved[0]

    def _unalias(self, event: Event) -> Event:
        if type(event) is Record or type(event) is Release:
            permit = event.permit
            if permit is not None:
                with self._lock:
                    real = self._aliases.pop(permit, None)
                    if real is not None and type(event) is Record:
                        self._claimed.discard(real)  # reported: no longer ours to park
                if real is not None:
                    return replace(event, permit=real)
        return event

    # -- mirror updates ----------------------------------------------------------------------

    def _answer(
        self,
        raw: list[Any],
        issued: float,
        event: Event,
        now: float,
        policy: Policy,
        rand: float,
    ) -> tuple[Snapshot, Decision]:
        reply = self._store._reply_of(self, raw)
        if reply is None:
            return self._decide(event, now, policy, rand)
        return self._absorb(reply, now, issued, announce=False)

    def _newer(self, reply: Reply, issued: float) -> bool:
        """Whether ``reply`` may replace the mirror (call with the lock held). A reply to
        a command sent after the mirror last took one ran after it: it is newer whatever
        it says (also when Redis' clock went back and a recreated key has an older epoch).
        Else (epoch, version) decides: a later version of the key, or a later key."""
        return issued > self._seen or reply.order >= self._order

    def _take(self, reply: Reply, snap: Snapshot) -> None:
        """Make ``snap`` the mirror (call with the lock held), with this process's batched
        successes that Redis has not seen yet still applied on top: a read in between
        must not bring back a streak those successes ended."""
        if self._pending:
            success = Record(False, False, self._pending)
            ahead, decision = decide(snap, success, self._store.clock.now(), self._policy, 0.5)
            if decision.previous is None:  # a change of state is the flush's to make
                snap = replace(ahead, version=snap.version)
        self.snapshot = snap
        self._order = reply.order
        self._seen = time.monotonic()

    def _absorb(
        self, reply: Reply, now: float, issued: float, *, announce: bool, counted: bool = False
    ) -> tuple[Snapshot, Decision]:
        """A reply to this process's own script call. ``announce``: nobody waits for the
        decision (a batch, a deferred event), so a state change is told from here.
        ``counted``: the reply is to a deferred event (one of ``_replays``)."""
        if reply.warning:
            self._store._garbage(self, reply.warning)
        snap = self._store._local(reply, now)
        decision = reply.decision
        with self._lock:
            if self._store._down:  # in flight when the outage began: local state rules
                return snap, decision
            if self._replays > (1 if counted else 0):
                # Events decided on the mirror are still on their way: the mirror holds
                # their outcome and this reply predates it. The last of their replies
                # settles the mirror; remember a transition made meanwhile (a caller that
                # gets this decision tells it; see apply).
                if decision.previous is not None:
                    self._made = decision
                return snap, decision
            taken = self._newer(reply, issued)
            if taken:
                self._take(reply, snap)
            made, self._made = self._made, None
            told = self._told
        if announce and taken and snap.state is not told:
            # Our own script made the change: this process is the one that tells it as
            # local. Else Redis corrected a decision made on a stale mirror.
            mine = decision if decision.previous is not None else made
            reason = mine.reason if mine is not None else decision.reason
            self._tell(Snapshot(state=told), snap, reason or "corrected by Redis", mine is None)
        return snap, decision

    def _absorb_remote(
        self,
        reply: Reply,
        ours: bool,
        force: bool,
        reason: str | None,
        issued: float = -math.inf,
    ) -> None:
        """A published change (no ``issued``: ordered by epoch and version only), a
        refresh or a resync (``force``)."""
        if reply.warning:
            self._store._garbage(self, reply.warning)
        snap = self._store._local(reply, None)
        with self._lock:
            # Local decisions still on their way to Redis are newer than any read (events
            # decided on the mirror, batched successes being sent), and during an outage
            # local state rules (a read in flight when it began must not undo the outage
            # mode) until the resync forces the shared state.
            busy = self._replays or self._inflight or self._store._down
            if not force and (busy or not self._newer(reply, issued)):
                return
            self._take(reply, snap)
            told = self._told
        if ours:  # our own change, published: whoever made it was told
            return
        if snap.state is not told:
            self._tell(Snapshot(state=told), snap, reply.decision.reason or reason, True)

    def _tell(self, old: Snapshot, new: Snapshot, reason: str | None, remote: bool) -> None:
        self._told = new.state
        callback = self._callback
        if callback is None:
            return
        try:
            callback(old, new, reason, remote)
        except Exception:
            log.exception("breaker %r: change callback failed", self.name)

    def _replayed(self) -> None:
        with self._lock:
            self._replays -= 1

    def _outage_started(self, now: float, detail: str) -> None:
        self._outage_told(self._enter_outage(now), detail)

    def _enter_outage(self, now: float) -> tuple[Snapshot, Snapshot, str] | None:
        """Put the mirror in the outage mode (fail-open: DISABLED, fail-closed: OPEN).
        The store calls this before it marks itself down, so no call sees the store down
        while the mirror still admits the old way."""
        store = self._store
        new: Snapshot | None = None
        reason = ""
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
            if new is None:
                return None
            self.snapshot = new
        return old, new, reason

    def _outage_told(self, change: tuple[Snapshot, Snapshot, str] | None, detail: str) -> None:
        if change is not None:
            old, new, reason = change
            if old.state is not new.state:
                self._tell(old, new, reason, True)
        if self._status is not None:
            self._status(False, detail)

    def _outage_ended(self) -> None:
        if self._status is not None:
            self._status(True, "Redis answers again; state resynced")

    def _after_fork(self) -> None:
        """In a forked child: what the parent had on its way to Redis is the parent's."""
        self._lock = threading.Lock()
        self._replays = 0
        self._inflight = 0
        self._pending = 0
        self._reserved = None
        self._reserving = False
        self._aliases = {}
        self._claimed = set()
        self._made = None
        self._first = None

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
    - ``pubsub`` (True): listen for other processes' changes (changes are published
      either way, so other processes can listen).
    - ``max_connections`` (16): script calls of this process's callers in flight at once,
      per client; more callers queue for a turn (not an outage).
    - ``queue_timeout`` (1 s): how long a queued caller waits while Redis answers; then it
      decides on the mirror and its event is sent in the background.
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
        max_connections: int = 16,
        queue_timeout: float = 1.0,
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
            ("queue_timeout", queue_timeout),
        ):
            # Waited on with threading primitives: infinity overflows them.
            if not (value > 0 and value <= _MAX_WAIT):
                raise ValueError(
                    f"{label} must be > 0 and at most {_MAX_WAIT:.0f} s, got {value!r}"
                )
        if not 0 <= idle_ttl <= _MAX_WAIT:
            raise ValueError(f"idle_ttl must be >= 0 and finite, got {idle_ttl!r}")
        if max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {max_connections!r}")
        self.namespace = namespace
        self.on_store_error: OnStoreError = on_store_error
        self.probe_interval = float(probe_interval)
        self.flush_interval = float(flush_interval)
        self.refresh_interval = float(refresh_interval)
        self.idle_ttl = float(idle_ttl)
        self.queue_timeout = float(queue_timeout)
        self.max_connections = int(max_connections)
        self.clock: Clock = clock if clock is not None else MonotonicClock()
        self._caller_time = clock is not None
        self._batch = max(int(success_batch_size), 1)
        self._client = client
        self._aclient = async_client
        self._afactory = _async_factory
        self._aclients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, redis.asyncio.Redis
        ] = weakref.WeakKeyDictionary()
        self._gate = _Gate(self.max_connections)
        self._agates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _AsyncGate] = (
            weakref.WeakKeyDictionary()
        )
        self._deferred: deque[_Deferred] = deque()
        self._sending = threading.Lock()
        self._drained = False
        self._owns = _owns_clients
        self._where = _where or _describe(client)
        self._channel = f"{namespace}:changes"
        self._listens = bool(pubsub)
        self._token = token_hex(8)
        self._ttl_ms = str(int(self.idle_ttl * 1000))
        self._slots: dict[str, RedisSlot] = {}
        self._by_enc: dict[str, RedisSlot] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._subscribed = threading.Event()
        self._bad_replies = 0
        self._down = False
        self._detail = ""
        self._closed = False
        self._refresh_requested = False
        self._threads: list[threading.Thread] = []
        self._tasks: set[asyncio.Task[None]] = set()
        _STORES.add(self)

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
        password and db as usual), with its own clients: short timeouts and no retries.
        At most ``max_connections`` callers' script calls are in flight per client (a
        burst queues for a turn instead of opening hundreds of sockets at once); the
        store's own thread and the pub/sub listener use one connection each on top."""
        from redis.asyncio.retry import Retry as AsyncRetry
        from redis.retry import Retry

        timeout = socket_timeout if connect_timeout is None else connect_timeout
        for label, value in (("socket_timeout", socket_timeout), ("connect_timeout", timeout)):
            if not (value > 0 and value <= _MAX_WAIT):
                raise ValueError(f"{label} must be > 0 and finite, got {value!r}")
        common: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": timeout,
            "retry_on_timeout": False,
            "health_check_interval": 0,
        }
        common.update(client_options or {})
        # The pools never make a caller wait: the store's gates bound the callers in
        # flight, and waiting in a pool would end in an error that looks like an outage.
        pool = redis.ConnectionPool.from_url(url, retry=Retry(NoBackoff(), 0), **common)
        client = redis.Redis(connection_pool=pool)

        def factory() -> redis.asyncio.Redis:
            apool = redis.asyncio.ConnectionPool.from_url(
                url, retry=AsyncRetry(NoBackoff(), 0), **common
            )
            return redis.asyncio.Redis(connection_pool=apool)

        return cls(
            client,
            None,
            namespace,
            max_connections=max_connections,
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
                    self._start()
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
        issued = time.monotonic()
        try:
            raw = self._eval(_READ, slot.key, slot._enc, self.clock.now(), Policy(), 0.5, ())
        except Exception as exc:
            self._failed(exc)
        else:
            self._absorb_read(slot, raw, issued)
        return slot

    def _absorb_read(self, slot: RedisSlot, raw: list[Any], issued: float) -> None:
        reply = self._reply_of(slot, raw)
        if reply is not None:
            slot._absorb_remote(reply, ours=True, force=False, reason=None, issued=issued)

    async def _first_read(self, slot: RedisSlot) -> None:
        try:
            client = self._async_client()
            script = SCRIPTS["read"]
            now = self.clock.now()
            issued = time.monotonic()
            if client is None:
                raw = await asyncio.to_thread(
                    self._eval, script, slot.key, slot._enc, now, Policy(), 0.5, ()
                )
            else:
                raw = await self._eval_async(
                    client, script, slot.key, slot._enc, now, Policy(), 0.5, ()
                )
        except Exception as exc:
            self._failed(exc)
        else:
            self._absorb_read(slot, raw, issued)

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
        """Stop the store's threads, send what is still owed to Redis (events decided on
        the mirror, reserved trial permits nobody claimed, batched successes; for at
        most a few seconds), and close its own clients."""
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        self._wake.set()
        self._wake_gates()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=1.0)
        deadline = time.monotonic() + _CLOSE_DRAIN
        if not self._down:
            self._send_deferred(draining=True, deadline=deadline)
            self._release_unclaimed(all_of_them=True)
            self._send_deferred(draining=True, deadline=deadline)
        with self._lock:
            self._drained = True  # from now on, nothing is queued
            late = list(self._deferred)
            self._deferred.clear()
        for item in late:  # queued while we drained, past the deadline, or down
            item.slot._replayed()
        if not self._down:
            self._flush(force=True)
        if self._owns:
            self._client.close()
            self._client.connection_pool.disconnect()

    async def aclose(self) -> None:
        try:
            loop = asyncio.get_running_loop()
            client = self._aclients.pop(loop, None)
            ours = [t for t in list(self._tasks) if t.get_loop() is loop]
            if ours:
                await asyncio.gather(*ours, return_exceptions=True)
            if client is not None:
                await client.aclose()
                await client.connection_pool.disconnect()
        finally:
            await asyncio.to_thread(self.close)

    def __repr__(self) -> str:
        state = "down" if self._down else "up"
        return f"RedisStore({self._where}, namespace={self.namespace!r}, {state})"

    def _after_fork(self) -> None:
        """A forked child (gunicorn --preload, multiprocessing): its threads did not come
        along and its locks may be held by threads that did not either. Start afresh
        from the parent's mirrors, with threads of its own (redis-py reconnects)."""
        self._lock = threading.Lock()
        self._sending = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._subscribed = threading.Event()
        self._gate = _Gate(self.max_connections)
        self._agates = weakref.WeakKeyDictionary()
        self._aclients = weakref.WeakKeyDictionary()
        self._tasks = set()
        self._deferred.clear()
        self._token = token_hex(8)  # its own origin for published changes
        self._threads = []
        for slot in list(self._slots.values()):
            slot._after_fork()
        if self._slots and not self._closed:
            self._start()

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

    def _async_gate(self) -> _AsyncGate:
        loop = asyncio.get_running_loop()
        gate = self._agates.get(loop)
        if gate is None:
            with self._lock:  # _wake_gates iterates the dict from other threads
                gate = self._agates.get(loop)
                if gate is None:
                    gate = self._agates[loop] = _AsyncGate(self.max_connections)
        return gate

    def _wake_gates(self) -> None:
        """Callers queued for a connection decide locally now, instead of waiting."""
        self._gate.wake()
        with self._lock:
            gates = list(self._agates.items())
        for loop, gate in gates:
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                loop.call_soon_threadsafe(gate.wake)

    def _defer(self, item: _Deferred) -> bool:
        """Queue an event for the store's thread: sent in order, off every event loop (a
        loop shutting down cannot cancel it), and before the store closes. Plain
        outcomes of one breaker in a row are merged into one (a burst while Redis is
        slow stays one script call). False: the store has closed, nothing is sent."""
        queued = merged = False
        with self._lock:
            if not self._drained:
                queued = True
                last = self._deferred[-1] if self._deferred else None
                if last is not None and _mergeable(last, item):
                    earlier = cast(Record, last.event)
                    count = earlier.count + cast(Record, item.event).count
                    last.event = replace(earlier, count=count)
                    last.pending += item.pending
                    merged = True
                else:
                    self._deferred.append(item)
        if not queued or merged:
            item.slot._replayed()  # nothing to send, or one reply settles both
        if queued:
            self._wake.set()
        return queued

    def _send_deferred(self, draining: bool = False, deadline: float = math.inf) -> None:
        with self._sending:  # one sender at a time: the store's thread, or close()
            while True:
                with self._lock:
                    if not self._deferred or self._down or (self._closed and not draining):
                        return
                    if time.monotonic() > deadline:
                        left = len(self._deferred)
                        log.warning("chainlit_breaker: closing with %d events unsent", left)
                        return
                    item = self._deferred.popleft()
                self._send_one(item)

    def _send_one(self, item: _Deferred) -> None:
        slot = item.slot
        event = item.event
        script, op = event_args(event, item.pending)
        issued = time.monotonic()
        try:
            raw = self._eval(script, slot.key, slot._enc, item.now, item.policy, item.rand, op)
        except Exception as exc:
            # Local state rules until the resync (the event is dropped with it); an
            # operator's override is kept and sent when Redis answers.
            if type(event) is Command:
                slot._command = (event, item.policy)
            if item.reserve:
                slot._reserved_answer(_permit(event), _BUSY_REJECT, item.policy)
            slot._replayed()
            self._failed(exc)
            return
        reply = self._reply_of(slot, raw)
        if reply is None:
            if item.reserve:  # the permit may be ours in Redis: give it back
                slot._reserved_answer(_permit(event), _BUSY_REJECT, item.policy)
                slot._queue_release(_permit(event), item.now, item.policy)
        else:
            slot._absorb(reply, item.now, issued, announce=True, counted=True)
            if item.reserve:
                slot._reserved_answer(_permit(event), reply.decision, item.policy)
        slot._replayed()

    def _drop_deferred(self) -> None:
        """An outage began: what was queued for Redis is superseded by the resync."""
        with self._lock:
            items = list(self._deferred)
            self._deferred.clear()
        for slot in list(self._slots.values()):
            slot._made = None
        for item in items:
            if type(item.event) is Command:
                item.slot._command = (item.event, item.policy)
            if item.reserve:
                item.slot._reserved_answer("", _BUSY_REJECT, item.policy)
            item.slot._replayed()

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
            # The mirrors first, then down: a call in between sees the outage mode.
            now = self.clock.now()
            changes = [(slot, slot._enter_outage(now)) for slot in list(self._slots.values())]
            self._down = True
        self._wake.set()
        self._drop_deferred()
        self._wake_gates()
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
        for slot, change in changes:
            slot._outage_told(change, detail)

    def _reply_of(self, slot: RedisSlot, raw: list[Any]) -> Reply | None:
        """The parsed reply, or None (logged) when it cannot be read."""
        try:
            return parse(raw)
        except Exception as exc:
            self._bad_reply(slot, exc)
            return None

    def _bad_reply(self, slot: RedisSlot, exc: BaseException) -> None:
        # Not an outage: Redis answered. The scripts check what they load, so this means
        # a bug; say so (a few times, not once per call) and decide locally meanwhile.
        self._bad_replies += 1
        if self._bad_replies <= 3:
            log.error(
                "chainlit_breaker: breaker %r: unreadable script reply (%s); deciding locally",
                slot.name,
                exc,
            )

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
            raws = [(slot, self._read_raw(slot)) for slot in list(self._slots.values())]
        except Exception:
            return False
        self._drop_deferred()
        for slot, raw in raws:
            reply = self._reply_of(slot, raw)
            if reply is not None:
                slot._absorb_remote(reply, ours=False, force=True, reason="resynced with Redis")
        with self._lock:
            self._down = False
        log.warning("chainlit_breaker: Redis store %s answers again; state resynced", self._where)
        for slot in list(self._slots.values()):
            slot._outage_ended()
        return True

    def _read_raw(self, slot: RedisSlot) -> list[Any]:
        return self._eval(_READ, slot.key, slot._enc, self.clock.now(), Policy(), 0.5, ())

    def _read(self, slot: RedisSlot) -> Reply:
        """The shared state of ``slot`` as Redis holds it now (a read, no change)."""
        return parse(self._read_raw(slot))

    # -- background work ---------------------------------------------------------------------

    def _start(self) -> None:
        maintain = threading.Thread(
            target=self._maintain, name=f"chainlit-breaker-redis-{self._token}", daemon=True
        )
        self._threads.append(maintain)
        if self._listens:
            # Not waited for: a change published before the subscription lands is read by
            # the catch-up refresh the listener asks for once it is subscribed.
            listen = threading.Thread(
                target=self._listen, name=f"chainlit-breaker-pubsub-{self._token}", daemon=True
            )
            self._threads.append(listen)
            listen.start()
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
                self._wake.wait(self._until_due(next_refresh))
                self._wake.clear()
                if self._closed:
                    break
                self._send_deferred()
                self._release_unclaimed()
                self._send_deferred()
                self._flush(force=False)
                if self._refresh_requested or time.monotonic() >= next_refresh:
                    self._refresh_requested = False
                    self._refresh_all(force=False)
                    next_refresh = time.monotonic() + self.refresh_interval
            except Exception:  # the thread must survive anything; the next round retries
                log.exception("chainlit_breaker: Redis maintenance failed")
                time.sleep(self.probe_interval)

    def _until_due(self, next_refresh: float) -> float:
        """Seconds until the next thing is due: a batch's flush, an unclaimed reservation's
        release, the refresh (a woken thread recomputes this)."""
        now = time.monotonic()
        due = next_refresh
        for slot in list(self._slots.values()):
            if slot._pending:
                due = min(due, slot._pending_since + self.flush_interval)
            reserved = slot._reserved
            if reserved is not None:
                due = min(due, reserved[1])
        return min(max(due - now, 0.0), self.refresh_interval)

    def _release_unclaimed(self, *, all_of_them: bool = False) -> None:
        for slot in list(self._slots.values()):
            permit = slot._unclaimed(self.clock.now(), all_of_them=all_of_them)
            if permit is not None:
                slot._queue_release(permit, self.clock.now(), slot._policy)

    def _flush(self, force: bool) -> None:
        now_mono = time.monotonic()
        for slot in list(self._slots.values()):
            if self._down:
                return
            pending = slot._pending
            if not pending:
                continue
            due = now_mono - slot._pending_since >= self.flush_interval
            if not force and pending < self._batch and not due:
                continue
            pending = slot._take_pending(sending=True)
            if not pending:
                continue
            try:
                script, op = flush_args(pending)
                now = self.clock.now()
                issued = time.monotonic()
                try:
                    raw = self._eval(script, slot.key, slot._enc, now, slot._policy, 0.5, op)
                except Exception as exc:
                    self._failed(exc)
                    return
                reply = self._reply_of(slot, raw)
                if reply is not None:
                    slot._absorb(reply, now, issued, announce=True)
            finally:
                slot._landed()

    def _refresh_all(self, force: bool) -> None:
        for slot in list(self._slots.values()):
            if self._down:
                return
            issued = time.monotonic()
            try:
                raw = self._read_raw(slot)
            except Exception as exc:
                self._failed(exc)
                return
            reply = self._reply_of(slot, raw)
            if reply is None:
                continue
            slot._absorb_remote(
                reply, ours=False, force=force, reason="refreshed from Redis", issued=issued
            )

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


_STORES: weakref.WeakSet[RedisStore] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for store in list(_STORES):
        store._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _permit(event: Event) -> str:
    return cast(Acquire, event).permit


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
