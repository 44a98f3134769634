"""The registry behind CircuitBreakerProxy: lazy resolution, configuration precedence,
re-resolution after reconfiguring, hot-reload registration and reset_all."""

from __future__ import annotations

from typing import Any

import pytest

import chainlit_breaker
from chainlit_breaker import (
    BreakerConfig,
    BreakerRegistry,
    BreakerState,
    CircuitBreakerProxy,
    CircuitOpenError,
    ConfigError,
    FakeClock,
    MemoryStore,
    PersistentCircuitBreaker,
    StateChanged,
    breaker,
)
from chainlit_breaker.events import BreakerEvent
from chainlit_breaker.registry import default_store

from ._helpers import Boom, fail

S = BreakerState


def test_decorating_before_configuring_resolves_lazily(clock: FakeClock) -> None:
    @CircuitBreakerProxy("late")
    def f() -> str:
        return "ok"

    assert "late" not in chainlit_breaker.registry  # nothing built at decoration time
    store = MemoryStore()
    chainlit_breaker.configure(
        store=store, clock=clock, breakers={"late": {"failure_threshold": 1}}
    )
    assert f() == "ok"
    b = chainlit_breaker.get_breaker("late")
    assert b.store is store
    assert b.clock is clock
    assert b.config.failure_threshold == 1
    assert store.names() == ["late"]


def test_precedence_defaults_code_configured() -> None:
    reg = BreakerRegistry()
    reg.configure(defaults={"failure_threshold": 9, "reset_timeout": 1.0, "jitter": 0.1})
    breaker("x", registry=reg, failure_threshold=4, reset_timeout=2.0)
    cfg = reg.config_for("x")
    assert (cfg.failure_threshold, cfg.reset_timeout, cfg.jitter) == (4, 2.0, 0.1)
    reg.configure(breakers={"x": {"reset_timeout": 3.0}})
    cfg = reg.config_for("x")
    assert (cfg.failure_threshold, cfg.reset_timeout, cfg.jitter) == (4, 3.0, 0.1)
    reg.configure(breakers={"x": BreakerConfig(failure_threshold=7)})
    assert reg.config_for("x").failure_threshold == 7
    assert reg.config_for("x").reset_timeout == 2.0  # back to the code value
    assert reg.config_for("other").failure_threshold == 9


def test_reconfiguring_keeps_state_and_applies_new_config(clock: FakeClock) -> None:
    reg = BreakerRegistry()
    reg.configure(store=MemoryStore(), clock=clock, defaults={"failure_threshold": 3})
    proxy = CircuitBreakerProxy("k", registry=reg)
    b = proxy.breaker
    with pytest.raises(Boom):
        proxy.call_sync(fail)
    reg.configure(defaults={"failure_threshold": 2})
    assert proxy.breaker is b  # same breaker, new config, state kept
    assert b.config.failure_threshold == 2
    with pytest.raises(Boom):
        proxy.call_sync(fail)
    assert b.state is S.OPEN


def test_new_store_means_new_breakers_and_proxies_follow(clock: FakeClock) -> None:
    reg = BreakerRegistry()
    first, second = MemoryStore(), MemoryStore()
    reg.configure(store=first, clock=clock, defaults={"failure_threshold": 1})
    proxy = CircuitBreakerProxy("s", registry=reg)

    @proxy
    def f() -> str:
        return "ok"

    old = proxy.breaker
    old.force_open()
    with pytest.raises(CircuitOpenError):
        f()
    generation = reg.generation
    reg.configure(store=second)
    assert reg.generation != generation
    assert f() == "ok"  # the decorated function re-resolved onto the new store
    assert proxy.breaker is not old
    assert proxy.breaker.store is second
    assert first.slot("s").snapshot.state is S.FORCED_OPEN
    reg.configure(store=second)  # the same store again: nothing rebuilt
    assert proxy.breaker.store is second
    new_clock = FakeClock()
    reg.configure(clock=new_clock)
    assert proxy.breaker.clock is new_clock


