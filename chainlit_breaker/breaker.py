"""PersistentCircuitBreaker: runs calls (sync, async, generators) under one breaker.

Admission and outcome rules come from the core; the store holds the state. The sync and
async paths differ only where the store is asked (``apply`` vs ``apply_async``).
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import math
import os
import random
import secrets
import time
import types
import weakref
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
)
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar, cast

from .clock import Clock, MonotonicClock
from .config import BreakerConfig
from .core.machine import (
    Acquire,
    Command,
    Decision,
    Event,
    Op,
    Record,
    Release,
    Verdict,
    window_totals,
)
from .core.machine import retry_after as _retry_after
from .core.state import BreakerState, Snapshot
from .errors import CircuitOpenError
from .events import (
    BreakerEvent,
    CallFailed,
    CallRejected,
    CallSucceeded,
    Listener,
    SlowCall,
    StateChanged,
    StoreStatusChanged,
)
from .store.base import Slot, Store
from .store.memory import MemoryStore

__all__ = ["BreakerStatus", "Fallback", "PersistentCircuitBreaker"]

log = logging.getLogger("chainlit_breaker")

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

Admission = str | None | CircuitOpenError
"""A trial permit, None (admitted without one), or the rejection to raise."""

Fallback = Callable[..., Any]
"""``fallback(error, *args, **kwargs)``: sync or async; its result replaces the call's."""

# Neither success nor failure: the caller gave up, not the service.
CANCELLATION: tuple[type[BaseException], ...] = (
    asyncio.CancelledError,
    KeyboardInterrupt,
    SystemExit,
    GeneratorExit,
)

_CLOSED = BreakerState.CLOSED
_OPEN = BreakerState.OPEN
_FORCED_OPEN = BreakerState.FORCED_OPEN
_DISABLED = BreakerState.DISABLED
_TRIAL = Verdict.TRIAL
_ADMIT = Verdict.ADMIT


class _AskStore:
    """Sentinel: the local snapshot cannot decide, ask the store (a trial call)."""


_ASK_STORE = _AskStore()
_SPECIAL_RESULTS = frozenset((types.CoroutineType, types.GeneratorType, types.AsyncGeneratorType))


def _process_tag() -> str:
    return f"{os.getpid():x}.{secrets.token_hex(4)}"


# Permit ids start with it, so they are unique across processes: a child forked after
# import (gunicorn --preload) gets its own, or it would hand out its parent's ids.
_PROCESS_TAG = _process_tag()


def _new_process_tag() -> None:
    global _PROCESS_TAG
    _PROCESS_TAG = _process_tag()


os.register_at_fork(after_in_child=_new_process_tag)


@dataclass(frozen=True, slots=True)
class BreakerStatus:
    """A point-in-time view of a breaker, for tables and health checks."""

    name: str
    state: BreakerState
    retry_after: float
    consecutive_failures: int
    calls: int
    failures: int
    slow_calls: int
    open_count: int

    @property
    def failure_rate(self) -> float | None:
        """Failures / calls in the window, or None when the window is empty or unused."""
        return self.failures / self.calls if self.calls else None


