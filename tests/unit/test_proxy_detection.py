"""The detection table: every kind of callable, decorated with CircuitBreakerProxy and with
breaker(...), counts success and failure, is rejected when open, and keeps its signature,
``__wrapped__`` and what ``inspect`` says about it."""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import chainlit_breaker
from chainlit_breaker import (
    BreakerState,
    CallableKind,
    CircuitBreakerProxy,
    CircuitOpenError,
    FakeClock,
    MemoryStore,
    breaker,
    callable_kind,
)

from ._helpers import Boom, aok, ok

S = BreakerState


# -- the originals --------------------------------------------------------------------------


async def a(x: int, *, fail: bool = False) -> int:
    if fail:
        raise Boom
    return x


def s(x: int, *, fail: bool = False) -> int:
    if fail:
        raise Boom
    return x


async def ag(x: int, *, fail: bool = False) -> AsyncIterator[int]:
    yield x
    if fail:
        raise Boom


def sg(x: int, *, fail: bool = False) -> Iterator[int]:
    yield x
    if fail:
        raise Boom


async def a3(p: str, q: str, x: int, *, fail: bool = False) -> int:
    return await a(x, fail=fail)


def s3(p: str, q: str, x: int, *, fail: bool = False) -> int:
    return s(x, fail=fail)


async def ag3(p: str, q: str, x: int, *, fail: bool = False) -> AsyncIterator[int]:
    async for item in ag(x, fail=fail):
        yield item


def sg3(p: str, q: str, x: int, *, fail: bool = False) -> Iterator[int]:
    yield from sg(x, fail=fail)


class AsyncCallable:
    async def __call__(self, x: int, *, fail: bool = False) -> int:
        return await a(x, fail=fail)


class SyncCallable:
    def __call__(self, x: int, *, fail: bool = False) -> int:
        return s(x, fail=fail)


class AsyncGenCallable:
    async def __call__(self, x: int, *, fail: bool = False) -> AsyncIterator[int]:
        async for item in ag(x, fail=fail):
            yield item


class GenCallable:
    def __call__(self, x: int, *, fail: bool = False) -> Iterator[int]:
        yield from sg(x, fail=fail)


class Methods:
    """The undecorated twin of the decorated classes below, for comparing signatures."""

    def m(self, x: int, *, fail: bool = False) -> int:
        return s(x, fail=fail)

    async def am(self, x: int, *, fail: bool = False) -> int:
        return await a(x, fail=fail)

    async def agm(self, x: int, *, fail: bool = False) -> AsyncIterator[int]:
        async for item in ag(x, fail=fail):
            yield item

    def sgm(self, x: int, *, fail: bool = False) -> Iterator[int]:
        yield from sg(x, fail=fail)

    @staticmethod
    def st(x: int, *, fail: bool = False) -> int:
        return s(x, fail=fail)

    @staticmethod
    async def ast(x: int, *, fail: bool = False) -> int:
        return await a(x, fail=fail)

    @classmethod
    def cm(cls, x: int, *, fail: bool = False) -> int:
        return s(x, fail=fail)

    @classmethod
    async def acm(cls, x: int, *, fail: bool = False) -> int:
        return await a(x, fail=fail)


def decorated_class(dec: Callable[[Any], Any]) -> type:
    class Decorated:
        @dec
        def m(self, x: int, *, fail: bool = False) -> int:
            return s(x, fail=fail)

        @dec
        async def am(self, x: int, *, fail: bool = False) -> int:
            return await a(x, fail=fail)

        @dec
        async def agm(self, x: int, *, fail: bool = False) -> AsyncIterator[int]:
            async for item in ag(x, fail=fail):
                yield item

        @dec
        def sgm(self, x: int, *, fail: bool = False) -> Iterator[int]:
            yield from sg(x, fail=fail)

        @dec  # the decorator outside: it receives the staticmethod object
        @staticmethod
        def st(x: int, *, fail: bool = False) -> int:
            return s(x, fail=fail)

        @staticmethod  # the decorator inside: it receives the plain function
        @dec
        async def ast(x: int, *, fail: bool = False) -> int:
            return await a(x, fail=fail)

        @dec
        @classmethod
        def cm(cls, x: int, *, fail: bool = False) -> int:
            return s(x, fail=fail)

        @classmethod
        @dec
        async def acm(cls, x: int, *, fail: bool = False) -> int:
            return await a(x, fail=fail)

    return Decorated


