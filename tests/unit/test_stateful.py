"""Hypothesis drives a PersistentCircuitBreaker with random calls, outcomes, held trials,
time steps and manual commands, and checks it against a small reference model after every
step. The model is written from the spec, not from the core's code."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from chainlit_breaker import (
    BreakerConfig,
    CircuitOpenError,
    FakeClock,
    MemoryStore,
    PersistentCircuitBreaker,
    StateChanged,
)


class Boom(Exception):
    pass


# -- the reference model ------------------------------------------------------------------------


@dataclass
class Held:
    """A call that is running (its generator got its first item and is paused)."""

    start: float
    trial: bool
    token: object = field(default_factory=object)


class Model:
    """A circuit breaker as the spec describes it, in the plainest code possible."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.state = "closed"
        self.consecutive = 0
        self.calls: list[tuple[float, bool, bool]] = []  # (time, failed, slow), oldest first
        self.open_until = 0.0
        self.opens_in_a_row = 0
        self.successes = 0
        self.trials: dict[object, float] = {}  # token -> lease expiry, this episode only
        self.changes: list[tuple[str, str]] = []  # every (old, new) state change

    # what the breaker reports

    def retry_after(self, now: float) -> float:
        if self.state == "forced_open":
            return math.inf
        if self.state == "open":
            return max(self.open_until - now, 0.0)
        return 0.0

    def window(self, now: float) -> list[tuple[float, bool, bool]]:
        if not self.uses_window():
            return []
        if self.cfg["window"] == "count":
            return self.calls[-self.cfg["window_size"] :]
        oldest_second = math.floor(now) - self.cfg["window_size"] + 1
        return [c for c in self.calls if math.floor(c[0]) >= oldest_second]

    def totals(self, now: float) -> tuple[int, int, int]:
        w = self.window(now)
        return len(w), sum(c[1] for c in w), sum(c[2] for c in w)

    def uses_window(self) -> bool:
        return (
            self.cfg["failure_rate_threshold"] is not None
            or self.cfg["slow_call_rate_threshold"] is not None
        )

    def live_trials(self, now: float) -> int:
        return sum(1 for expiry in self.trials.values() if expiry > now)

    # transitions

    def _fresh(self, state: str, keep_opens: bool) -> None:
        if state != self.state:
            self.changes.append((self.state, state))
        self.state = state
        self.consecutive = 0
        self.calls = []
        self.successes = 0
        self.trials = {}
        if not keep_opens:
            self.opens_in_a_row = 0

    def _trip(self, now: float) -> None:
        self.opens_in_a_row += 1
        timeout = self.cfg["reset_timeout"] * self.cfg["backoff_multiplier"] ** (
            self.opens_in_a_row - 1
        )
        if self.cfg["max_reset_timeout"] is not None:
            timeout = min(timeout, self.cfg["max_reset_timeout"])
        self._fresh("open", keep_opens=True)
        self.open_until = now + timeout

    def admit(self, now: float, token: object) -> tuple[str, float]:
        """('run', 0) / ('trial', 0) / ('reject', retry_after)."""
        if self.state in ("closed", "disabled"):
            return "run", 0.0
        if self.state == "forced_open":
            return "reject", math.inf
        if self.state == "open":
            if now < self.open_until:
                return "reject", self.open_until - now
            self._fresh("half_open", keep_opens=True)
        self.trials = {t: e for t, e in self.trials.items() if e > now}
        if len(self.trials) >= self.cfg["half_open_max_calls"]:
            return "reject", 0.0
        self.trials[token] = now + self.cfg["trial_lease_ttl"]
        return "trial", 0.0

    def finish(self, now: float, held: Held, failed: bool) -> None:
        duration = self.cfg["slow_call_duration"]
        slow = duration is not None and now - held.start > duration
        if self.state == "closed":
            self.consecutive = self.consecutive + 1 if failed else 0
            if self.uses_window():
                self.calls.append((now, failed, slow))
            self._maybe_trip(now)
            return
        if self.state != "half_open" or not held.trial:
            return
        expiry = self.trials.get(held.token)
        if expiry is None or expiry <= now:
            return  # lost its lease: too late to count
        if failed:
            self._trip(now)
            return
        self.successes += 1
        del self.trials[held.token]
        if self.successes >= self.cfg["success_threshold"]:
            self._fresh("closed", keep_opens=False)

    def _maybe_trip(self, now: float) -> None:
        ft = self.cfg["failure_threshold"]
        if ft is not None and self.consecutive >= ft:
            self._trip(now)
            return
        if not self.uses_window():
            return
        n, failures, slow = self.totals(now)
        if n == 0 or n < self.cfg["minimum_calls"]:
            return
        frt = self.cfg["failure_rate_threshold"]
        srt = self.cfg["slow_call_rate_threshold"]
        if (frt is not None and failures / n >= frt) or (srt is not None and slow / n >= srt):
            self._trip(now)

    def release(self, held: Held) -> None:
        if self.state == "half_open":
            self.trials.pop(held.token, None)

    def command(self, op: str) -> None:
        if op == "force_open":
            self._fresh("forced_open", keep_opens=True)
        elif op == "disable":
            self._fresh("disabled", keep_opens=True)
        elif op == "force_closed":
            self._fresh("closed", keep_opens=True)
        else:
            self._fresh("closed", keep_opens=False)


