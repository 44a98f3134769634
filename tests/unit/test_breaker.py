"""PersistentCircuitBreaker on the memory store: transitions, outcomes, events, fallback,
manual controls and cancellation, through both the sync and the async path."""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

import pytest

from chainlit_breaker import (
    BreakerConfig,
    BreakerRegistry,
    BreakerState,
    CallFailed,
    CallRejected,
    CallSucceeded,
    CircuitBreakerProxy,
    CircuitOpenError,
    FakeClock,
    MemoryStore,
    MonotonicClock,
    Op,
    PersistentCircuitBreaker,
    SlowCall,
    Snapshot,
    StateChanged,
)
from chainlit_breaker.events import BreakerEvent
from chainlit_breaker.store.memory import MemorySlot

from ._helpers import Boom, afail, aok, fail, leases, ok
from .conftest import MakeBreaker

S = BreakerState


async def run(b: PersistentCircuitBreaker, path: str, failing: bool = False, value: Any = "ok"):
    """One call through the sync or the async path."""
    if path == "sync":
        return b.call_sync(fail) if failing else b.call_sync(ok, value)
    return await (b.call(afail) if failing else b.call(aok, value))


PATHS = pytest.mark.parametrize("path", ["sync", "async"])


async def trip(b: PersistentCircuitBreaker, path: str, n: int) -> None:
    for _ in range(n):
        with pytest.raises(Boom):
            await run(b, path, failing=True)


@PATHS
async def test_consecutive_failures_open_and_reject(
    make: MakeBreaker, clock: FakeClock, path: str
) -> None:
    b = make(failure_threshold=3, reset_timeout=30.0)
    await trip(b, path, 2)
    assert b.state is S.CLOSED
    assert await run(b, path) == "ok"  # a success resets the count
    await trip(b, path, 3)
    assert b.state is S.OPEN
    clock.advance(10.0)
    with pytest.raises(CircuitOpenError) as info:
        await run(b, path)
    err = info.value
    assert (err.name, err.state) == ("b", S.OPEN)
    assert err.retry_after == pytest.approx(20.0)
    assert b.retry_after == pytest.approx(20.0)
    assert "retry in 20.0s" in str(err)


@PATHS
async def test_rejected_call_does_not_run(make: MakeBreaker, path: str) -> None:
    b = make(failure_threshold=1)
    await trip(b, path, 1)
    ran = []

    def f() -> None:
        ran.append(1)

    async def af() -> None:
        ran.append(1)

    with pytest.raises(CircuitOpenError):
        b.call_sync(f) if path == "sync" else await b.call(af)
    assert ran == []


@PATHS
async def test_failure_rate_count_window(make: MakeBreaker, path: str) -> None:
    b = make(failure_threshold=None, failure_rate_threshold=0.5, window_size=4, minimum_calls=4)
    await run(b, path)
    await trip(b, path, 1)
    await run(b, path)
    assert b.status().calls == 3
    assert b.status().failure_rate == pytest.approx(1 / 3)
    await trip(b, path, 1)
    assert b.state is S.OPEN


@PATHS
async def test_failure_rate_time_window_with_minimum_calls(
    make: MakeBreaker, clock: FakeClock, path: str
) -> None:
    b = make(
        failure_threshold=None,
        failure_rate_threshold=0.6,
        window="time",
        window_size=5,
        minimum_calls=3,
    )
    await trip(b, path, 2)
    assert b.state is S.CLOSED  # 2 calls < minimum_calls
    clock.advance(6.0)  # both failures age out
    assert b.status().calls == 0
    assert b.status().failure_rate is None
    await run(b, path)
    await trip(b, path, 1)
    assert b.state is S.CLOSED
    await trip(b, path, 1)
    assert b.state is S.OPEN


@PATHS
async def test_slow_call_rate_trips_and_slow_result_is_returned(
    make: MakeBreaker, clock: FakeClock, path: str
) -> None:
    b = make(
        failure_threshold=None,
        slow_call_duration=2.0,
        slow_call_rate_threshold=0.5,
        window_size=2,
        minimum_calls=2,
    )

    def slow(v: str) -> str:
        clock.advance(2.5)
        return v

    async def aslow(v: str) -> str:
        clock.advance(2.5)
        return v

    async def once(v: str) -> str:
        return b.call_sync(slow, v) if path == "sync" else await b.call(aslow, v)

    assert await once("first") == "first"
    assert b.status().slow_calls == 1
    assert b.state is S.CLOSED
    assert await once("second") == "second"
    assert b.state is S.OPEN