# -- the table ------------------------------------------------------------------------------


@dataclass
class Case:
    call: Callable[..., Any]  # invoked as call(x, fail=...)
    wrapped: Any  # what inspect looks at
    original: Any  # its undecorated twin
    mode: str  # sync, async, sync_gen, async_gen


def plain(fn: Any, mode: str) -> Callable[[Callable[[Any], Any]], Case]:
    def build(dec: Callable[[Any], Any]) -> Case:
        w = dec(fn)
        return Case(w, w, fn, mode)

    return build


def bound(attr: str, mode: str) -> Callable[[Callable[[Any], Any]], Case]:
    """A bound method handed to the decorator: ``dec(obj.method)``."""

    def build(dec: Callable[[Any], Any]) -> Case:
        original = getattr(Methods(), attr)
        w = dec(original)
        return Case(w, w, original, mode)

    return build


def in_class(attr: str, mode: str, via: str) -> Callable[[Callable[[Any], Any]], Case]:
    """Decorated in the class body; called through an instance or through the class."""

    def build(dec: Callable[[Any], Any]) -> Case:
        cls = decorated_class(dec)
        obj = cls()
        if via == "instance":
            w = getattr(obj, attr)
            return Case(w, w, getattr(Methods(), attr), mode)
        w = getattr(cls, attr)
        original = getattr(Methods, attr)
        if attr in ("m", "am", "agm", "sgm"):  # unbound: self passed by hand

            def call(x: int, *, fail: bool = False) -> Any:
                return w(obj, x, fail=fail)

            return Case(call, w, original, mode)
        return Case(w, w, original, mode)

    return build


KINDS: dict[str, Callable[[Callable[[Any], Any]], Case]] = {
    "async def": plain(a, "async"),
    "def": plain(s, "sync"),
    "async generator function": plain(ag, "async_gen"),
    "sync generator function": plain(sg, "sync_gen"),
    "bound method": bound("m", "sync"),
    "bound async method": bound("am", "async"),
    "bound async generator method": bound("agm", "async_gen"),
    "bound sync generator method": bound("sgm", "sync_gen"),
    "method via instance": in_class("m", "sync", "instance"),
    "async method via instance": in_class("am", "async", "instance"),
    "async gen method via instance": in_class("agm", "async_gen", "instance"),
    "sync gen method via instance": in_class("sgm", "sync_gen", "instance"),
    "unbound method via class": in_class("m", "sync", "class"),
    "unbound async method via class": in_class("am", "async", "class"),
    "unbound async gen method via class": in_class("agm", "async_gen", "class"),
    "unbound sync gen method via class": in_class("sgm", "sync_gen", "class"),
    "staticmethod (decorator outside)": in_class("st", "sync", "class"),
    "async staticmethod (decorator inside)": in_class("ast", "async", "class"),
    "staticmethod via instance": in_class("st", "sync", "instance"),
    "classmethod (decorator outside)": in_class("cm", "sync", "class"),
    "async classmethod (decorator inside)": in_class("acm", "async", "class"),
    "classmethod via instance": in_class("cm", "sync", "instance"),
    "partial of async def": plain(functools.partial(a3, "p", "q"), "async"),
    "partial of def": plain(functools.partial(s3, "p", "q"), "sync"),
    "partial of async generator": plain(functools.partial(ag3, "p", "q"), "async_gen"),
    "partial of sync generator": plain(functools.partial(sg3, "p", "q"), "sync_gen"),
    "partial of a partial (async)": plain(
        functools.partial(functools.partial(a3, "p"), "q"), "async"
    ),
    "partial of a partial (sync gen)": plain(
        functools.partial(functools.partial(sg3, "p"), "q"), "sync_gen"
    ),
    "partial of a bound async method": plain(functools.partial(Methods().am), "async"),
    "object with async __call__": plain(AsyncCallable(), "async"),
    "partial of object with async __call__": plain(functools.partial(AsyncCallable()), "async"),
    "object with sync __call__": plain(SyncCallable(), "sync"),
    "object with async generator __call__": plain(AsyncGenCallable(), "async_gen"),
    "object with generator __call__": plain(GenCallable(), "sync_gen"),
    "partial of a staticmethod's function": plain(functools.partial(Methods.st), "sync"),
    "partial of a classmethod": plain(functools.partial(Methods.acm), "async"),
}