class PersistentCircuitBreaker:
    """A named circuit breaker whose state lives in a store (memory by default).

    >>> b = PersistentCircuitBreaker("payments")
    >>> b.call_sync(lambda x: x + 1, 41)
    42
    """

    __slots__ = (
        "name",
        "_config",
        "_policy",
        "_store",
        "_slot",
        "_clock",
        "_now",
        "_fallback",
        "_listeners",
        "_timed",
        "_plain",
        "_slow_after",
        "_uses_window",
        "_result_predicate",
        "_rand",
        "_permits",
        "__weakref__",
    )

    def __init__(
        self,
        name: str,
        config: BreakerConfig | None = None,
        store: Store | None = None,
        *,
        clock: Clock | None = None,
        fallback: Fallback | None = None,
        listeners: Iterable[Listener] = (),
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"breaker name must be a non-empty string, got {name!r}")
        self.name = name
        self._store: Store = store if store is not None else MemoryStore()
        self._slot: Slot = self._store.slot(name)
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        # time.monotonic itself when we can: one call less on every timed path.
        self._now = time.monotonic if type(self._clock) is MonotonicClock else self._clock.now
        self._fallback = fallback
        self._listeners: tuple[Listener, ...] = tuple(listeners)
        self._permits = itertools.count()
        self._apply_config(config if config is not None else BreakerConfig())
        _LIVE.add(self)
        self._slot.on_change(self._on_slot_change)
        on_status = getattr(self._slot, "on_status", None)
        if on_status is not None:  # shared stores report outages (see store.base)
            on_status(self._on_store_status)

    # -- configuration ---------------------------------------------------------------

    def _apply_config(self, config: BreakerConfig) -> None:
        self._config = config
        self._policy = config.policy
        self._slow_after = config.slow_call_duration
        self._uses_window = self._policy.uses_window
        self._result_predicate = config.result_predicate
        self._rand: Callable[[], float] = random.random if config.jitter else _half
        self._refresh_flags()

    def _refresh_flags(self) -> None:
        # Precomputed so the closed hot path tests one attribute, not four.
        self._timed = self._slow_after is not None or bool(self._listeners)
        self._plain = not self._timed and self._result_predicate is None and not self._uses_window

    @property
    def config(self) -> BreakerConfig:
        return self._config

    def reconfigure(self, config: BreakerConfig) -> None:
        """Use ``config`` from now on; the stored state is kept (config always wins)."""
        self._apply_config(config)

    @property
    def store(self) -> Store:
        return self._store

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def fallback(self) -> Fallback | None:
        return self._fallback

    @fallback.setter
    def fallback(self, fallback: Fallback | None) -> None:
        self._fallback = fallback

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(event)`` for every event of this breaker (idempotent)."""
        if listener not in self._listeners:
            self._listeners = (*self._listeners, listener)
        self._refresh_flags()

    def remove_listener(self, listener: Listener) -> None:
        self._listeners = tuple(x for x in self._listeners if x != listener)
        self._refresh_flags()

    @property
    def listeners(self) -> tuple[Listener, ...]:
        return self._listeners

    # -- reading state -----------------------------------------------------------------

    @property
    def snapshot(self) -> Snapshot:
        return self._slot.snapshot

    @property
    def state(self) -> BreakerState:
        """The stored state. OPEN turns HALF_OPEN lazily, on the first call after the
        reset timeout; ``retry_after`` is 0 from then on."""
        return self._slot.snapshot.state

    @property
    def retry_after(self) -> float:
        """Seconds until a trial call is admitted (inf when forced open, 0 otherwise)."""
        return _retry_after(self._slot.snapshot, self._now())

    async def ready(self) -> None:
        """Wait until the local view has read the shared state once (a shared store's
        breaker made on the event loop starts CLOSED until then; see ``Slot.ready``)."""
        ready = getattr(self._slot, "ready", None)
        if ready is not None:
            await ready()

    def status(self) -> BreakerStatus:
        snap = self._slot.snapshot
        now = self._now()
        calls, failures, slow = window_totals(snap, now, self._policy)
        return BreakerStatus(
            name=self.name,
            state=snap.state,
            retry_after=_retry_after(snap, now),
            consecutive_failures=snap.consecutive_failures,
            calls=calls,
            failures=failures,
            slow_calls=slow,
            open_count=snap.open_count,
        )

    # -- manual controls -----------------------------------------------------------------

    def command(self, op: Op) -> BreakerState:
        """Apply an operator override (sync). Returns the new state."""
        return self._applied(*self._slot.apply(Command(op), self._now(), self._policy, 0.5))

    async def command_async(self, op: Op) -> BreakerState:
        """Apply an operator override without blocking the event loop."""
        result = await self._slot.apply_async(Command(op), self._now(), self._policy, 0.5)
        return self._applied(*result)

    def force_open(self) -> BreakerState:
        """Reject every call until ``force_closed()`` or ``reset()``."""
        return self.command(Op.FORCE_OPEN)

    def force_closed(self) -> BreakerState:
        """Close now with empty counters; the backoff history is kept."""
        return self.command(Op.FORCE_CLOSED)

    def disable(self) -> BreakerState:
        """Admit every call and count nothing until ``reset()`` or ``force_closed()``."""
        return self.command(Op.DISABLE)

    def reset(self) -> BreakerState:
        """Back to a brand-new CLOSED breaker, backoff history included."""
        return self.command(Op.RESET)

    # -- events --------------------------------------------------------------------------

    def _emit(self, event: BreakerEvent) -> None:
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # a listener must never break the protected call
                log.exception("breaker %r: listener %r failed", self.name, listener)

    def _on_slot_change(
        self, old: Snapshot, new: Snapshot, reason: str | None, remote: bool = True
    ) -> None:
        if old.state is not new.state and self._listeners:
            self._emit(
                StateChanged(
                    self.name, old.state, new.state, reason, remote, _retry_after(new, self._now())
                )
            )

    def _on_store_status(self, available: bool, detail: str) -> None:
        if self._listeners:
            self._emit(StoreStatusChanged(self.name, available, detail))

    def _applied(self, snap: Snapshot, decision: Decision) -> BreakerState:
        if decision.previous is not None and self._listeners:
            self._emit(
                StateChanged(
                    self.name, decision.previous, snap.state, decision.reason, False,
                    decision.retry_after if snap.state is _OPEN else 0.0,
                )
            )  # fmt: skip
        return snap.state

    # -- admission (shared) ----------------------------------------------------------------
    # Admission returns a CircuitOpenError instead of raising it, so a rejection unwinds
    # one frame, not four: the open path is a hot path too.

    def _reject(self, state: BreakerState, retry_after: float) -> CircuitOpenError:
        if self._listeners:
            self._emit(CallRejected(self.name, state, retry_after))
        return CircuitOpenError(self.name, state, retry_after)

    def _gate(self) -> Admission | _AskStore:
        """Decide from the local snapshot: None (admitted, no lease), a CircuitOpenError,
        or _ASK_STORE when only the store can decide (a trial call)."""
        snap = self._slot.snapshot
        state = snap.state
        if state is _CLOSED or state is _DISABLED:
            return None
        if state is _OPEN:
            until = snap.open_until
            if until is not None:
                now = self._now()
                if now < until:
                    return self._reject(state, until - now)
        elif state is _FORCED_OPEN:
            return self._reject(state, math.inf)
        return _ASK_STORE

    def _acquire_event(self) -> Acquire:
        return Acquire(f"{_PROCESS_TAG}.{id(self):x}.{next(self._permits)}")

    def _admitted(self, event: Acquire, snap: Snapshot, decision: Decision) -> Admission:
        self._applied(snap, decision)
        verdict = decision.verdict
        if verdict is _TRIAL:
            return event.permit
        if verdict is _ADMIT:
            return None
        return self._reject(snap.state, decision.retry_after)

    def _admit_sync(self) -> Admission:
        gate = self._gate()
        return self._acquire_sync() if gate is _ASK_STORE else cast(Admission, gate)

    def _acquire_sync(self) -> Admission:
        event = self._acquire_event()
        snap, decision = self._slot.apply(event, self._now(), self._policy, self._rand())
        return self._admitted(event, snap, decision)

    async def _admit_async(self) -> Admission:
        gate = self._gate()
        return await self._acquire_async() if gate is _ASK_STORE else cast(Admission, gate)

    async def _acquire_async(self) -> Admission:
        event = self._acquire_event()
        snap, decision = await self._slot.apply_async(
            event, self._now(), self._policy, self._rand()
        )
        return self._admitted(event, snap, decision)

    # -- outcomes (shared) ---------------------------------------------------------------------

    def _outcome(
        self, permit: str | None, failure: bool, start: float, error: BaseException | None
    ) -> Event | None:
        """Turn a finished call into the event to store (None: nothing to store)."""
        slow = False
        if self._timed:
            # a call that started untimed (a listener or slow policy was added meanwhile)
            duration = self._now() - start if start == start else 0.0
            slow = self._slow_after is not None and duration > self._slow_after
            if self._listeners:
                if failure:
                    self._emit(CallFailed(self.name, error, duration))
                else:
                    self._emit(CallSucceeded(self.name, duration))
                if slow:
                    self._emit(SlowCall(self.name, duration))
        if permit is None and not failure and not self._uses_window:
            snap = self._slot.snapshot
            if snap.state is _CLOSED and snap.consecutive_failures == 0:
                return None  # the core would change nothing: skip the store entirely
        return Record(failure, slow, 1, permit)

    def _exception_outcome(
        self, permit: str | None, exc: BaseException, start: float
    ) -> Event | None:
        if isinstance(exc, CANCELLATION):
            return None if permit is None else Release(permit)
        try:
            failure = self._config.is_failure(exc)
        except Exception:  # a buggy predicate must not replace the caller's exception
            log.exception("breaker %r: failure_predicate raised; counting a failure", self.name)
            failure = True
        return self._outcome(permit, failure, start, exc)

    def _result_outcome(self, permit: str | None, result: object, start: float) -> Event | None:
        if permit is None and self._plain:
            snap = self._slot.snapshot
            if snap.state is _CLOSED and snap.consecutive_failures == 0:
                return None  # the hot path: a success that changes nothing
        predicate = self._result_predicate
        failure = False
        if predicate is not None:
            try:
                failure = bool(predicate(result))
            except Exception:
                log.exception("breaker %r: result_predicate raised; counting a success", self.name)
        return self._outcome(permit, failure, start, None)

    def _store_sync(self, event: Event | None) -> None:
        if event is not None:
            self._applied(*self._slot.apply(event, self._now(), self._policy, self._rand()))

    async def _store_async(self, event: Event) -> None:
        result = await self._slot.apply_async(event, self._now(), self._policy, self._rand())
        self._applied(*result)

    # -- fallback ------------------------------------------------------------------------------

    def _fallback_sync(
        self,
        err: CircuitOpenError,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        fallback: Fallback,
    ) -> Any:
        result = fallback(err, *args, **kwargs)
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()
            raise TypeError(
                f"breaker {self.name!r}: the fallback returned an awaitable on the sync path; "
                "give sync functions a sync fallback"
            ) from err
        return result

    async def _fallback_async(
        self,
        err: CircuitOpenError,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        fallback: Fallback,
    ) -> Any:
        result = fallback(err, *args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result

    # -- calls -----------------------------------------------------------------------------------

    def call_sync(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run sync ``fn(*args, **kwargs)`` under the breaker. Never needs an event loop.

        A generator function's result streams through (see ``stream_sync``). Raises
        CircuitOpenError when rejected (unless a fallback is set).
        """
        return self._dispatch_sync(fn, args, kwargs, None)

    def _dispatch_sync(
        self,
        fn: Callable[..., R],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        fallback: Fallback | None,
    ) -> R:
        if inspect.isgeneratorfunction(fn):
            return cast(R, self._stream_sync(fn, args, kwargs, fallback))
        return self._call_sync(fn, args, kwargs, fallback)

    def _call_sync(
        self,
        fn: Callable[..., R],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        fallback: Fallback | None,
    ) -> R:
        """``fallback`` overrides the breaker's own for this call (the proxy's)."""
        permit: str | None = None
        if self._slot.snapshot.state is not _CLOSED:
            admission = self._gate()
            if isinstance(admission, _AskStore):
                admission = self._acquire_sync()
            if isinstance(admission, CircuitOpenError):
                if fallback is None and self._fallback is None:
                    # Raised here (one frame to unwind), and dropped from this frame's
                    # locals so the traceback does not form a cycle the GC must collect.
                    try:
                        raise admission
                    finally:
                        del admission
                chosen = self._fallback_or_raise(admission, fallback)
                return cast(R, self._fallback_sync(admission, args, kwargs, chosen))
            permit = admission
        start = self._now() if self._timed else _UNTIMED
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._store_sync(self._exception_outcome(permit, exc, start))
            raise
        if type(result) in _SPECIAL_RESULTS:
            return cast(R, self._special_sync(result, permit, args, kwargs, fallback))
        if permit is None and self._plain:
            snap = self._slot.snapshot
            if snap.state is _CLOSED and snap.consecutive_failures == 0:
                return result  # the hot path: a success that changes nothing, no calls
        self._store_sync(self._result_outcome(permit, result, start))
        return result

    def _special_sync(
        self,
        result: Any,
        permit: str | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        fallback: Fallback | None,
    ) -> Any:
        if isinstance(result, types.GeneratorType):
            # None of the generator has run yet: give the permit back and admit at the
            # first item (as stream_sync does), so one closed unstarted holds nothing.
            self._store_sync(None if permit is None else Release(permit))
            return self._stream_sync(lambda *_a, **_k: result, args, kwargs, fallback)
        if isinstance(result, types.CoroutineType):
            result.close()
        self._store_sync(None if permit is None else Release(permit))
        raise TypeError(
            f"breaker {self.name!r}: call_sync() got an async callable; "
            "use `await breaker.call(...)`"
        )

    async def call(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Await ``fn(*args, **kwargs)`` under the breaker.

        ``fn`` may be anything returning an awaitable (coroutine function, partial, object
        with async ``__call__``). A sync ``fn`` runs inline on the loop; an async generator
        function's result streams through (see ``stream``).
        """
        return cast(R, await self._call_async(fn, args, kwargs, None))

    async def _call_async(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        fallback: Fallback | None,
    ) -> Any:
        permit: str | None = None
        if self._slot.snapshot.state is not _CLOSED:
            admission = self._gate()
            if isinstance(admission, _AskStore):
                admission = await self._acquire_async()
            if isinstance(admission, CircuitOpenError):
                if fallback is None and self._fallback is None:
                    # Raised here (one frame to unwind), and dropped from this frame's
                    # locals so the traceback does not form a cycle the GC must collect.
                    try:
                        raise admission
                    finally:
                        del admission
                chosen = self._fallback_or_raise(admission, fallback)
                return await self._fallback_async(admission, args, kwargs, chosen)
            permit = admission
        start = self._now() if self._timed else _UNTIMED
        try:
            result: Any = fn(*args, **kwargs)
            if type(result) is not types.CoroutineType:
                if type(result) is types.AsyncGeneratorType:
                    # As in _special_sync: admit at the first item, not now, so a generator
                    # closed before it starts cannot keep a trial permit.
                    if permit is not None:
                        await self._store_async(Release(permit))
                    return self._stream_async(lambda *_a, **_k: result, args, kwargs, fallback)
                if type(result) is types.GeneratorType:  # a sync generator: guard it too
                    if permit is not None:
                        await self._store_async(Release(permit))
                    return self._stream_sync(lambda *_a, **_k: result, args, kwargs, fallback)
                if inspect.isawaitable(result):
                    result = await result
            else:
                result = await result
        except BaseException as exc:
            event = self._exception_outcome(permit, exc, start)
            if event is not None:
                await self._store_async(event)
            raise
        event = self._result_outcome(permit, result, start)
        if event is not None:
            await self._store_async(event)
        return result

    # -- generators ------------------------------------------------------------------------------

    def _fallback_or_raise(self, err: CircuitOpenError, fallback: Fallback | None) -> Fallback:
        fallback = fallback if fallback is not None else self._fallback
        if fallback is None:
            raise err
        return fallback

    def stream_sync(
        self, fn: Callable[..., Iterable[T]], /, *args: Any, **kwargs: Any
    ) -> Iterator[T]:
        """Iterate ``fn(*args, **kwargs)`` under the breaker, admitted at the first ``next``.

        Failing mid-way is a failure, finishing is a success, closing early is neither.
        On rejection the fallback's result is iterated instead (a non-iterable result, or a
        string, is yielded as one item).
        """
        return self._stream_sync(fn, args, kwargs, None)

    def _stream_sync(
        self,
        fn: Callable[..., Iterable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        fallback: Fallback | None,
    ) -> Generator[T, Any, Any]:
        permit = self._admit_sync()
        if isinstance(permit, CircuitOpenError):
            chosen = self._fallback_or_raise(permit, fallback)
            yield from _as_iterable(self._fallback_sync(permit, args, kwargs, chosen))
            return
        start = self._now() if self._timed else _UNTIMED
        try:
            source = iter(fn(*args, **kwargs))
        except BaseException as exc:
            self._store_sync(self._exception_outcome(permit, exc, start))
            raise
        return (yield from self._guard_sync(source, permit, start))

    def _guard_sync(
        self, source: Iterator[T], permit: str | None, start: float
    ) -> Generator[T, Any, Any]:
        try:
            value = yield from cast(Generator[T, Any, Any], source)
        except BaseException as exc:  # GeneratorExit (closed early) releases, counts nothing
            self._store_sync(self._exception_outcome(permit, exc, start))
            raise
        self._store_sync(self._outcome(permit, False, start, None))
        return value

    def stream(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        """Async-iterate ``fn(*args, **kwargs)`` (an async generator function, or anything
        returning an async iterable) under the breaker, admitted at the first ``anext``.
        Same outcome rules as ``stream_sync``; the fallback may also be async or return an
        async iterable."""
        return self._stream_async(fn, args, kwargs, None)

    async def _stream_async(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        fallback: Fallback | None,
    ) -> AsyncIterator[Any]:
        permit = await self._admit_async()
        if isinstance(permit, CircuitOpenError):
            chosen = self._fallback_or_raise(permit, fallback)
            replacement = await self._fallback_async(permit, args, kwargs, chosen)
            if hasattr(replacement, "__aiter__"):
                async for item in replacement:
                    yield item
            else:
                for item in _as_iterable(replacement):
                    yield item
            return
        start = self._now() if self._timed else _UNTIMED
        try:
            source = fn(*args, **kwargs)
        except BaseException as exc:
            event = self._exception_outcome(permit, exc, start)
            if event is not None:
                await self._store_async(event)
            raise
        guard = self._guard_async(source, permit, start)
        try:
            async for item in guard:
                yield item
        finally:
            await guard.aclose()  # closed early: let the guard release its permit now

    async def _guard_async(
        self, source: AsyncIterator[T], permit: str | None, start: float
    ) -> AsyncGenerator[T, None]:
        try:
            async for item in source:
                yield item
        except BaseException as exc:  # GeneratorExit (closed early) releases, counts nothing
            event = self._exception_outcome(permit, exc, start)
            if event is not None:
                await self._store_async(event)
            raise
        finally:
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                await aclose()
        event = self._outcome(permit, False, start, None)
        if event is not None:
            await self._store_async(event)

    def __repr__(self) -> str:
        return f"<PersistentCircuitBreaker {self.name!r} {self.state.value}>"


_LIVE: weakref.WeakSet[PersistentCircuitBreaker] = weakref.WeakSet()
"""Every breaker of this process, for ``reset_all``: registries' and standalone ones."""


def live_breakers() -> list[PersistentCircuitBreaker]:
    """Every breaker object of this process that is still referenced."""
    return list(_LIVE)


_UNTIMED = math.nan
"""The start time of a call that began while nothing needed timing (NaN != NaN)."""


def _half() -> float:
    return 0.5


def _as_iterable(value: Any) -> Iterable[Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        return (value,)
    return value