def test_a_call_exactly_at_the_threshold_is_not_slow(make: MakeBreaker, clock: FakeClock) -> None:
    """``slow_call_duration`` is the limit: slower than it is slow, as long as it is not."""
    b = make(failure_threshold=None, slow_call_duration=2.0, slow_call_rate_threshold=0.5,
             window_size=10, minimum_calls=10)  # fmt: skip

    def takes(seconds: float) -> None:
        clock.advance(seconds)

    b.call_sync(takes, 2.0)
    assert b.status().slow_calls == 0
    b.call_sync(takes, 2.001)
    assert b.status().slow_calls == 1


async def test_fast_calls_are_not_slow(make: MakeBreaker, clock: FakeClock) -> None:
    b = make(failure_threshold=None, slow_call_duration=2.0, slow_call_rate_threshold=0.5,
             window_size=2, minimum_calls=2)  # fmt: skip

    def fast() -> int:
        clock.advance(1.9)
        return 1

    for _ in range(5):
        b.call_sync(fast)
    assert b.status().slow_calls == 0
    assert b.state is S.CLOSED


@PATHS
async def test_half_open_after_timeout_then_close(
    make: MakeBreaker, clock: FakeClock, path: str
) -> None:
    b = make(failure_threshold=1, reset_timeout=5.0, success_threshold=2)
    await trip(b, path, 1)
    clock.advance(5.0)
    assert b.retry_after == 0.0
    assert b.state is S.OPEN  # lazily: the first call moves it
    assert await run(b, path, value=1) == 1
    assert b.state is S.HALF_OPEN
    assert leases(b) == 0
    assert await run(b, path, value=2) == 2
    assert b.state is S.CLOSED


@PATHS
async def test_half_open_failure_reopens_with_backoff(
    make: MakeBreaker, clock: FakeClock, path: str
) -> None:
    b = make(failure_threshold=1, reset_timeout=5.0, backoff_multiplier=2.0, max_reset_timeout=12)
    await trip(b, path, 1)
    for timeout in (5.0, 10.0, 12.0, 12.0):
        assert b.retry_after == pytest.approx(timeout)
        clock.advance(timeout)
        await trip(b, path, 1)
        assert b.state is S.OPEN
    assert b.status().open_count == 5


async def test_half_open_rejects_while_trials_run(make: MakeBreaker, clock: FakeClock) -> None:
    b = make(failure_threshold=1, reset_timeout=1.0, half_open_max_calls=2)
    await trip(b, "sync", 1)
    clock.advance(1.0)
    inner: list[BaseException] = []

    def nested(depth: int) -> str:
        assert leases(b) == 2 - depth
        if depth == 0:
            try:
                b.call_sync(ok)
            except CircuitOpenError as err:
                inner.append(err)
            return "deep"
        return b.call_sync(nested, depth - 1)

    # two trials nest inside each other; the third call finds both permits taken
    assert b.call_sync(nested, 1) == "deep"
    assert len(inner) == 1
    err = inner[0]
    assert isinstance(err, CircuitOpenError)
    assert (err.state, err.retry_after) == (S.HALF_OPEN, 0.0)
    assert "trial calls are in progress" in str(err)
    assert b.state is S.CLOSED
    assert leases(b) == 0


async def test_lost_permit_expires(make: MakeBreaker, clock: FakeClock) -> None:
    """resilience4j #935: a permit whose holder never reports cannot wedge the breaker."""
    b = make(failure_threshold=1, reset_timeout=1.0, trial_lease_ttl=10.0)
    await trip(b, "sync", 1)
    clock.advance(1.0)
    gen = b.stream_sync(iter, [1, 2])
    assert next(gen) == 1  # a trial starts and is never finished nor closed
    assert leases(b) == 1
    with pytest.raises(CircuitOpenError):
        b.call_sync(ok)
    clock.advance(10.0)
    assert b.call_sync(ok) == "ok"
    assert b.state is S.CLOSED
    gen.close()  # the late close of the lost trial changes nothing
    assert b.state is S.CLOSED


