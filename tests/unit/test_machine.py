"""The pure core: every transition of ``decide`` and the backoff arithmetic of Policy.

No breaker, no store, no clock: snapshots in, snapshots and decisions out.
"""

from __future__ import annotations

import math

import pytest

from chainlit_breaker.core import (
    Acquire,
    BreakerState,
    Command,
    Op,
    Policy,
    Record,
    Release,
    Snapshot,
    Verdict,
    WindowKind,
    decide,
    retry_after,
    window_totals,
)

S = BreakerState


def run(snap: Snapshot, events: list[object], now: float, policy: Policy) -> Snapshot:
    for event in events:
        snap, _ = decide(snap, event, now, policy)  # type: ignore[arg-type]
    return snap


def opened(policy: Policy, now: float = 0.0) -> Snapshot:
    snap = Snapshot()
    for _ in range(policy.failure_threshold or 1):
        snap, _ = decide(snap, Record(True), now, policy)
    assert snap.state is S.OPEN
    return snap


def test_closed_admits_without_changing_anything() -> None:
    snap = Snapshot()
    nxt, d = decide(snap, Acquire("p"), 0.0, Policy())
    assert nxt is snap
    assert d.verdict is Verdict.ADMIT


def test_plain_success_in_closed_returns_the_same_snapshot() -> None:
    snap = Snapshot()
    nxt, d = decide(snap, Record(False), 0.0, Policy())
    assert nxt is snap
    assert d.verdict is Verdict.DONE


def test_consecutive_failures_trip_at_threshold() -> None:
    p = Policy(failure_threshold=3, reset_timeout=10.0)
    snap = run(Snapshot(), [Record(True), Record(True)], 5.0, p)
    assert snap.state is S.CLOSED
    assert snap.consecutive_failures == 2
    snap, d = decide(snap, Record(True), 5.0, p)
    assert snap.state is S.OPEN
    assert d.previous is S.CLOSED
    assert d.reason == "3 consecutive failures"
    assert d.retry_after == 10.0
    assert snap.opened_at == 5.0
    assert snap.open_until == 15.0
    assert snap.open_count == 1


def test_a_success_resets_the_consecutive_count() -> None:
    p = Policy(failure_threshold=3)
    snap = run(Snapshot(), [Record(True), Record(True), Record(False), Record(True)], 0.0, p)
    assert snap.state is S.CLOSED
    assert snap.consecutive_failures == 1


def test_record_count_adds_several_outcomes_at_once() -> None:
    p = Policy(failure_threshold=5)
    snap, _ = decide(Snapshot(), Record(True, count=5), 0.0, p)
    assert snap.state is S.OPEN


def test_failure_rate_count_window_respects_minimum_calls() -> None:
    p = Policy(failure_threshold=None, failure_rate_threshold=0.5, window_size=4, minimum_calls=4)
    # 3 failures out of 3: rate 1.0 but fewer than minimum_calls
    snap = run(Snapshot(), [Record(True)] * 3, 0.0, p)
    assert snap.state is S.CLOSED
    assert window_totals(snap, 0.0, p) == (3, 3, 0)
    snap, d = decide(snap, Record(False), 0.0, p)
    assert snap.state is S.OPEN
    assert d.reason == "failure rate 3/4 calls"


def test_failure_rate_below_threshold_stays_closed_and_window_slides() -> None:
    p = Policy(failure_threshold=None, failure_rate_threshold=0.5, window_size=4, minimum_calls=4)
    snap = run(Snapshot(), [Record(True), Record(False), Record(False), Record(False)], 0.0, p)
    assert snap.state is S.CLOSED
    # the window keeps the last 4: the old failure slides out
    snap = run(snap, [Record(False)], 0.0, p)
    assert snap.codes == "0000"
    assert window_totals(snap, 0.0, p) == (4, 0, 0)


def test_failure_rate_exactly_at_threshold_trips() -> None:
    p = Policy(failure_threshold=None, failure_rate_threshold=0.5, window_size=2, minimum_calls=2)
    snap = run(Snapshot(), [Record(False), Record(True)], 0.0, p)
    assert snap.state is S.OPEN


def test_failure_rate_time_window_forgets_old_seconds() -> None:
    p = Policy(
        failure_threshold=None,
        failure_rate_threshold=0.5,
        window_kind=WindowKind.TIME,
        window_size=10,
        minimum_calls=3,
    )
    snap = run(Snapshot(), [Record(True), Record(True)], 100.2, p)
    assert window_totals(snap, 100.2, p) == (2, 2, 0)
    # eleven seconds later the two failures are outside the window
    snap = run(snap, [Record(False), Record(False)], 111.0, p)
    assert window_totals(snap, 111.0, p) == (2, 0, 0)
    assert snap.state is S.CLOSED
    snap = run(snap, [Record(True), Record(True)], 111.5, p)
    assert snap.state is S.OPEN