def test_hot_reload_double_registration_replaces(clock: FakeClock) -> None:
    chainlit_breaker.configure(store=MemoryStore(), clock=clock)

    def module_body(threshold: int) -> CircuitBreakerProxy:  # a module re-run by hot reload
        @breaker("reloaded", failure_threshold=threshold)
        def f() -> None:
            raise Boom

        return f  # type: ignore[return-value]

    first = module_body(5)
    with pytest.raises(Boom):
        first()  # type: ignore[operator]
    b = chainlit_breaker.get_breaker("reloaded")
    second = module_body(2)
    assert chainlit_breaker.get_breaker("reloaded") is b  # replaced config, same breaker
    assert b.config.failure_threshold == 2
    with pytest.raises(Boom):
        second()  # type: ignore[operator]
    assert b.state is S.OPEN  # the state survived the reload
    assert chainlit_breaker.registry.names() == ["reloaded"]


def test_invalid_code_config_fails_at_decoration_time() -> None:
    with pytest.raises(ConfigError, match=r"breaker 'bad' \(code\): reset_timeout"):
        breaker("bad", reset_timeout=-1)
    with pytest.raises(ConfigError, match="failure_treshold"):
        breaker("bad", failure_treshold=1)


def test_invalid_configured_breakers_are_rejected_whole() -> None:
    reg = BreakerRegistry()
    reg.configure(breakers={"a": {"failure_threshold": 2}})
    with pytest.raises(ConfigError, match="breaker 'b': half_open_max_calls"):
        reg.configure(breakers={"a": {"failure_threshold": 3}, "b": {"half_open_max_calls": 0}})
    assert reg.config_for("a").failure_threshold == 2
    with pytest.raises(ConfigError, match="defaults: jitter"):
        reg.configure(defaults={"jitter": 5})


def test_defaults_none_restores_library_defaults() -> None:
    reg = BreakerRegistry()
    reg.configure(defaults=BreakerConfig(failure_threshold=1))
    assert reg.defaults.failure_threshold == 1
    reg.configure(defaults=None)
    assert reg.defaults == BreakerConfig()


def test_reset_all_resets_every_breaker(clock: FakeClock) -> None:
    chainlit_breaker.configure(store=MemoryStore(), clock=clock, defaults={"failure_threshold": 1})
    a, b, c = (chainlit_breaker.get_breaker(n) for n in "abc")
    with pytest.raises(Boom):
        a.call_sync(fail)
    b.force_open()
    c.disable()
    chainlit_breaker.reset_all()
    assert [x.state for x in (a, b, c)] == [S.CLOSED] * 3
    assert a.status().open_count == 0


def test_reset_all_reaches_standalone_breakers_and_other_registries() -> None:
    standalone = PersistentCircuitBreaker("alone", store=MemoryStore())
    other = BreakerRegistry()
    theirs = other.get("theirs")
    standalone.force_open()
    theirs.disable()
    chainlit_breaker.reset_all()
    assert standalone.state is S.CLOSED
    assert theirs.state is S.CLOSED


def test_global_listeners_reach_present_and_future_breakers() -> None:
    reg = BreakerRegistry()
    seen: list[BreakerEvent] = []
    early = reg.get("early")
    reg.add_listener(seen.append)
    reg.add_listener(seen.append)  # idempotent
    late = reg.get("late")
    early.force_open()
    late.force_open()
    changes = [e for e in seen if isinstance(e, StateChanged)]
    assert [e.name for e in changes] == ["early", "late"]
    reg.remove_listener(seen.append)
    early.reset()
    assert len([e for e in seen if isinstance(e, StateChanged)]) == 2


def test_names_contains_breakers_and_clear() -> None:
    reg = BreakerRegistry()
    breaker("coded", registry=reg, failure_threshold=2)
    reg.configure(breakers={"configured": {}})
    reg.get("used")
    assert reg.names() == ["coded", "configured", "used"]
    assert "used" in reg
    assert "coded" not in reg  # known, not built yet
    assert list(reg.breakers()) == ["used"]
    assert [name for name, _ in reg.iter_status()] == ["coded", "configured", "used"]
    generation = reg.generation
    reg.clear()
    assert reg.names() == []
    assert reg.generation != generation  # proxies holding an old breaker re-resolve


def test_get_builds_each_name_once() -> None:
    reg = BreakerRegistry()
    assert reg.get("one") is reg.get("one")
    assert reg.get("one").store is reg.get("two").store


def test_default_store_is_memory_without_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHAINLIT_BREAKER_REDIS_URL", raising=False)
    assert isinstance(default_store(), MemoryStore)
    assert isinstance(BreakerRegistry().store, MemoryStore)