@PATHS
async def test_manual_controls(make: MakeBreaker, clock: FakeClock, path: str) -> None:
    b = make(failure_threshold=1, reset_timeout=5.0, backoff_multiplier=2.0)
    assert b.force_open() is S.FORCED_OPEN
    clock.advance(1e6)
    with pytest.raises(CircuitOpenError) as info:
        await run(b, path)
    assert info.value.retry_after == math.inf
    assert info.value.state is S.FORCED_OPEN
    assert "until an operator closes it" in str(info.value)
    assert b.retry_after == math.inf

    assert b.disable() is S.DISABLED
    for _ in range(5):
        with pytest.raises(Boom):
            await run(b, path, failing=True)
    assert b.state is S.DISABLED
    assert b.status().consecutive_failures == 0

    assert b.force_closed() is S.CLOSED
    await trip(b, path, 1)
    assert b.retry_after == pytest.approx(5.0)
    assert b.force_closed() is S.CLOSED
    await trip(b, path, 1)
    assert b.retry_after == pytest.approx(10.0)  # force_closed keeps the backoff history
    assert b.reset() is S.CLOSED
    await trip(b, path, 1)
    assert b.retry_after == pytest.approx(5.0)  # reset forgets it


async def test_command_async_and_command(make: MakeBreaker) -> None:
    b = make(listen=True)
    assert await b.command_async(Op.FORCE_OPEN) is S.FORCED_OPEN
    assert b.command(Op.RESET) is S.CLOSED


@PATHS
async def test_ignore_and_failure_exceptions(make: MakeBreaker, path: str) -> None:
    b = make(
        failure_threshold=2,
        failure_exceptions=(OSError,),
        ignore_exceptions="builtins.TimeoutError",
    )

    async def raise_(exc: BaseException) -> None:
        with pytest.raises(type(exc)):
            b.call_sync(fail, exc) if path == "sync" else await b.call(afail, exc)

    await raise_(OSError())
    assert b.status().consecutive_failures == 1
    await raise_(TimeoutError())  # an OSError, but ignored: counts as a success
    assert b.status().consecutive_failures == 0
    await raise_(OSError())
    await raise_(KeyError())  # not a failure exception
    assert b.status().consecutive_failures == 0
    await raise_(OSError())
    await raise_(ConnectionError())
    assert b.state is S.OPEN


@PATHS
async def test_failure_predicate(make: MakeBreaker, path: str) -> None:
    b = make(failure_threshold=1, failure_predicate=lambda e: "fatal" in str(e))
    exc = Boom("transient")
    with pytest.raises(Boom):
        b.call_sync(fail, exc) if path == "sync" else await b.call(afail, exc)
    assert b.state is S.CLOSED
    exc = Boom("fatal")
    with pytest.raises(Boom):
        b.call_sync(fail, exc) if path == "sync" else await b.call(afail, exc)
    assert b.state is S.OPEN


@PATHS
async def test_result_predicate_counts_503_as_failure_and_returns_it(
    make: MakeBreaker, events: list[BreakerEvent], path: str
) -> None:
    b = make(failure_threshold=2, result_predicate=lambda r: r == 503, listen=True)
    assert await run(b, path, value=503) == 503
    assert b.status().consecutive_failures == 1
    failed = [e for e in events if isinstance(e, CallFailed)]
    assert len(failed) == 1
    assert failed[0].error is None
    assert await run(b, path, value=200) == 200
    assert b.status().consecutive_failures == 0
    await run(b, path, value=503)
    await run(b, path, value=503)
    assert b.state is S.OPEN


async def test_raising_result_predicate_counts_success(
    make: MakeBreaker, caplog: pytest.LogCaptureFixture
) -> None:
    def predicate(result: object) -> bool:
        raise RuntimeError("bad predicate")

    b = make(failure_threshold=1, result_predicate=predicate)
    with caplog.at_level(logging.ERROR, logger="chainlit_breaker"):
        assert b.call_sync(ok, 7) == 7
    assert b.state is S.CLOSED
    assert "result_predicate raised" in caplog.text


# -- cancellation ---------------------------------------------------------------------------


async def half_open(b: PersistentCircuitBreaker, clock: FakeClock) -> None:
    await trip(b, "sync", b.config.failure_threshold or 1)
    clock.advance(b.config.reset_timeout)