def test_time_window_edge_second_still_counts() -> None:
    p = Policy(
        failure_threshold=None,
        failure_rate_threshold=1.0,
        window_kind=WindowKind.TIME,
        window_size=10,
        minimum_calls=2,
    )
    snap = run(Snapshot(), [Record(True)], 101.0, p)
    # at 110.9 second 101 is one of the last ten (101..110)
    assert window_totals(snap, 110.9, p) == (1, 1, 0)
    assert window_totals(snap, 111.0, p) == (0, 0, 0)
    snap, _ = decide(snap, Record(True), 110.9, p)
    assert snap.state is S.OPEN


def test_slow_call_rate_trips() -> None:
    p = Policy(failure_threshold=None, slow_call_rate_threshold=0.5, window_size=4, minimum_calls=4)
    snap = run(Snapshot(), [Record(False, slow=True), Record(False), Record(False)], 0.0, p)
    assert snap.state is S.CLOSED
    snap, d = decide(snap, Record(False, slow=True), 0.0, p)
    assert snap.state is S.OPEN
    assert d.reason == "slow-call rate 2/4 calls"


def test_slow_failures_count_for_both_rates() -> None:
    p = Policy(failure_threshold=None, slow_call_rate_threshold=1.0, window_size=2, minimum_calls=2)
    snap = run(Snapshot(), [Record(True, slow=True)], 0.0, p)
    assert snap.codes == "3"
    assert window_totals(snap, 0.0, p) == (1, 1, 1)
    snap = run(snap, [Record(True, slow=True)], 0.0, p)
    assert snap.state is S.OPEN


def test_open_rejects_with_time_left() -> None:
    p = Policy(failure_threshold=1, reset_timeout=30.0)
    snap = opened(p, now=0.0)
    nxt, d = decide(snap, Acquire("a"), 12.5, p)
    assert nxt is snap
    assert d.verdict is Verdict.REJECT
    assert d.retry_after == pytest.approx(17.5)
    assert retry_after(snap, 12.5) == pytest.approx(17.5)
    assert retry_after(snap, 40.0) == 0.0


def test_open_ignores_outcomes() -> None:
    p = Policy(failure_threshold=1)
    snap = opened(p)
    assert decide(snap, Record(True), 1.0, p)[0] is snap
    assert decide(snap, Record(False, permit="x"), 1.0, p)[0] is snap


def test_first_acquire_after_timeout_goes_half_open_and_takes_the_lease() -> None:
    p = Policy(failure_threshold=1, reset_timeout=30.0, trial_lease_ttl=5.0)
    snap = opened(p)
    snap, d = decide(snap, Acquire("t1"), 30.0, p)
    assert snap.state is S.HALF_OPEN
    assert d.verdict is Verdict.TRIAL
    assert d.previous is S.OPEN
    assert d.reason == "reset timeout elapsed"
    assert snap.leases == (("t1", 35.0),)


def test_half_open_limits_concurrent_trials() -> None:
    p = Policy(failure_threshold=1, reset_timeout=1.0, half_open_max_calls=2)
    snap = opened(p)
    verdicts = []
    for i in range(5):
        snap, d = decide(snap, Acquire(f"t{i}"), 2.0, p)
        verdicts.append(d.verdict)
    assert verdicts == [Verdict.TRIAL, Verdict.TRIAL] + [Verdict.REJECT] * 3
    _, d = decide(snap, Acquire("x"), 2.0, p)
    assert d.retry_after == 0.0


def test_success_threshold_closes_after_enough_trial_successes() -> None:
    p = Policy(failure_threshold=1, reset_timeout=1.0, success_threshold=2)
    snap = opened(p)
    snap, _ = decide(snap, Acquire("t1"), 2.0, p)
    snap, d = decide(snap, Record(False, permit="t1"), 2.0, p)
    assert snap.state is S.HALF_OPEN
    assert snap.trial_successes == 1
    assert snap.leases == ()
    snap, _ = decide(snap, Acquire("t2"), 2.0, p)
    snap, d = decide(snap, Record(False, permit="t2"), 2.0, p)
    assert snap.state is S.CLOSED
    assert d.previous is S.HALF_OPEN
    assert d.reason == "trial calls succeeded"
    assert snap.open_count == 0
    assert snap.consecutive_failures == 0


