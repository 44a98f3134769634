"""CircuitBreakerProxy and ``breaker``: one decorator for every kind of callable.

It detects what it wraps once, at decoration time, and routes sync work to the breaker's
sync path and async work to its async path. The breaker itself is resolved lazily.
"""

from __future__ import annotations

import enum
import functools
import inspect
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterator,
)
from typing import Any, ParamSpec, TypeVar, cast

from .breaker import Fallback, PersistentCircuitBreaker
from .core.state import BreakerState
from .registry import BreakerRegistry
from .registry import registry as default_registry

__all__ = ["CallableKind", "CircuitBreakerProxy", "breaker", "callable_kind"]

F = TypeVar("F")
P = ParamSpec("P")
R = TypeVar("R")


class CallableKind(enum.Enum):
    SYNC = "sync"
    ASYNC = "async"
    SYNC_GEN = "sync generator"
    ASYNC_GEN = "async generator"
    ASYNC_OBJECT = "object with async __call__"


def _target(fn: Any) -> Any:
    """What actually runs: partials and static/class methods peeled off."""
    while True:
        if isinstance(fn, functools.partial):
            fn = fn.func
        elif isinstance(fn, (staticmethod, classmethod)):
            fn = fn.__func__
        else:
            return fn


def _is_routine(target: Any) -> bool:
    return inspect.isfunction(target) or inspect.ismethod(target) or inspect.isbuiltin(target)


def callable_kind(fn: Any) -> CallableKind:
    """Classify ``fn`` (function, method, partial, static/classmethod, callable object)."""
    target = _target(fn)
    if inspect.isasyncgenfunction(target):
        return CallableKind.ASYNC_GEN
    if inspect.iscoroutinefunction(target):
        return CallableKind.ASYNC
    if inspect.isgeneratorfunction(target):
        return CallableKind.SYNC_GEN
    if not _is_routine(target):
        dunder = getattr(type(target), "__call__", None)
        if inspect.isasyncgenfunction(dunder):
            return CallableKind.ASYNC_GEN
        if inspect.iscoroutinefunction(dunder):
            return CallableKind.ASYNC_OBJECT
        if inspect.isgeneratorfunction(dunder):
            return CallableKind.SYNC_GEN
    if not callable(target):
        raise TypeError(f"cannot protect {fn!r}: it is not callable")
    return CallableKind.SYNC