@pytest.mark.parametrize("stage", ["closed", "half_open"])
async def test_task_cancelled_mid_call_is_neither(
    make: MakeBreaker, clock: FakeClock, events: list[BreakerEvent], stage: str
) -> None:
    b = make(failure_threshold=1, reset_timeout=1.0, listen=True)
    if stage == "half_open":
        await half_open(b, clock)
    entered = asyncio.Event()

    async def hangs() -> None:
        entered.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(b.call(hangs))
    await entered.wait()
    if stage == "half_open":
        assert leases(b) == 1
    before = b.snapshot
    del events[:]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert leases(b) == 0
    assert b.state is before.state
    assert b.snapshot.consecutive_failures == before.consecutive_failures
    assert b.snapshot.trial_successes == 0
    assert not [e for e in events if isinstance(e, (CallFailed, CallSucceeded))]
    # the permit is free again: the next trial runs and closes the breaker
    assert await b.call(aok) == "ok"
    assert b.state is S.CLOSED


CANCELS = [KeyboardInterrupt(), SystemExit(3), GeneratorExit(), asyncio.CancelledError()]


@pytest.mark.parametrize("exc", CANCELS, ids=lambda e: type(e).__name__)
@PATHS
async def test_cancellation_propagates_unchanged_and_releases(
    make: MakeBreaker, clock: FakeClock, exc: BaseException, path: str
) -> None:
    b = make(failure_threshold=1, reset_timeout=1.0, failure_exceptions=(BaseException,))
    await half_open(b, clock)
    with pytest.raises(BaseException) as info:  # noqa: PT011
        b.call_sync(fail, exc) if path == "sync" else await b.call(afail, exc)
    assert info.value is exc
    assert b.state is S.HALF_OPEN
    assert leases(b) == 0
    # in CLOSED it counts for nothing either, even though BaseException is a failure type
    b.reset()
    for _ in range(3):
        with pytest.raises(type(exc)):
            b.call_sync(fail, exc) if path == "sync" else await b.call(afail, exc)
    assert b.state is S.CLOSED
    assert b.snapshot.consecutive_failures == 0


# -- events -----------------------------------------------------------------------------------


async def test_events_reach_listeners(
    make: MakeBreaker, clock: FakeClock, events: list[BreakerEvent]
) -> None:
    b = make(failure_threshold=2, reset_timeout=5.0, slow_call_duration=1.0, listen=True)

    def slow() -> str:
        clock.advance(1.5)
        return "slow"

    b.call_sync(slow)
    await trip(b, "async", 2)
    with pytest.raises(CircuitOpenError):
        b.call_sync(ok)
    clock.advance(5.0)
    b.call_sync(ok)
    kinds = [type(e).__name__ for e in events]
    assert kinds == [
        "CallSucceeded",
        "SlowCall",
        "CallFailed",
        "CallFailed",
        "StateChanged",
        "CallRejected",
        "StateChanged",
        "CallSucceeded",
        "StateChanged",
    ]
    assert events[0] == CallSucceeded("b", 1.5)
    assert events[1] == SlowCall("b", 1.5)
    assert isinstance(events[2], CallFailed)
    assert isinstance(events[2].error, Boom)
    assert events[4] == StateChanged("b", S.CLOSED, S.OPEN, "2 consecutive failures", False, 5.0)
    assert events[5] == CallRejected("b", S.OPEN, 5.0)
    assert events[6] == StateChanged("b", S.OPEN, S.HALF_OPEN, "reset timeout elapsed")
    assert events[8] == StateChanged("b", S.HALF_OPEN, S.CLOSED, "trial calls succeeded")
    assert all(e.name == "b" for e in events)


async def test_manual_commands_emit_state_changes(
    make: MakeBreaker, events: list[BreakerEvent]
) -> None:
    b = make(listen=True)
    b.force_open()
    b.disable()
    b.reset()
    b.reset()  # no change: no event
    assert [(e.old, e.new, e.reason) for e in events if isinstance(e, StateChanged)] == [
        (S.CLOSED, S.FORCED_OPEN, "manual force_open"),
        (S.FORCED_OPEN, S.DISABLED, "manual disable"),
        (S.DISABLED, S.CLOSED, "manual reset"),
    ]