def test_non_trial_outcomes_are_ignored_in_half_open() -> None:
    p = Policy(failure_threshold=1, reset_timeout=1.0)
    snap = opened(p)
    snap, _ = decide(snap, Acquire("t1"), 2.0, p)
    assert decide(snap, Record(True), 2.0, p)[0] is snap
    assert decide(snap, Record(False), 2.0, p)[0] is snap
    assert decide(snap, Record(False, permit="stranger"), 2.0, p)[0] is snap


def test_trial_failure_reopens_with_exponential_backoff_and_cap() -> None:
    p = Policy(
        failure_threshold=1, reset_timeout=10.0, backoff_multiplier=2.0, max_reset_timeout=35.0
    )
    snap = opened(p, now=0.0)
    assert snap.open_until == 10.0
    now = 0.0
    expected = [20.0, 35.0, 35.0]
    for timeout in expected:
        now = snap.open_until  # type: ignore[assignment]
        snap, _ = decide(snap, Acquire("t"), now, p)
        snap, d = decide(snap, Record(True, permit="t"), now, p)
        assert snap.state is S.OPEN
        assert d.previous is S.HALF_OPEN
        assert d.reason == "trial call failed"
        assert d.retry_after == timeout
        assert snap.open_until == now + timeout
    assert snap.open_count == 4


def test_closing_resets_the_backoff() -> None:
    p = Policy(failure_threshold=1, reset_timeout=10.0, backoff_multiplier=3.0)
    snap = opened(p)
    snap, _ = decide(snap, Acquire("t"), 10.0, p)
    snap, _ = decide(snap, Record(True, permit="t"), 10.0, p)
    assert snap.open_until == 40.0
    snap, _ = decide(snap, Acquire("u"), 40.0, p)
    snap, _ = decide(snap, Record(False, permit="u"), 40.0, p)
    assert snap.state is S.CLOSED
    snap, d = decide(snap, Record(True), 41.0, p)
    assert d.retry_after == 10.0


@pytest.mark.parametrize(("rand", "factor"), [(0.0, 0.8), (0.5, 1.0), (0.999999, 1.2)])
def test_jitter_spreads_within_bounds(rand: float, factor: float) -> None:
    p = Policy(reset_timeout=10.0, jitter=0.2)
    assert p.open_timeout(1, rand) == pytest.approx(10.0 * factor, rel=1e-5)
    snap = Snapshot()
    snap, d = decide(snap, Record(True, count=5), 0.0, p, rand)
    assert d.retry_after == pytest.approx(10.0 * factor, rel=1e-5)


def test_jitter_applies_around_the_capped_timeout() -> None:
    p = Policy(reset_timeout=10.0, backoff_multiplier=10.0, max_reset_timeout=50.0, jitter=0.1)
    for rand in (0.0, 0.3, 0.7, 0.99):
        t = p.open_timeout(5, rand)
        assert 45.0 <= t <= 55.0


def test_lost_lease_expires_so_half_open_cannot_wedge() -> None:
    """resilience4j #935: a trial permit that is never reported must not block forever."""
    p = Policy(failure_threshold=1, reset_timeout=1.0, trial_lease_ttl=5.0)
    snap = opened(p)
    snap, d = decide(snap, Acquire("lost"), 1.0, p)
    assert d.verdict is Verdict.TRIAL
    _, d = decide(snap, Acquire("other"), 5.9, p)
    assert d.verdict is Verdict.REJECT
    snap, d = decide(snap, Acquire("other"), 6.0, p)
    assert d.verdict is Verdict.TRIAL
    assert [lease[0] for lease in snap.leases] == ["other"]
    # the late report of the lost call changes nothing
    assert decide(snap, Record(True, permit="lost"), 6.5, p)[0] is snap


def test_release_gives_the_lease_back_without_an_outcome() -> None:
    p = Policy(failure_threshold=1, reset_timeout=1.0)
    snap = opened(p)
    snap, _ = decide(snap, Acquire("t"), 1.0, p)
    snap, d = decide(snap, Release("t"), 1.0, p)
    assert d.verdict is Verdict.DONE
    assert snap.state is S.HALF_OPEN
    assert snap.leases == ()
    assert snap.trial_successes == 0
    assert decide(snap, Release("t"), 1.0, p)[0] is snap
    snap, d = decide(snap, Acquire("u"), 1.0, p)
    assert d.verdict is Verdict.TRIAL


