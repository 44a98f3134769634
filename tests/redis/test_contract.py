"""The store contract: MemoryStore and RedisStore, sync and async, make the core's decisions.

Every scenario runs step by step on a FakeClock; after each step the store's decision and
snapshot (and, for Redis, what another store reads back from the server) must equal the core's.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chainlit_breaker.clock import FakeClock
from chainlit_breaker.core import (
    Acquire,
    Command,
    Decision,
    Event,
    Op,
    Policy,
    Record,
    Release,
    Snapshot,
    WindowKind,
    decide,
)
from chainlit_breaker.store.base import Slot, Store
from chainlit_breaker.store.memory import MemoryStore
from chainlit_breaker.store.redis import RedisStore
from chainlit_breaker.store.redis.scripts import parse

from .conftest import RedisServer


@dataclass(frozen=True)
class Advance:
    seconds: float


@dataclass(frozen=True)
class Step:
    event: Event
    rand: float = 0.5
    policy: Policy | None = None  # overrides the scenario's policy for this step


def fail(n: int = 1, permit: str | None = None, slow: bool = False) -> Step:
    return Step(Record(True, slow, n, permit))


def ok(n: int = 1, permit: str | None = None, slow: bool = False) -> Step:
    return Step(Record(False, slow, n, permit))


def acq(permit: str) -> Step:
    return Step(Acquire(permit))


def cmd(op: Op) -> Step:
    return Step(Command(op))


BASE = Policy(failure_threshold=3, reset_timeout=10.0, trial_lease_ttl=5.0)

SCENARIOS: dict[str, tuple[Policy, list[Any]]] = {
    "consecutive_trip_and_close": (
        BASE,
        [
            acq("p0"),
            ok(),
            fail(),
            fail(),
            ok(),
            fail(),
            fail(),
            Advance(0.25),
            fail(),
            acq("a"),
            Advance(9.5),
            acq("b"),
            Advance(0.5),
            acq("t1"),
            acq("t2"),
            ok(permit="stale"),
            ok(),
            fail(),
            ok(permit="t1"),
            ok(),
            fail(2),
            fail(),
        ],
    ),
    "backoff_cap_and_trial_failures": (
        replace(BASE, backoff_multiplier=2.0, max_reset_timeout=35.0, failure_threshold=1),
        [
            fail(),
            Advance(10),
            acq("t1"),
            fail(permit="t1"),
            Advance(19.9),
            acq("x"),
            Advance(0.1),
            acq("t2"),
            fail(permit="t2"),
            Advance(35),
            acq("t3"),
            fail(permit="t3"),
            Advance(35),
            acq("t4"),
            ok(permit="t4"),
            fail(),
            Advance(10),
            acq("t5"),
            ok(permit="t5"),
        ],
    ),
    # 70 consecutive re-opens: the exponent is clamped at 64 in both the core and the Lua,
    # so the open time stops growing instead of overflowing.
    "backoff_exponent_is_clamped": (
        # A small multiplier keeps the clock small: 1.01 ** 64 = 1.89 s, while an
        # unclamped 70th opening would wait 1.01 ** 69 = 1.99 s, so a missing clamp shows.
        replace(
            BASE,
            backoff_multiplier=1.01,
            failure_threshold=1,
            reset_timeout=1.0,
            trial_lease_ttl=5.0,
        ),
        [fail()]
        + [step for i in range(70) for step in (Advance(3.0), acq(f"t{i}"), fail(permit=f"t{i}"))],
    ),
    "jitter_uses_the_callers_rand": (
        replace(BASE, failure_threshold=2, jitter=0.5, backoff_multiplier=1.5),
        [
            Step(Record(True)),
            Step(Record(True), rand=0.1),
            Advance(4.9),
            acq("x"),
            Advance(0.2),
            acq("t"),
            Step(Record(True, permit="t"), rand=0.9999),
            Advance(17),
            acq("u"),
            Step(Record(True, permit="u"), rand=0.0),
        ],
    ),
    "half_open_limit_leases_and_release": (
        replace(BASE, failure_threshold=1, half_open_max_calls=2, success_threshold=3),
        [
            fail(),
            Advance(10),
            acq("a"),
            acq("b"),
            acq("c"),
            ok(permit="a"),
            acq("d"),
            acq("e"),
            Step(Release("d")),
            Step(Release("zz")),
            acq("f"),
            Advance(5.5),
            acq("g"),
            ok(permit="b"),
            ok(permit="g"),
            acq("h"),
            ok(permit="h"),
            ok(permit="f"),
            acq("i"),
            fail(permit="i"),
            Advance(10),
            acq("j"),
            Step(Release("j")),
            acq("k"),
            ok(permit="k"),
        ],
    ),
    "count_window_failure_and_slow_rates": (
        Policy(
            failure_threshold=None,
            failure_rate_threshold=0.5,
            slow_call_rate_threshold=0.6,
            window_kind=WindowKind.COUNT,
            window_size=6,
            minimum_calls=4,
            reset_timeout=3.0,
        ),
        [
            fail(),
            fail(),
            ok(),
            fail(),
            Advance(3),
            acq("t"),
            ok(permit="t"),
            ok(3),
            fail(),
            ok(slow=True),
            fail(slow=True),
            ok(),
            ok(20),
            ok(slow=True, n=2),
            ok(slow=True),
            ok(slow=True),
            ok(slow=True),
        ],
    ),
    # A bucket exactly window_size seconds old has left the window: counting it would
    # make 1 failure + 1 success a 50 % rate and trip.
    "time_window_boundary": (
        Policy(
            failure_threshold=None,
            failure_rate_threshold=0.5,
            window_kind=WindowKind.TIME,
            window_size=5,
            minimum_calls=2,
            reset_timeout=2.0,
        ),
        [Advance(100.0), fail(), Advance(5.0), ok(), Advance(0.999), ok(), fail()],
    ),
    "time_window_buckets_expire": (
        Policy(
            failure_threshold=None,
            failure_rate_threshold=0.5,
            window_kind=WindowKind.TIME,
            window_size=5,
            minimum_calls=4,
            reset_timeout=2.0,
        ),
        [
            Advance(100.3),
            ok(),
            fail(),
            Advance(1.0),
            ok(2),
            Advance(0.5),
            fail(),
            Advance(3.9),
            fail(),
            Advance(1.2),
            fail(),
            ok(slow=True),
            fail(3),
            Advance(2),
            acq("t"),
            ok(permit="t"),
            Advance(0.7),
            fail(2),
            ok(2),
        ],
    ),
    "commands_override_everything": (
        replace(BASE, backoff_multiplier=3.0, failure_threshold=2),
        [
            fail(),
            fail(),
            cmd(Op.FORCE_OPEN),
            acq("x"),
            fail(),
            Advance(50),
            acq("y"),
            cmd(Op.FORCE_CLOSED),
            fail(),
            fail(),
            Advance(30),
            acq("t"),
            cmd(Op.DISABLE),
            acq("z"),
            fail(3),
            ok(permit="t"),
            cmd(Op.DISABLE),
            cmd(Op.RESET),
            fail(),
            fail(),
            cmd(Op.RESET),
            cmd(Op.RESET),
            cmd(Op.FORCE_OPEN),
            cmd(Op.DISABLE),
            cmd(Op.FORCE_CLOSED),
        ],
    ),
    "boundaries_are_exact": (
        replace(BASE, failure_threshold=1, half_open_max_calls=1, trial_lease_ttl=5.0),
        [
            fail(),
            Advance(9.999),
            acq("x"),
            Advance(0.001),
            acq("a"),
            Advance(5),
            acq("b"),
            ok(permit="a"),
            fail(permit="b"),
            Advance(10),
            acq("c"),
            Step(Release("c")),
            Step(Release("c")),
            acq("d"),
        ],
    ),
    "config_in_code_wins_on_every_call": (
        BASE,
        [
            fail(),
            fail(),
            Step(Record(True), policy=replace(BASE, failure_threshold=10)),
            Step(Record(True), policy=replace(BASE, failure_threshold=4)),
            Advance(2),
            Step(Acquire("t"), policy=replace(BASE, reset_timeout=1.0)),
            Step(Record(False, permit="t"), policy=replace(BASE, success_threshold=2)),
            Step(Acquire("u"), policy=replace(BASE, half_open_max_calls=2)),
            Step(Record(False, permit="u"), policy=replace(BASE, success_threshold=2)),
        ],
    ),
}


def reference(policy: Policy, steps: list[Any]) -> Iterator[tuple[Snapshot, Decision]]:
    """The core alone: what every store must reproduce."""
    snap, now = Snapshot(), 0.0
    for step in steps:
        if isinstance(step, Advance):
            now += step.seconds
            continue
        snap, decision = decide(snap, step.event, now, step.policy or policy, step.rand)
        yield snap, decision


def comparable(snap: Snapshot) -> Snapshot:
    # Lease order is insertion order in the core and expiry order in Redis; both are sets.
    return replace(snap, leases=tuple(sorted(snap.leases)))


@pytest.fixture(params=["memory", "redis"])
def store_factory(request: pytest.FixtureRequest, namespace: str) -> Iterator[Any]:
    stores: list[Store] = []

    def make(clock: FakeClock) -> Store:
        if request.param == "memory":
            store: Store = MemoryStore()
        else:
            server: RedisServer = request.getfixturevalue("redis_server")
            # A roomy timeout: a slow answer on a busy machine must not become an outage
            # (and a local decision) in a test about the scripts' semantics.
            store = RedisStore.from_url(
                server.url,
                namespace=namespace,
                clock=clock,
                success_batch_size=1,
                socket_timeout=2.0,
            )
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()


def read_back(store: RedisStore, slot: Slot, clock: FakeClock) -> Snapshot:
    """What a different store reads from the server for the same breaker."""
    return store._read(store.slot(slot.name)).local(clock.now())  # type: ignore[attr-defined]


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
async def test_store_matches_the_core(
    store_factory: Any, scenario: str, mode: str, namespace: str
) -> None:
    policy, steps = SCENARIOS[scenario]
    expected = list(reference(policy, steps))
    clock = FakeClock()
    store = store_factory(clock)
    slot = store.slot(f"contract {scenario} {{tag}}")
    observer = None
    if isinstance(store, RedisStore):
        observer = RedisStore(store._client, namespace=namespace, clock=clock, pubsub=False)
    try:
        i = 0
        for step in steps:
            if isinstance(step, Advance):
                clock.advance(step.seconds)
                continue
            args = (step.event, clock.now(), step.policy or policy, step.rand)
            if mode == "async":
                result = await slot.apply_async(*args)
            else:  # a worker thread: sync code with no event loop, the sync client's path
                result = await asyncio.to_thread(slot.apply, *args)
            want_snap, want_decision = expected[i]
            where = f"step {i} ({step.event})"
            assert result[1] == want_decision, where
            assert comparable(result[0]) == comparable(want_snap), where
            assert comparable(slot.snapshot) == comparable(want_snap), where
            if observer is not None:
                assert comparable(read_back(observer, slot, clock)) == comparable(want_snap), where
            i += 1
        assert i == len(expected)
    finally:
        if observer is not None:
            observer.close()
        if isinstance(store, RedisStore):
            await store.aclose()


def test_scenarios_cover_every_transition() -> None:
    """The scenarios above are only worth something if they reach every rule."""
    reasons: set[str] = set()
    moves: set[tuple[str, str]] = set()
    verdicts: set[str] = set()
    for policy, steps in SCENARIOS.values():
        for snap, decision in reference(policy, steps):
            verdicts.add(decision.verdict.value)
            if decision.reason:
                reasons.add(" ".join(w for w in decision.reason.split() if not w[0].isdigit()))
            if decision.previous is not None:
                moves.add((decision.previous.value, snap.state.value))
    assert verdicts == {"admit", "trial", "reject", "done"}
    assert {
        ("closed", "open"), ("open", "half_open"), ("half_open", "open"),
        ("half_open", "closed"), ("closed", "forced_open"), ("forced_open", "closed"),
        ("half_open", "disabled"), ("disabled", "closed"), ("open", "forced_open"),
        ("forced_open", "disabled"),
    } <= moves  # fmt: skip
    assert {
        "consecutive failures", "failure rate calls", "slow-call rate calls",
        "trial call failed", "trial calls succeeded", "reset timeout elapsed",
        "manual force_open", "manual force_closed", "manual disable", "manual reset",
    } <= reasons  # fmt: skip


def test_long_and_odd_names_do_not_collide(redis_server: RedisServer, namespace: str) -> None:
    clock = FakeClock()
    store = RedisStore.from_url(redis_server.url, namespace=namespace, clock=clock)
    names = [
        "a", "a}", "{a}", "a b", "a%20b", "a:b", "ünïcødé ☃", "x" * 10_000, "x" * 10_001,
        "}{", "{", "%7B", "\x00", "q", "h" + "0" * 64,
    ]  # fmt: skip
    policy = Policy(failure_threshold=100)
    try:
        for i, name in enumerate(names):
            slot = store.slot(name)
            for _ in range(i + 1):
                slot.apply(Record(True), clock.now(), policy, 0.5)
        with redis_server.client() as client:
            keys = client.keys(f"{namespace}:*")
            assert len(keys) == len(names)
            for key in keys:
                text = key.decode()
                tag = text[text.index("{") + 1 : text.index("}")]
                assert text.endswith("}")
                assert text.count("{") == 1
                assert text.count("}") == 1
                assert len(text) < 200
                assert tag
        fresh = RedisStore.from_url(redis_server.url, namespace=namespace, clock=clock)
        for i, name in enumerate(names):
            assert fresh._read(fresh.slot(name)).snapshot.consecutive_failures == i + 1
        fresh.close()
    finally:
        store.close()


def test_a_slot_has_one_key_in_one_cluster_slot(redis_server: RedisServer, namespace: str) -> None:
    from redis.crc import key_slot

    store = RedisStore.from_url(redis_server.url, namespace=namespace)
    slot = store.slot("llm")
    policy = Policy(failure_threshold=1, half_open_max_calls=3, reset_timeout=0.01)
    slot.apply(Record(True), 0.0, policy, 0.5)
    with redis_server.client() as client:
        keys = client.keys(f"{namespace}:*")
    assert keys == [slot.key.encode()]
    assert key_slot(slot.key.encode()) == key_slot(b"{qllm}")
    store.close()


def test_reply_parsing_round_trips_floats() -> None:
    raw = ["", "1700000000.123456", "reject", "inf", "", "", "5.000001", "open", "0", "", "",
           "1700000000.1234567", "1700000030.1234567", "1", "0", "3"]  # fmt: skip
    reply = parse(raw)
    assert reply.decision.retry_after == math.inf
    assert reply.snapshot.open_until == 1700000030.1234567
    local = reply.local(10.0)
    assert local.open_until is not None
    assert abs(local.open_until - 40.0000000567) < 1e-6


async def test_async_and_sync_paths_share_one_store(
    redis_server: RedisServer, namespace: str
) -> None:
    clock = FakeClock()
    store = RedisStore.from_url(redis_server.url, namespace=namespace, clock=clock)
    slot = store.slot("shared")
    policy = Policy(failure_threshold=4)
    await slot.apply_async(Record(True), 0.0, policy, 0.5)
    await asyncio.to_thread(slot.apply, Record(True), 0.0, policy, 0.5)
    snap, _ = await slot.apply_async(Record(True), 0.0, policy, 0.5)
    assert snap.consecutive_failures == 3
    await store.aclose()


# -- random sequences: the same events, policies and clock steps into both ----------------

_policies = st.builds(
    Policy,
    failure_threshold=st.one_of(st.none(), st.integers(1, 4)),
    failure_rate_threshold=st.one_of(st.none(), st.sampled_from([0.25, 0.5, 1.0])),
    slow_call_rate_threshold=st.one_of(st.none(), st.sampled_from([0.5, 0.75])),
    window_kind=st.sampled_from(list(WindowKind)),
    window_size=st.integers(1, 6),
    minimum_calls=st.integers(1, 4),
    reset_timeout=st.sampled_from([0.5, 1.0, 2.5]),
    backoff_multiplier=st.sampled_from([1.0, 2.0, 1.5]),
    max_reset_timeout=st.one_of(st.none(), st.just(4.0)),
    jitter=st.sampled_from([0.0, 0.3]),
    half_open_max_calls=st.integers(1, 3),
    success_threshold=st.integers(1, 3),
    trial_lease_ttl=st.sampled_from([0.5, 1.0, 3.0]),
)
_permits = st.sampled_from(["p1", "p2", "p3", "p4"])
_steps = st.one_of(
    # Binary fractions, so boundaries (now == open_until, == a lease's expiry) are hit exactly.
    st.builds(Advance, st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.5, 0.3])),
    st.builds(lambda p: Step(Acquire(p)), _permits),
    st.builds(
        lambda f, s, n, p, r: Step(Record(f, s, n, p), rand=r),
        st.booleans(),
        st.booleans(),
        st.integers(1, 3),
        st.one_of(st.none(), _permits),
        st.sampled_from([0.0, 0.25, 0.9]),
    ),
    st.builds(lambda p: Step(Release(p)), _permits),
    st.builds(lambda op: Step(Command(op)), st.sampled_from(list(Op))),
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    derandomize=True,
)
@given(policy=_policies, steps=st.lists(_steps, min_size=5, max_size=30))
def test_random_sequences_match_the_core(
    redis_server: RedisServer, policy: Policy, steps: list[Any]
) -> None:
    expected = list(reference(policy, steps))
    clock = FakeClock()
    store = RedisStore.from_url(
        redis_server.url,
        namespace=f"fuzz-{next(_fuzz)}",
        socket_timeout=2.0,
        clock=clock,
        success_batch_size=1,
        pubsub=False,
        refresh_interval=600,
    )
    try:
        slot = store.slot("fuzz")
        i = 0
        for step in steps:
            if isinstance(step, Advance):
                clock.advance(step.seconds)
                continue
            snap, decision = slot.apply(step.event, clock.now(), policy, step.rand)
            want_snap, want_decision = expected[i]
            assert decision == want_decision, f"step {i}: {step}"
            assert comparable(snap) == comparable(want_snap), f"step {i}: {step}"
            i += 1
    finally:
        store.close()


_fuzz = iter(range(1_000_000))