@PATHS
async def test_raising_listener_never_breaks_the_call(
    make: MakeBreaker, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    b = make(failure_threshold=1)
    seen: list[BreakerEvent] = []

    def bad(event: BreakerEvent) -> None:
        raise RuntimeError("listener bug")

    b.add_listener(bad)
    b.add_listener(bad)  # idempotent
    b.add_listener(seen.append)
    assert b.listeners == (bad, seen.append)
    with caplog.at_level(logging.ERROR, logger="chainlit_breaker"):
        assert await run(b, path) == "ok"
        await trip(b, path, 1)
        with pytest.raises(CircuitOpenError):
            await run(b, path)
    assert "listener bug" in caplog.text
    assert len(seen) == 4  # success, failure, state change, rejection
    b.remove_listener(bad)
    assert b.listeners == (seen.append,)


# -- fallback -----------------------------------------------------------------------------------


@PATHS
async def test_sync_fallback_gets_error_and_arguments(
    make: MakeBreaker, clock: FakeClock, path: str
) -> None:
    got: list[Any] = []

    def fb(err: CircuitOpenError, *args: Any, **kwargs: Any) -> str:
        got.append((err, args, kwargs))
        return "cached"

    b = make(failure_threshold=1, reset_timeout=10.0, fallback=fb)
    await trip(b, path, 1)

    def f(a: int, *, k: str) -> str:
        return "live"

    async def af(a: int, *, k: str) -> str:
        return "live"

    result = b.call_sync(f, 1, k="x") if path == "sync" else await b.call(af, 1, k="x")
    assert result == "cached"
    (err, args, kwargs) = got[0]
    assert isinstance(err, CircuitOpenError)
    assert err.retry_after == pytest.approx(10.0)
    assert (args, kwargs) == ((1,), {"k": "x"})


async def test_async_fallback_on_the_async_path(make: MakeBreaker) -> None:
    async def fb(err: CircuitOpenError, x: int) -> int:
        await asyncio.sleep(0)
        return -x

    b = make(failure_threshold=1, fallback=fb)
    await trip(b, "async", 1)
    assert await b.call(aok, 5) == -5


async def test_async_fallback_on_the_sync_path_is_a_clear_error(make: MakeBreaker) -> None:
    async def fb(err: CircuitOpenError) -> int:
        return 0

    b = make(failure_threshold=1, fallback=fb)
    await trip(b, "sync", 1)
    with pytest.raises(TypeError, match="sync fallback") as info:
        b.call_sync(ok)
    assert isinstance(info.value.__cause__, CircuitOpenError)


async def test_proxy_fallback_overrides_the_breaker_fallback(clock: FakeClock) -> None:
    reg = BreakerRegistry()
    reg.configure(store=MemoryStore(), clock=clock, defaults={"failure_threshold": 1})
    reg.get("p").fallback = lambda err, *a: "breaker fallback"
    plain = CircuitBreakerProxy("p", registry=reg)
    own = CircuitBreakerProxy("p", registry=reg, fallback=lambda err, *a: "proxy fallback")
    with pytest.raises(Boom):
        plain.call_sync(fail)

    @own
    def f() -> str:
        return "live"

    @plain
    async def g() -> str:
        return "live"

    assert f() == "proxy fallback"
    assert own.call_sync(ok) == "proxy fallback"
    assert await own.call(aok) == "proxy fallback"
    assert await g() == "breaker fallback"
    assert plain.call_sync(ok) == "breaker fallback"
    reg.get("p").fallback = None
    with pytest.raises(CircuitOpenError):
        plain.call_sync(ok)
    assert own.call_sync(ok) == "proxy fallback"


# -- misc -----------------------------------------------------------------------------------------


async def test_call_sync_refuses_an_async_callable_and_releases(
    make: MakeBreaker, clock: FakeClock
) -> None:
    b = make(failure_threshold=1, reset_timeout=1.0)
    await half_open(b, clock)
    with pytest.raises(TypeError, match=r"use `await breaker\.call"):
        b.call_sync(aok)  # type: ignore[arg-type]
    assert leases(b) == 0
    assert b.state is S.HALF_OPEN


async def test_status_and_repr(make: MakeBreaker, clock: FakeClock) -> None:
    b = make(failure_threshold=3, reset_timeout=4.0)
    b.call_sync(ok)
    await trip(b, "sync", 2)
    st = b.status()
    assert (st.name, st.state, st.consecutive_failures, st.retry_after) == ("b", S.CLOSED, 2, 0)
    assert st.failure_rate is None  # no window policy
    await trip(b, "sync", 1)
    clock.advance(1.0)
    assert b.status().retry_after == pytest.approx(3.0)
    assert repr(b) == "<PersistentCircuitBreaker 'b' open>"


def test_bad_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="non-empty string"):
        PersistentCircuitBreaker("")
    with pytest.raises(ValueError, match="non-empty string"):
        CircuitBreakerProxy("")


