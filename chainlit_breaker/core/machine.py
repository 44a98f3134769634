"""The transition function: ``decide(snapshot, event, now, policy, rand)``.

Every store drives this (the Redis Lua scripts mirror it rule for rule), so sync and async
callers, local and shared state, all share one set of rules.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, replace

from .policy import Policy, WindowKind
from .state import BreakerState, Bucket, Lease, Snapshot

__all__ = [
    "Acquire",
    "Command",
    "Decision",
    "Event",
    "Op",
    "Record",
    "Release",
    "Verdict",
    "decide",
    "retry_after",
    "window_totals",
]

_CLOSED = BreakerState.CLOSED
_OPEN = BreakerState.OPEN
_HALF_OPEN = BreakerState.HALF_OPEN
_FORCED_OPEN = BreakerState.FORCED_OPEN
_DISABLED = BreakerState.DISABLED


class Op(enum.Enum):
    """Manual overrides."""

    FORCE_OPEN = "force_open"
    FORCE_CLOSED = "force_closed"
    DISABLE = "disable"
    RESET = "reset"


@dataclass(frozen=True, slots=True)
class Acquire:
    """A call wants to run. ``permit`` names the trial lease it would take in HALF_OPEN."""

    permit: str


@dataclass(frozen=True, slots=True)
class Record:
    """``count`` calls finished with the same outcome; ``permit`` is set for a trial call."""

    failure: bool
    slow: bool = False
    count: int = 1
    permit: str | None = None


@dataclass(frozen=True, slots=True)
class Release:
    """A trial call ended without an outcome (cancelled): give its lease back."""

    permit: str


@dataclass(frozen=True, slots=True)
class Command:
    """An operator override."""

    op: Op


Event = Acquire | Record | Release | Command


class Verdict(enum.Enum):
    ADMIT = "admit"  # run the call; it holds no lease
    TRIAL = "trial"  # run the call as a half-open trial; it holds the lease it asked for
    REJECT = "reject"  # do not run; see Decision.retry_after
    DONE = "done"  # a record/release/command was applied (or ignored as stale)


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    retry_after: float = 0.0
    reason: str | None = None  # why the state changed, when it did
    previous: BreakerState | None = None  # the state before, when this event changed it


_ADMIT = Decision(Verdict.ADMIT)
_DONE = Decision(Verdict.DONE)
_FORCED_REJECT = Decision(Verdict.REJECT, math.inf)
_BUSY_REJECT = Decision(Verdict.REJECT, 0.0)


def retry_after(snapshot: Snapshot, now: float) -> float:
    """Seconds until the breaker would admit a trial call (0 if it would now)."""
    if snapshot.state is _FORCED_OPEN:
        return math.inf
    if snapshot.state is _OPEN and snapshot.open_until is not None:
        return max(snapshot.open_until - now, 0.0)
    return 0.0


def window_totals(snapshot: Snapshot, now: float, policy: Policy) -> tuple[int, int, int]:
    """(calls, failures, slow calls) currently in the window."""
    if policy.window_kind is WindowKind.COUNT:
        codes = snapshot.codes
        failures = codes.count("1") + codes.count("3")
        slow = codes.count("2") + codes.count("3")
        return len(codes), failures, slow
    horizon = math.floor(now) - policy.window_size
    calls = failures = slow = 0
    for second, c, f, s in snapshot.buckets:
        if second > horizon:
            calls += c
            failures += f
            slow += s
    return calls, failures, slow


def decide(
    snapshot: Snapshot, event: Event, now: float, policy: Policy, rand: float = 0.5
) -> tuple[Snapshot, Decision]:
    """Apply ``event`` at time ``now``. Returns the next snapshot (the same object when
    nothing changed) and the decision. ``rand`` in [0, 1) feeds the backoff jitter."""
    if isinstance(event, Acquire):
        return _acquire(snapshot, event.permit, now, policy)
    if isinstance(event, Record):
        return _record(snapshot, event, now, policy, rand)
    if isinstance(event, Release):
        return _release(snapshot, event.permit, now)
    return _command(snapshot, event.op, now)


def _live(leases: tuple[Lease, ...], now: float) -> tuple[Lease, ...]:
    return tuple(lease for lease in leases if lease[1] > now)


def _acquire(s: Snapshot, permit: str, now: float, p: Policy) -> tuple[Snapshot, Decision]:
    state = s.state
    if state is _CLOSED or state is _DISABLED:
        return s, _ADMIT
    if state is _FORCED_OPEN:
        return s, _FORCED_REJECT
    reason = None
    previous = None
    if state is _OPEN:
        if s.open_until is not None and now < s.open_until:
            return s, Decision(Verdict.REJECT, s.open_until - now)
        s = replace(s, state=_HALF_OPEN, trial_successes=0, leases=(), version=s.version + 1)
        reason = "reset timeout elapsed"
        previous = _OPEN
    leases = _live(s.leases, now)
    if len(leases) >= p.half_open_max_calls:
        if leases != s.leases:
            s = replace(s, leases=leases, version=s.version + 1)
        if previous is None:
            return s, _BUSY_REJECT
        return s, Decision(Verdict.REJECT, 0.0, reason, previous)
    s = replace(s, leases=(*leases, (permit, now + p.trial_lease_ttl)), version=s.version + 1)
    return s, Decision(Verdict.TRIAL, 0.0, reason, previous)


def _push(s: Snapshot, e: Record, now: float, p: Policy) -> Snapshot:
    code = chr(48 + int(e.failure) + 2 * int(e.slow))
    if p.window_kind is WindowKind.COUNT:
        n = min(e.count, p.window_size)
        return replace(s, codes=(s.codes + code * n)[-p.window_size :])
    second = math.floor(now)
    horizon = second - p.window_size
    kept: list[Bucket] = [b for b in s.buckets if b[0] > horizon and b[0] != second]
    current = next((b for b in s.buckets if b[0] == second), (second, 0, 0, 0))
    kept.append(
        (
            second,
            current[1] + e.count,
            current[2] + (e.count if e.failure else 0),
            current[3] + (e.count if e.slow else 0),
        )
    )
    return replace(s, buckets=tuple(kept))


def _trip_reason(s: Snapshot, now: float, p: Policy) -> str | None:
    if p.failure_threshold is not None and s.consecutive_failures >= p.failure_threshold:
        return f"{s.consecutive_failures} consecutive failures"
    if not p.uses_window:
        return None
    calls, failures, slow = window_totals(s, now, p)
    if calls < p.minimum_calls or calls == 0:
        return None
    if p.failure_rate_threshold is not None and failures / calls >= p.failure_rate_threshold:
        return f"failure rate {failures}/{calls} calls"
    if p.slow_call_rate_threshold is not None and slow / calls >= p.slow_call_rate_threshold:
        return f"slow-call rate {slow}/{calls} calls"
    return None


def _open(
    s: Snapshot, now: float, p: Policy, rand: float, reason: str
) -> tuple[Snapshot, Decision]:
    open_count = s.open_count + 1
    timeout = p.open_timeout(open_count, rand)
    nxt = Snapshot(
        state=_OPEN,
        opened_at=now,
        open_until=now + timeout,
        open_count=open_count,
        version=s.version + 1,
    )
    return nxt, Decision(Verdict.DONE, timeout, reason, s.state)


def _record(
    s: Snapshot, e: Record, now: float, p: Policy, rand: float
) -> tuple[Snapshot, Decision]:
    state = s.state
    if state is _CLOSED:
        if not e.failure and s.consecutive_failures == 0 and not p.uses_window:
            return s, _DONE  # the common case changes nothing (slow counts only in a window)
        consecutive = s.consecutive_failures + e.count if e.failure else 0
        s = replace(s, consecutive_failures=consecutive, version=s.version + 1)
        if p.uses_window:
            s = _push(s, e, now, p)
        reason = _trip_reason(s, now, p)
        if reason is not None:
            return _open(s, now, p, rand, reason)
        return s, _DONE
    if state is not _HALF_OPEN or e.permit is None:
        return s, _DONE  # OPEN / overrides ignore outcomes; so does a stale non-trial call
    leases = _live(s.leases, now)
    if not any(lease[0] == e.permit for lease in leases):
        return s, _DONE  # the lease expired or belongs to an older episode
    if e.failure:
        return _open(s, now, p, rand, "trial call failed")
    successes = s.trial_successes + 1
    if successes >= p.success_threshold:
        closed = Snapshot(version=s.version + 1)
        return closed, Decision(Verdict.DONE, 0.0, "trial calls succeeded", _HALF_OPEN)
    remaining = tuple(lease for lease in leases if lease[0] != e.permit)
    return replace(s, leases=remaining, trial_successes=successes, version=s.version + 1), _DONE


def _release(s: Snapshot, permit: str, now: float) -> tuple[Snapshot, Decision]:
    if s.state is not _HALF_OPEN or not any(lease[0] == permit for lease in s.leases):
        return s, _DONE
    remaining = tuple(lease for lease in s.leases if lease[0] != permit)
    return replace(s, leases=remaining, version=s.version + 1), _DONE


def _command(s: Snapshot, op: Op, now: float) -> tuple[Snapshot, Decision]:
    version = s.version + 1
    if op is Op.FORCE_OPEN:
        nxt = Snapshot(state=_FORCED_OPEN, opened_at=now, open_count=s.open_count, version=version)
    elif op is Op.DISABLE:
        nxt = Snapshot(state=_DISABLED, open_count=s.open_count, version=version)
    elif op is Op.FORCE_CLOSED:
        nxt = Snapshot(state=_CLOSED, open_count=s.open_count, version=version)
    else:
        nxt = Snapshot(version=version)
    previous = s.state if s.state is not nxt.state else None
    return nxt, Decision(Verdict.DONE, 0.0, f"manual {op.value}", previous)