async def invoke(case: Case, x: int, *, fail: bool = False) -> Any:
    if case.mode == "sync":
        return case.call(x, fail=fail)
    if case.mode == "async":
        return await case.call(x, fail=fail)
    if case.mode == "sync_gen":
        return list(case.call(x, fail=fail))
    return [item async for item in case.call(x, fail=fail)]


@pytest.fixture(params=["CircuitBreakerProxy", "breaker"])
def dec(request: pytest.FixtureRequest, clock: FakeClock) -> Callable[[Any], Any]:
    chainlit_breaker.configure(store=MemoryStore(), clock=clock, defaults={"reset_timeout": 10})
    if request.param == "breaker":
        return breaker("t", failure_threshold=2)
    chainlit_breaker.configure(breakers={"t": {"failure_threshold": 2}})
    return CircuitBreakerProxy("t")


@pytest.mark.parametrize("kind", list(KINDS))
async def test_detection_table_counts_and_rejects(
    kind: str, dec: Callable[[Any], Any], clock: FakeClock
) -> None:
    case = KINDS[kind](dec)
    b = chainlit_breaker.get_breaker("t")
    expected: Any = [7] if case.mode.endswith("gen") else 7
    assert await invoke(case, 7) == expected
    with pytest.raises(Boom):
        await invoke(case, 7, fail=True)
    assert b.snapshot.consecutive_failures == 1, "the failure was not counted"
    await invoke(case, 7)
    assert b.snapshot.consecutive_failures == 0, "the success was not counted"
    for _ in range(2):
        with pytest.raises(Boom):
            await invoke(case, 7, fail=True)
    assert b.state is S.OPEN
    with pytest.raises(CircuitOpenError) as info:
        await invoke(case, 7)
    assert info.value.name == "t"
    assert info.value.retry_after == pytest.approx(10.0)
    clock.advance(10)
    assert await invoke(case, 8) == ([8] if case.mode.endswith("gen") else 8)
    assert b.state is S.CLOSED


@pytest.mark.parametrize("kind", list(KINDS))
def test_detection_table_keeps_metadata(kind: str, dec: Callable[[Any], Any]) -> None:
    case = KINDS[kind](dec)
    w, original = case.wrapped, case.original
    assert inspect.signature(w) == inspect.signature(original)
    assert inspect.iscoroutinefunction(w) == inspect.iscoroutinefunction(original)
    assert inspect.isasyncgenfunction(w) == inspect.isasyncgenfunction(original)
    assert inspect.isgeneratorfunction(w) == inspect.isgeneratorfunction(original)
    unwrapped = inspect.unwrap(w)
    assert unwrapped is not w
    if hasattr(original, "__name__"):
        assert w.__name__ == original.__name__
        assert w.__doc__ == original.__doc__


def test_wrapped_points_at_the_original() -> None:
    proxy = CircuitBreakerProxy("w")
    assert proxy(s).__wrapped__ is s  # type: ignore[attr-defined]
    part = functools.partial(a3, "p", "q")
    assert proxy(part).__wrapped__ is part  # type: ignore[attr-defined]
    obj = AsyncCallable()
    assert proxy(obj).__wrapped__ is obj  # type: ignore[attr-defined]
    assert proxy(s).__breaker__ is proxy  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("fn", "kind"),
    [
        (a, CallableKind.ASYNC),
        (s, CallableKind.SYNC),
        (ag, CallableKind.ASYNC_GEN),
        (sg, CallableKind.SYNC_GEN),
        (functools.partial(functools.partial(ag3, "p"), "q"), CallableKind.ASYNC_GEN),
        (staticmethod(a), CallableKind.ASYNC),
        (classmethod(sg), CallableKind.SYNC_GEN),
        (AsyncCallable(), CallableKind.ASYNC_OBJECT),
        (functools.partial(AsyncCallable(), 1), CallableKind.ASYNC_OBJECT),
        (SyncCallable(), CallableKind.SYNC),
        (Methods().agm, CallableKind.ASYNC_GEN),
        (len, CallableKind.SYNC),
    ],
)
def test_callable_kind(fn: Any, kind: CallableKind) -> None:
    assert callable_kind(fn) is kind