def test_forced_open_rejects_forever() -> None:
    p = Policy()
    snap, d = decide(Snapshot(), Command(Op.FORCE_OPEN), 0.0, p)
    assert snap.state is S.FORCED_OPEN
    assert d.previous is S.CLOSED
    assert d.reason == "manual force_open"
    _, d = decide(snap, Acquire("a"), 1e9, p)
    assert d.verdict is Verdict.REJECT
    assert d.retry_after == math.inf
    assert retry_after(snap, 0.0) == math.inf
    assert decide(snap, Record(True, count=100), 0.0, p)[0] is snap


def test_disabled_admits_and_counts_nothing() -> None:
    p = Policy(failure_threshold=1)
    snap, _ = decide(Snapshot(), Command(Op.DISABLE), 0.0, p)
    assert decide(snap, Acquire("a"), 0.0, p)[1].verdict is Verdict.ADMIT
    assert decide(snap, Record(True, count=10), 0.0, p)[0] is snap


def test_force_closed_keeps_backoff_history_reset_forgets_it() -> None:
    p = Policy(failure_threshold=1, reset_timeout=10.0, backoff_multiplier=2.0)
    snap = opened(p)
    snap, d = decide(snap, Command(Op.FORCE_CLOSED), 1.0, p)
    assert snap.state is S.CLOSED
    assert d.previous is S.OPEN
    assert snap.open_count == 1
    snap, d = decide(snap, Record(True), 2.0, p)
    assert d.retry_after == 20.0
    snap, d = decide(snap, Command(Op.RESET), 3.0, p)
    assert snap == Snapshot(version=snap.version)
    assert d.previous is S.OPEN


def test_command_to_the_same_state_reports_no_previous() -> None:
    snap, d = decide(Snapshot(), Command(Op.RESET), 0.0, Policy())
    assert snap.state is S.CLOSED
    assert d.previous is None


def test_every_change_bumps_the_version() -> None:
    p = Policy(failure_threshold=2, reset_timeout=1.0)
    snap = Snapshot()
    seen = [snap.version]
    for event, now in [
        (Record(True), 0.0),
        (Record(True), 0.0),
        (Acquire("t"), 1.0),
        (Release("t"), 1.0),
        (Acquire("u"), 1.0),
        (Record(False, permit="u"), 1.0),
        (Command(Op.FORCE_OPEN), 1.0),
    ]:
        nxt, _ = decide(snap, event, now, p)
        assert nxt.version > snap.version
        snap = nxt
        seen.append(snap.version)
    assert seen == sorted(set(seen))


def test_fake_clock_only_moves_forward() -> None:
    from chainlit_breaker import Clock, FakeClock, MonotonicClock

    clock = FakeClock(5.0)
    assert clock.now() == 5.0
    assert clock.advance(2.5) == 7.5
    clock.set(10.0)
    assert clock.now() == 10.0
    with pytest.raises(ValueError, match="seconds must be >= 0"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="cannot go back"):
        clock.set(9.0)
    assert isinstance(clock, Clock)
    assert isinstance(MonotonicClock(), Clock)
    mono = MonotonicClock()
    assert mono.now() <= mono.now()


def test_busy_half_open_prunes_expired_leases_and_bumps_version() -> None:
    p = Policy(failure_threshold=1, reset_timeout=1.0, trial_lease_ttl=5.0)
    snap = opened(p)
    snap, _ = decide(snap, Acquire("a"), 1.0, p)
    # busy, nothing expired: nothing to change, the very same snapshot comes back
    same, d = decide(snap, Acquire("b"), 2.0, p)
    assert same is snap
    assert d.verdict is Verdict.REJECT
    # a record of a stranger keeps the snapshot too
    assert decide(snap, Record(False, permit="x"), 2.0, p)[0] is snap
    p2 = Policy(failure_threshold=1, reset_timeout=1.0, trial_lease_ttl=5.0, half_open_max_calls=2)
    snap, _ = decide(snap, Acquire("b"), 3.0, p2)  # a second lease, expiring at 8.0
    assert [lease[0] for lease in snap.leases] == ["a", "b"]
    # at 7.0 "a" is dead, "b" alive; with max 1 the call is still busy, but "a" is dropped
    pruned, d = decide(snap, Acquire("c"), 7.0, p)
    assert d.verdict is Verdict.REJECT
    assert [lease[0] for lease in pruned.leases] == ["b"]
    assert pruned.version == snap.version + 1


def test_a_trial_success_that_does_not_close_bumps_the_version() -> None:
    p = Policy(failure_threshold=1, reset_timeout=1.0, success_threshold=2)
    snap = opened(p)
    snap, _ = decide(snap, Acquire("t"), 1.0, p)
    nxt, _ = decide(snap, Record(False, permit="t"), 1.0, p)
    assert nxt.state is S.HALF_OPEN
    assert nxt.version == snap.version + 1