def test_two_breakers_on_one_store_share_state(clock: FakeClock) -> None:
    store = MemoryStore()
    a = PersistentCircuitBreaker("x", store=store, clock=clock)
    b = PersistentCircuitBreaker("x", store=store, clock=clock)
    other = PersistentCircuitBreaker("y", store=store, clock=clock)
    a.force_open()
    assert b.state is S.FORCED_OPEN
    assert other.state is S.CLOSED


def test_circuit_open_error_pickles() -> None:
    import pickle

    err = pickle.loads(pickle.dumps(CircuitOpenError("n", S.OPEN, 2.5)))
    assert (err.name, err.state, err.retry_after) == ("n", S.OPEN, 2.5)


def test_default_clock_is_monotonic() -> None:
    import time

    b = PersistentCircuitBreaker("m", BreakerConfig(failure_threshold=1), store=MemoryStore())
    assert isinstance(b.clock, MonotonicClock)
    assert b.call_sync(ok) == "ok"
    assert b.retry_after == 0.0
    with pytest.raises(Boom):
        b.call_sync(fail)
    opened_at = b.snapshot.opened_at
    assert opened_at is not None
    # on time.monotonic's scale, not the wall clock's (which jumps with NTP and DST)
    assert abs(opened_at - time.monotonic()) < 5.0
    assert 29.0 < b.retry_after <= 30.0


async def test_listener_added_during_a_call_sees_a_sane_duration(
    make: MakeBreaker, clock: FakeClock
) -> None:
    """A call that started untimed has no start time; adding a listener (or a slow-call
    policy) while it runs must not turn the clock's absolute value into its duration."""
    b = make(failure_threshold=None, failure_rate_threshold=0.5, window_size=10, minimum_calls=1)
    seen: list[BreakerEvent] = []

    def adds_listener() -> str:
        b.add_listener(seen.append)
        return "ok"

    b.call_sync(adds_listener)
    assert isinstance(seen[0], CallSucceeded)
    assert seen[0].duration < 1.0

    def adds_slow_policy() -> str:
        b.reconfigure(b.config.with_overrides({"slow_call_duration": 5.0}))
        return "ok"

    b.remove_listener(seen.append)
    b.call_sync(adds_slow_policy)
    assert b.status().slow_calls == 0


async def test_jitter_spreads_real_open_times_within_bounds(make: MakeBreaker) -> None:
    b = make(failure_threshold=1, reset_timeout=10.0, jitter=0.25)
    seen = set()
    for _ in range(200):
        b.reset()
        with pytest.raises(Boom):
            b.call_sync(fail)
        timeout = b.snapshot.open_until - b.snapshot.opened_at  # type: ignore[operator]
        assert 7.5 <= timeout <= 12.5
        seen.add(round(timeout, 6))
    assert len(seen) > 100  # really random, not one fixed value


async def test_jitter_spreads_around_the_cap(make: MakeBreaker, clock: FakeClock) -> None:
    b = make(
        failure_threshold=1, reset_timeout=10.0, backoff_multiplier=4, max_reset_timeout=20,
        jitter=0.1,
    )  # fmt: skip
    with pytest.raises(Boom):
        b.call_sync(fail)
    for _ in range(20):
        clock.advance(b.retry_after)
        with pytest.raises(Boom):
            b.call_sync(fail)
        assert 18.0 <= b.retry_after <= 22.0