def test_not_callable_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="not callable"):
        CircuitBreakerProxy("x")(42)


async def test_proxy_has_the_breaker_api() -> None:
    """The bug that started this project: ``proxy.call_sync`` raised AttributeError."""
    proxy = CircuitBreakerProxy("api")
    assert proxy.call_sync(ok, 3) == 3
    assert await proxy.call(aok, 4) == 4
    assert list(proxy.call_sync(sg, 5)) == [5]
    assert list(proxy.stream_sync(sg, 6)) == [6]
    assert [x async for x in proxy.stream(ag, 7)] == [7]
    assert proxy.state is S.CLOSED
    assert proxy.force_open() is S.FORCED_OPEN
    assert proxy.retry_after == float("inf")
    assert proxy.disable() is S.DISABLED
    assert proxy.force_closed() is S.CLOSED
    assert proxy.reset() is S.CLOSED
    assert repr(proxy) == "CircuitBreakerProxy('api')"
    assert proxy.breaker is chainlit_breaker.get_breaker("api")


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: functools.partial(s3, "p", "q"), id="partial"),
        pytest.param(lambda: functools.partial(a3, "p", "q"), id="partial of async def"),
        pytest.param(AsyncCallable, id="object with async __call__"),
        pytest.param(SyncCallable, id="object with sync __call__"),
        pytest.param(AsyncGenCallable, id="object with async generator __call__"),
        pytest.param(lambda: Methods().m, id="bound method"),
    ],
)
async def test_a_callable_that_does_not_bind_still_does_not_bind(
    make: Callable[[], Any], dec: Callable[[Any], Any]
) -> None:
    """Stored on a class, a partial, a bound method or a callable object is not handed
    ``self``; the decorated one must not be either."""

    class Holder:
        original = make()
        decorated = dec(make())

    holder = Holder()
    expected = holder.original(5)
    got = holder.decorated(5)
    if inspect.isawaitable(expected):
        expected, got = await expected, await got
    elif hasattr(expected, "__aiter__"):
        expected = [x async for x in expected]
        got = [x async for x in got]
    assert got == expected


def test_builtins_keep_working_on_a_class() -> None:
    class Holder:
        size = CircuitBreakerProxy("b")(len)

    assert Holder().size("abc") == 3


def test_an_objects_attributes_are_not_copied_onto_the_wrapper() -> None:
    obj = SyncCallable()
    obj.secret = "hunter2"  # type: ignore[attr-defined]
    wrapper = CircuitBreakerProxy("w")(obj)
    assert "secret" not in vars(wrapper)


def test_re_resolution_never_hands_out_the_old_breaker(clock: FakeClock) -> None:
    """After a reconfigure, a call that arrives while another thread is still building the
    new breaker must not run on the old one (the generation was recorded first)."""
    import threading

    registry = chainlit_breaker.BreakerRegistry()
    registry.configure(store=MemoryStore(), clock=clock)
    proxy = CircuitBreakerProxy("r", registry=registry)
    old = proxy.breaker
    registry.configure(store=MemoryStore())  # a new store: breakers are rebuilt
    inside, release = threading.Event(), threading.Event()
    real_get = registry.get
    first = True

    def slow_get(name: str) -> Any:
        nonlocal first
        if first:
            first = False
            inside.set()
            release.wait(5)
        return real_get(name)

    registry.get = slow_get  # type: ignore[method-assign]
    seen: list[Any] = []
    worker = threading.Thread(target=lambda: seen.append(proxy.breaker))
    worker.start()
    assert inside.wait(5)
    during = proxy.breaker  # another caller, while the first is still inside get()
    release.set()
    worker.join(5)
    assert during is not old
    assert seen == [during]