# -- random configurations within sane bounds ---------------------------------------------------


@st.composite
def configs(draw: st.DrawFn) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "failure_threshold": draw(st.sampled_from([None, 1, 2, 3, 5])),
        "failure_rate_threshold": draw(st.sampled_from([None, 0.5, 0.75, 1.0])),
        "slow_call_duration": draw(st.sampled_from([None, 1.0, 2.0])),
        "window": draw(st.sampled_from(["count", "time"])),
        "window_size": draw(st.integers(1, 6)),
        "reset_timeout": draw(st.sampled_from([1.0, 2.0, 5.0])),
        "backoff_multiplier": draw(st.sampled_from([1.0, 2.0, 3.0])),
        "half_open_max_calls": draw(st.integers(1, 3)),
        "success_threshold": draw(st.integers(1, 3)),
        "trial_lease_ttl": draw(st.sampled_from([1.5, 3.0, 10.0])),
    }
    # a count window must be able to hold minimum_calls calls (the config insists)
    most = 4 if cfg["window"] == "time" else min(4, cfg["window_size"])
    cfg["minimum_calls"] = draw(st.integers(1, most))
    cfg["slow_call_rate_threshold"] = (
        draw(st.sampled_from([None, 0.5, 1.0])) if cfg["slow_call_duration"] else None
    )
    cfg["max_reset_timeout"] = draw(
        st.sampled_from([None, cfg["reset_timeout"] * 4, cfg["reset_timeout"] * 9])
    )
    if (
        cfg["failure_threshold"] is None
        and cfg["failure_rate_threshold"] is None
        and cfg["slow_call_rate_threshold"] is None
    ):
        cfg["failure_threshold"] = 2
    return cfg


# Binary fractions only, so model and breaker compute bit-identical times.
STEPS = st.sampled_from([0.25, 0.5, 1.0, 2.0, 3.0, 7.0])
OUTCOMES = st.sampled_from(
    ["success", "failure", "slow success", "slow failure", "returns 503", "slow returns 503"]
)
COMMANDS = st.sampled_from(["force_open", "force_closed", "disable", "reset"])


class BreakerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock(1000.0)
        self.held: list[tuple[Held, Any]] = []

    @initialize(cfg=configs(), listen=st.booleans(), predicate=st.booleans())
    def setup(self, cfg: dict[str, Any], listen: bool, predicate: bool) -> None:
        # A listener and a result predicate each take the breaker off its fastest path.
        self.model = Model(cfg)
        self.predicate = predicate
        self.events: list[object] = []
        self.breaker = PersistentCircuitBreaker(
            "prop",
            BreakerConfig(**cfg, result_predicate=(lambda r: r == 503) if predicate else None),
            MemoryStore(),
            clock=self.clock,
            listeners=[self.events.append] if listen else [],
        )

    def slow_for(self) -> float:
        return (self.model.cfg["slow_call_duration"] or 1.0) + 0.25

    @rule(outcome=OUTCOMES, path=st.sampled_from(["sync", "async"]))
    def call(self, outcome: str, path: str) -> None:
        now = self.clock.now()
        held = Held(now, trial=False)
        verdict, expected_retry = self.model.admit(now, held.token)
        held.trial = verdict == "trial"
        ran: list[bool] = []

        def protected() -> Any:
            ran.append(True)
            if outcome.startswith("slow"):
                self.clock.advance(self.slow_for())
            if outcome.endswith("failure"):
                raise Boom
            return 503 if outcome.endswith("503") else "result"

        async def aprotected() -> Any:
            return protected()

        rejected: CircuitOpenError | None = None
        try:
            if path == "sync":
                result = self.breaker.call_sync(protected)
            else:
                result = asyncio.run(self.breaker.call(aprotected))
        except CircuitOpenError as err:
            rejected = err
        except Boom:
            assert outcome.endswith("failure")
        else:
            assert result == (503 if outcome.endswith("503") else "result")
        if rejected is not None:
            assert verdict == "reject", f"rejected, model says {verdict}"
            assert rejected.retry_after == expected_retry
            assert not ran
            return
        assert verdict != "reject", "admitted, model says reject"
        failed = outcome.endswith("failure") or (outcome.endswith("503") and self.predicate)
        self.model.finish(self.clock.now(), held, failed)

    @rule()
    def start_held(self) -> None:
        now = self.clock.now()
        held = Held(now, trial=False)
        verdict, expected_retry = self.model.admit(now, held.token)
        held.trial = verdict == "trial"

        def source() -> Any:
            yield "first"

        gen = self.breaker.stream_sync(source)
        rejected: CircuitOpenError | None = None
        try:
            first = next(gen)
        except CircuitOpenError as err:
            rejected = err
        if rejected is not None:
            assert verdict == "reject", f"rejected, model says {verdict}"
            assert rejected.retry_after == expected_retry
            return
        assert first == "first"
        assert verdict != "reject", "admitted, model says reject"
        self.held.append((held, gen))

    @precondition(lambda self: bool(self.held))
    @rule(data=st.data(), how=st.sampled_from(["success", "failure", "cancel"]))
    def finish_held(self, data: st.DataObject, how: str) -> None:
        index = data.draw(st.integers(0, len(self.held) - 1))
        held, gen = self.held.pop(index)
        if how == "success":
            assert list(gen) == []
            self.model.finish(self.clock.now(), held, failed=False)
        elif how == "failure":
            with pytest.raises(Boom):
                gen.throw(Boom())
            self.model.finish(self.clock.now(), held, failed=True)
        else:
            gen.close()
            self.model.release(held)

    @rule(dt=STEPS)
    def advance(self, dt: float) -> None:
        self.clock.advance(dt)

    @rule(op=COMMANDS)
    def command(self, op: str) -> None:
        getattr(self.breaker, op)()
        self.model.command(op)

    @invariant()
    def agrees_with_the_model(self) -> None:
        if not hasattr(self, "model"):
            return
        now = self.clock.now()
        m, b = self.model, self.breaker
        status = b.status()
        assert status.state.value == m.state
        assert b.retry_after == m.retry_after(now)
        assert status.consecutive_failures == m.consecutive
        assert (status.calls, status.failures, status.slow_calls) == m.totals(now)
        assert status.open_count == m.opens_in_a_row
        snap = b.snapshot
        if m.state == "half_open":
            assert snap.trial_successes == m.successes
            live = sum(1 for _, expiry in snap.leases if expiry > now)
            assert live == m.live_trials(now)
        if m.state == "open":
            assert snap.open_until == m.open_until
        if b.listeners:
            changes = [
                (e.old.value, e.new.value) for e in self.events if isinstance(e, StateChanged)
            ]
            assert changes == m.changes

    def teardown(self) -> None:
        for _, gen in self.held:
            gen.close()


BreakerMachine.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestBreakerAgainstModel = BreakerMachine.TestCase