class CircuitBreakerProxy:
    """A handle on the breaker called ``name``; also a decorator.

    ``@CircuitBreakerProxy("payments")`` works on sync and async functions, sync and async
    generator functions, methods, static and class methods, partials and objects with an
    async ``__call__``. ``fallback(error, *args, **kwargs)`` answers rejected calls of the
    functions this proxy decorates (the breaker's own fallback is used otherwise).
    """

    __slots__ = ("name", "_registry", "_fallback", "_cached", "_generation")

    def __init__(
        self,
        name: str,
        *,
        fallback: Fallback | None = None,
        registry: BreakerRegistry | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"breaker name must be a non-empty string, got {name!r}")
        self.name = name
        self._registry = registry if registry is not None else default_registry
        self._fallback = fallback
        self._cached: PersistentCircuitBreaker  # set with _generation, by `breaker`
        self._generation = -1

    @property
    def breaker(self) -> PersistentCircuitBreaker:
        """The breaker behind the name (looked up lazily, re-resolved after reconfiguring)."""
        reg = self._registry
        generation = reg.generation
        if self._generation == generation:
            return self._cached
        built = reg.get(self.name)
        # The breaker first, then the generation that says it is current: a thread that
        # sees the new generation also sees the new breaker, never the old one.
        self._cached = built
        self._generation = generation
        return built

    # -- decorating --------------------------------------------------------------------------

    def __call__(self, fn: F) -> F:
        if isinstance(fn, staticmethod):
            return cast(F, staticmethod(self._wrap(fn.__func__)))
        if isinstance(fn, classmethod):
            return cast(F, classmethod(self._wrap(fn.__func__)))
        return cast(F, self._wrap(fn))

    def _wrap(self, fn: Any) -> Callable[..., Any]:
        kind = callable_kind(fn)
        # An object with __call__ (not a function): the wrapper is a plain def returning
        # what the breaker returns, so inspect reports for it what it reports for the object.
        is_object = not _is_routine(_target(fn))
        proxy = self
        wrapper: Callable[..., Any]
        if kind is CallableKind.ASYNC_OBJECT or (is_object and kind is CallableKind.ASYNC):

            def async_object_wrapper(*args: Any, **kwargs: Any) -> Any:
                return proxy.breaker._call_async(fn, args, kwargs, proxy._fallback)

            wrapper = async_object_wrapper
        elif is_object and kind is CallableKind.ASYNC_GEN:

            def async_gen_object_wrapper(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
                return proxy.breaker._stream_async(fn, args, kwargs, proxy._fallback)

            wrapper = async_gen_object_wrapper
        elif is_object and kind is CallableKind.SYNC_GEN:

            def sync_gen_object_wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
                return proxy.breaker._stream_sync(fn, args, kwargs, proxy._fallback)

            wrapper = sync_gen_object_wrapper
        elif kind is CallableKind.ASYNC:

            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                return await proxy.breaker._call_async(fn, args, kwargs, proxy._fallback)

            wrapper = async_wrapper
        elif kind is CallableKind.ASYNC_GEN:

            async def async_gen_wrapper(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
                stream = proxy.breaker._stream_async(fn, args, kwargs, proxy._fallback)
                try:
                    async for item in stream:
                        yield item
                finally:
                    # `async for` does not close what it iterates: without this an early
                    # aclose() would leave the trial permit held until garbage collection.
                    await cast(AsyncGenerator[Any, None], stream).aclose()

            wrapper = async_gen_wrapper
        elif kind is CallableKind.SYNC_GEN:

            def sync_gen_wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
                brk = proxy.breaker
                return (yield from brk._stream_sync(fn, args, kwargs, proxy._fallback))

            wrapper = sync_gen_wrapper
        else:

            def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
                return proxy.breaker._call_sync(fn, args, kwargs, proxy._fallback)

            wrapper = sync_wrapper
        # An object's own attributes are its state, not metadata: leave them on the object.
        functools.update_wrapper(wrapper, fn, updated=() if is_object else ("__dict__",))
        result: Any = wrapper
        if not hasattr(type(fn), "__get__"):
            # The original does not bind as a method (a partial, a builtin, a callable
            # object stored on a class): neither may the wrapper. A partial of it keeps
            # what inspect reports, and takes the metadata as well.
            result = functools.partial(wrapper)
            functools.update_wrapper(result, fn, updated=())
        result.__wrapped__ = fn
        result.__breaker__ = self  # lets tooling find the proxy behind a function
        return cast(Callable[..., Any], result)

    # -- the breaker's API, through the name --------------------------------------------------

    async def call(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """``await`` ``fn(*args, **kwargs)`` under the breaker."""
        return cast(R, await self.breaker._call_async(fn, args, kwargs, self._fallback))

    def call_sync(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run sync ``fn(*args, **kwargs)`` under the breaker; needs no event loop."""
        return self.breaker._dispatch_sync(fn, args, kwargs, self._fallback)

    def stream(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        brk = self.breaker
        return brk._stream_async(fn, args, kwargs, self._fallback)

    def stream_sync(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Iterator[Any]:
        brk = self.breaker
        return brk._stream_sync(fn, args, kwargs, self._fallback)

    @property
    def state(self) -> BreakerState:
        return self.breaker.state

    @property
    def retry_after(self) -> float:
        return self.breaker.retry_after

    def reset(self) -> BreakerState:
        return self.breaker.reset()

    def force_open(self) -> BreakerState:
        return self.breaker.force_open()

    def force_closed(self) -> BreakerState:
        return self.breaker.force_closed()

    def disable(self) -> BreakerState:
        return self.breaker.disable()

    def __repr__(self) -> str:
        return f"CircuitBreakerProxy({self.name!r})"


def breaker(
    name: str,
    *,
    fallback: Fallback | None = None,
    registry: BreakerRegistry | None = None,
    **config: Any,
) -> CircuitBreakerProxy:
    """``@breaker("llm", failure_threshold=3)``: register config for ``name`` in code and
    return its proxy. Config keys are BreakerConfig fields; they are validated now."""
    reg = registry if registry is not None else default_registry
    reg.register(name, config)
    return CircuitBreakerProxy(name, fallback=fallback, registry=reg)