@PATHS
async def test_raising_failure_predicate_keeps_the_callers_exception(
    make: MakeBreaker, clock: FakeClock, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    """A buggy failure_predicate must not replace the call's own exception, nor strand the
    trial permit; the call counts as a failure (it did raise)."""

    def predicate(exc: BaseException) -> bool:
        raise RuntimeError("bad predicate")

    b = make(failure_threshold=1, reset_timeout=1.0, failure_predicate=predicate)
    original = Boom("the real error")
    with caplog.at_level(logging.ERROR, logger="chainlit_breaker"):
        with pytest.raises(Boom) as info:
            b.call_sync(fail, original) if path == "sync" else await b.call(afail, original)
        assert info.value is original
        assert b.state is S.OPEN
        clock.advance(1.0)
        with pytest.raises(Boom):
            b.call_sync(fail, original) if path == "sync" else await b.call(afail, original)
    assert leases(b) == 0
    assert b.state is S.OPEN
    assert "failure_predicate raised" in caplog.text


# -- the hot path: what reaches the store ---------------------------------------------------


class CountingSlot(MemorySlot):
    __slots__ = ("applied",)

    def __init__(self) -> None:
        super().__init__()
        self.applied: list[str] = []

    def apply(self, event: Any, now: float, policy: Any, rand: float) -> Any:
        self.applied.append(type(event).__name__)
        return super().apply(event, now, policy, rand)


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.one = CountingSlot()

    def slot(self, name: str) -> CountingSlot:
        return self.one


@pytest.mark.parametrize("extra", ["plain", "listener", "predicate", "slow policy"])
@PATHS
async def test_hot_paths_do_not_touch_the_store(clock: FakeClock, path: str, extra: str) -> None:
    store = CountingStore()
    options: dict[str, Any] = {
        "plain": {},
        "listener": {},
        "predicate": {"result_predicate": lambda r: r == 503},
        "slow policy": {"slow_call_duration": 10.0},
    }[extra]
    b = PersistentCircuitBreaker(
        "hot",
        BreakerConfig(failure_threshold=2, reset_timeout=5.0, **options),
        store,
        clock=clock,
        listeners=[lambda e: None] if extra == "listener" else [],
    )
    applied = store.one.applied
    for _ in range(3):
        await run(b, path)
    assert applied == []  # closed successes that change nothing
    await trip(b, path, 1)
    assert applied == ["Record"]
    await run(b, path)
    assert applied == ["Record", "Record"]  # resets the consecutive count
    await run(b, path)
    assert len(applied) == 2
    await trip(b, path, 2)
    assert b.state is S.OPEN
    del applied[:]
    for _ in range(3):
        with pytest.raises(CircuitOpenError):
            await run(b, path)
    assert applied == []  # open rejections are decided locally
    b.force_open()
    del applied[:]
    with pytest.raises(CircuitOpenError):
        await run(b, path)
    assert applied == []
    b.disable()
    del applied[:]
    await run(b, path)
    assert "Acquire" not in applied  # disabled admits locally
    b.reset()
    await trip(b, path, 2)
    clock.advance(5.0)
    del applied[:]
    await run(b, path)  # a trial: the store decides admission and takes the outcome
    assert applied == ["Acquire", "Record"]
    assert b.state is S.CLOSED


async def test_window_policy_sends_every_outcome(clock: FakeClock) -> None:
    store = CountingStore()
    cfg = BreakerConfig(failure_threshold=None, failure_rate_threshold=0.5, minimum_calls=5)
    b = PersistentCircuitBreaker("w", cfg, store, clock=clock)
    b.call_sync(ok)
    await b.call(aok)
    assert store.one.applied == ["Record", "Record"]
    assert b.status().calls == 2


async def test_changes_from_elsewhere_reach_listeners_as_remote(
    make: MakeBreaker, events: list[BreakerEvent], clock: FakeClock
) -> None:
    """A shared store reports changes this process did not make through on_change."""
    b = make(listen=True, reset_timeout=5.0)
    slot = b.store.slot("b")
    callback = slot._callback  # type: ignore[attr-defined]
    assert callback is not None
    old = slot.snapshot
    new = Snapshot(state=S.OPEN, opened_at=clock.now(), open_until=clock.now() + 4.0)
    callback(old, new, "opened by another process")
    callback(new, new, "resync, nothing changed")
    assert events == [StateChanged("b", S.CLOSED, S.OPEN, "opened by another process", True, 4.0)]