def test_breaker_fallback_registered_in_code(clock: FakeClock) -> None:
    chainlit_breaker.configure(store=MemoryStore(), clock=clock)
    chainlit_breaker.registry.register("fb", {}, fallback=lambda err, *a: "fallback")
    b = chainlit_breaker.get_breaker("fb")
    b.force_open()
    assert b.call_sync(int) == "fallback"


def test_defaults_that_break_a_code_config_fail_at_configure_time() -> None:
    """Otherwise the ConfigError would surface later, out of a protected call."""
    reg = BreakerRegistry()
    breaker("x", registry=reg, reset_timeout=5.0)
    with pytest.raises(ConfigError, match="max_reset_timeout"):
        reg.configure(defaults={"reset_timeout": 1.0, "max_reset_timeout": 3.0})
    assert reg.defaults == BreakerConfig()  # nothing was changed
    assert reg.get("x").config.reset_timeout == 5.0


def test_a_failed_configure_changes_nothing(clock: FakeClock) -> None:
    reg = BreakerRegistry()
    old_store = MemoryStore()
    reg.configure(store=old_store, clock=clock, breakers={"a": {"failure_threshold": 2}})
    proxy = CircuitBreakerProxy("a", registry=reg)
    built = proxy.breaker
    generation = reg.generation
    with pytest.raises(ConfigError):
        reg.configure(
            store=MemoryStore(),
            clock=FakeClock(),
            defaults={"failure_threshold": 4},
            breakers={"a": {"failure_threshold": 0}},
        )
    assert reg.generation == generation
    assert reg.store is old_store
    assert proxy.breaker is built
    assert built.clock is clock
    assert reg.defaults == BreakerConfig()
    assert reg.config_for("a").failure_threshold == 2


def test_concurrent_first_use_builds_one_breaker() -> None:
    import threading

    reg = BreakerRegistry()
    start = threading.Barrier(16, timeout=10)
    got: list[object] = []

    def worker() -> None:
        start.wait()
        got.append(CircuitBreakerProxy("race", registry=reg).breaker)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(got) == 16
    assert all(b is got[0] for b in got)


async def _agen() -> Any:
    yield "ok"


def _sgen() -> Any:
    yield "ok"


async def _afn() -> str:
    return "ok"


class _AsyncObj:
    async def __call__(self) -> str:
        return "ok"


@pytest.mark.parametrize(
    ("fn", "mode"),
    [
        (lambda: "ok", "sync"),
        (_afn, "async"),
        (_AsyncObj(), "async"),
        (_agen, "async_gen"),
        (_sgen, "sync_gen"),
    ],
    ids=["sync", "async", "async object", "async generator", "sync generator"],
)
async def test_every_wrapper_kind_follows_a_new_store(clock: FakeClock, fn: Any, mode: str) -> None:
    reg = BreakerRegistry()
    reg.configure(store=MemoryStore(), clock=clock)
    proxy = CircuitBreakerProxy("kinds", registry=reg)
    wrapped = proxy(fn)

    async def call() -> Any:
        if mode == "sync":
            return wrapped()
        if mode == "async":
            return await wrapped()
        if mode == "sync_gen":
            (item,) = wrapped()
            return item
        items = [x async for x in wrapped()]
        return items[0]

    assert await call() == "ok"  # resolves and caches the breaker
    proxy.breaker.force_open()
    with pytest.raises(CircuitOpenError):
        await call()
    reg.configure(store=MemoryStore())
    assert await call() == "ok"  # the cached breaker was dropped for the new store's


def test_register_fallback_reaches_a_built_breaker() -> None:
    reg = BreakerRegistry()
    built = reg.get("fb")
    assert built.fallback is None

    def fb(err: CircuitOpenError) -> str:
        return "fallback"

    reg.register("fb", {}, fallback=fb)
    assert built.fallback is fb
    reg.register("fb", {"failure_threshold": 3})  # a registration without one keeps it
    assert built.fallback is fb
    assert built.config.failure_threshold == 3


def test_removed_global_listener_skips_future_breakers() -> None:
    reg = BreakerRegistry()
    seen: list[BreakerEvent] = []
    reg.add_listener(seen.append)
    reg.remove_listener(seen.append)
    reg.get("later").force_open()
    assert seen == []
    assert reg.get("later").listeners == ()
