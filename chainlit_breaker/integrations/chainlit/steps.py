"""Chainlit-facing decorators: a breaker-protected tool step (async or sync tools), an
on_message guard that turns rejections and failures into chat replies, and LLM streaming."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import logging
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from chainlit.context import context_var
from chainlit.message import Message
from chainlit.step import Step as _Step
from chainlit.step import flatten_args_kwargs as _flatten

from ...breaker import Fallback
from ...core.state import BreakerState
from ...errors import CircuitOpenError
from ...proxy import CircuitBreakerProxy
from ...registry import BreakerRegistry
from ...registry import registry as default_registry
from ...settings import Settings
from . import notices
from .config import current_registry, ensure_setup

__all__ = ["guard", "llm", "stream", "stream_message", "tool"]

log = logging.getLogger("chainlit_breaker")

# Chainlit's API is unannotated; these names keep mypy --strict honest about that.
Step: Any = _Step
flatten_args_kwargs: Any = _flatten

P = ParamSpec("P")
R = TypeVar("R")


def module_run(namespace: dict[str, Any] | None) -> tuple[str, object] | None:
    """(module name, a token of this run of the module) for the module whose globals are
    ``namespace``. Chainlit's hot reload runs the app module again in fresh globals, so
    the token tells this run's registrations from the last run's."""
    if not isinstance(namespace, dict) or not isinstance(namespace.get("__name__"), str):
        return None
    token = namespace.setdefault("__chainlit_breaker_run__", object())
    return namespace["__name__"], token


def _proxy(
    breaker_name: str,
    fallback: Fallback | None,
    registry: BreakerRegistry | None,
    config: dict[str, Any],
    origin: tuple[str, object] | None,
) -> CircuitBreakerProxy:
    # Registering in code is keyed by name, so a hot reload replaces instead of adding;
    # the origin lets setup() drop what the module's last run said and this one does not.
    if config:
        reg = registry if registry is not None else default_registry
        reg.register(breaker_name, config, origin=origin)
    return CircuitBreakerProxy(breaker_name, fallback=fallback, registry=registry)


def _failure_text(settings: Settings, name: str, exc: BaseException) -> str:
    template = settings.ui.step_failed
    detail = notices.exception_text(settings, exc)
    if detail and not notices.uses_error(template):
        return notices._sentence(f"{settings.label(name)} failed: {detail}")
    return notices._fill(
        template, settings, name, "", 0, error_type=type(exc).__name__, error=detail
    )


def _rejected_text(settings: Settings, err: CircuitOpenError) -> str:
    retry = notices.retry_text(settings, err.retry_after, err.state, err.name)
    seconds = notices._seconds(err.retry_after)
    return notices._fill(settings.ui.step_rejected, settings, err.name, retry, seconds)


async def in_thread(label: str, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> R:
    """``fn(*args, **kwargs)`` in a thread of its own, with this task's context (so
    ``cl.context`` works in it), awaited without blocking the loop.

    Not the loop's shared executor (``asyncio.to_thread``): a tool that hangs keeps its
    thread, and a few hung ones would take every worker, so healthy tools elsewhere would
    queue and time out. A daemon thread per call also never holds up the process's exit.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[R] = loop.create_future()
    context = contextvars.copy_context()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():  # cancelled meanwhile (a timeout): nobody waits for it
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def run() -> None:
        try:
            result, error = context.run(fn, *args, **kwargs), None
        except BaseException as exc:
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody to tell
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name=f"chainlit-breaker-tool {label}", daemon=True).start()
    return await future


def tool(
    breaker_name: str,
    /,
    *,
    name: str | None = None,
    fallback: Fallback | None = None,
    timeout: float | None = None,
    show_input: bool | str = "json",
    registry: BreakerRegistry | None = None,
    **config: Any,
) -> Callable[[Callable[P, Any]], Callable[P, Awaitable[Any]]]:
    """``@tool("weather-api")``: run the function as a Chainlit tool step under breaker
    ``breaker_name``. ``config`` is BreakerConfig fields given in code (the toml wins).

    Async tools run on the loop. Sync tools run in a worker thread while their Step is
    opened and closed on the loop; the decorated sync tool is therefore awaited. Each
    sync call gets a thread of its own (see ``in_thread``). With ``timeout`` a call that
    takes longer fails with TimeoutError (counted as a failure; a sync body cannot be
    stopped, so its thread runs on until it returns, but once the circuit opens only
    trial calls start new ones).

    A rejected call shows a "circuit open" step and raises CircuitOpenError (unless a
    ``fallback`` answers); a failed call shows the failure without exception text unless
    ``[ui] show_exception_text`` allows it, and re-raises.
    """

    def decorate(fn: Callable[P, Any]) -> Callable[P, Awaitable[Any]]:
        if inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn):
            raise TypeError("tool() wraps functions; stream generators with stream()")
        origin = module_run(getattr(fn, "__globals__", None))
        proxy = _proxy(breaker_name, fallback, registry, config, origin)
        # A callable object has no __name__, and its async-ness is its __call__'s.
        is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)
        )
        step_name = name or getattr(fn, "__name__", None) or type(fn).__name__

        async def body(*args: Any, **kwargs: Any) -> Any:
            work: Awaitable[Any] = (
                fn(*args, **kwargs) if is_async else in_thread(step_name, fn, *args, **kwargs)
            )
            if timeout is None:
                return await work
            return await asyncio.wait_for(work, timeout)

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            settings = ensure_setup()
            step = Step(name=step_name, type="tool", show_input=show_input)
            if show_input:  # hidden input must not even travel to the browser
                try:
                    step.input = flatten_args_kwargs(fn, args, kwargs)
                except Exception:  # uncopyable or unbindable arguments: show none
                    log.debug("tool %r: arguments not shown", step_name, exc_info=True)
            # Entered and left by hand: ``async with`` would overwrite our output with
            # str(exception) and show the raw error.
            await step.__aenter__()
            try:
                result = await proxy.call(body, *args, **kwargs)
            except CircuitOpenError as err:
                step.is_error = True
                step.output = _rejected_text(settings, err)
                await step.__aexit__(None, None, None)
                raise
            except asyncio.CancelledError:
                step.output = "Cancelled."
                await asyncio.shield(step.__aexit__(None, None, None))
                raise
            except Exception as exc:
                step.is_error = True
                step.output = _failure_text(settings, breaker_name, exc)
                await step.__aexit__(None, None, None)
                raise
            try:
                if result is not None and result != "":
                    step.output = result
            except Exception:  # an output Chainlit cannot render is not the tool's failure
                step.output = repr(result)
            await step.__aexit__(None, None, None)
            return result

        any_wrapper: Any = wrapper
        any_wrapper.__breaker__ = proxy
        return wrapper

    return decorate


def _attribute(
    exc: BaseException, scope: notices._Scope
) -> tuple[str, BaseException | None] | None:
    """The breaker whose protected call raised ``exc``, or an exception it chains or
    groups (``asyncio.TaskGroup`` running several tools at once), and the failure that
    breaker saw (None for a rejection)."""
    with scope.lock:
        failures = list(scope.failures)
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, CircuitOpenError):
            return current.name, None
        for error, name in reversed(failures):
            if error is current:
                return name, error
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return None


def _as_rejection(exc: BaseException, name: str) -> CircuitOpenError:
    """What the user should hear about breaker ``name`` after ``exc``."""
    if isinstance(exc, CircuitOpenError):
        return exc
    brk = current_registry().get(name)
    status = brk.status()
    if status.state in (BreakerState.OPEN, BreakerState.FORCED_OPEN):
        return CircuitOpenError(name, status.state, status.retry_after)
    return CircuitOpenError(name, status.state, 0.0)


def guard(
    fn: Callable[P, Awaitable[R]] | None = None,
    /,
    *,
    commands: bool = True,
) -> Any:
    """``@cl.on_message`` then ``@guard``: a protected call that is rejected or fails
    inside the handler gets a chat reply naming the service, saying it is temporarily
    unavailable and when it will be retried (or the breaker's ``fallback`` answer).
    Any other error gets ``[ui] error``. With ``commands``, ``/breakers`` messages are
    answered here and never reach the handler."""

    def decorate(handler: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R | None]]:
        if not inspect.iscoroutinefunction(handler):
            raise TypeError("guard() needs an async handler (Chainlit awaits on_message)")

        @functools.wraps(handler)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | None:
            settings = ensure_setup()
            message = args[0] if args else kwargs.get("message")
            if commands and message is not None and await notices.handle_command(message):
                return None
            ctx = context_var.get(None)
            scope = notices._Scope(ctx.session.id if ctx is not None else "")
            token = notices.scope_var.set(scope)
            replied: set[str] = set()
            try:
                return await handler(*args, **kwargs)
            except Exception as exc:
                found = _attribute(exc, scope)
                if found is None:
                    log.exception("chainlit_breaker: on_message failed")
                    template = settings.ui.error
                    text = notices._fill(
                        template, settings, "", "", 0, error_type=type(exc).__name__,
                        error=notices.exception_text(settings, exc),
                    )  # fmt: skip
                    text = notices.with_exception(text, template, settings, exc)
                else:
                    name, failure = found
                    replied.add(name)
                    rejection = _as_rejection(exc, name)
                    text = notices.unavailable_text(settings, rejection, failure)
                reply: Any = Message(content=text)
                await reply.send()
                return None
            finally:
                notices.scope_var.reset(token)
                await notices.flush(scope, settings, replied)

        return wrapper

    if fn is not None:
        return decorate(fn)
    return decorate


def llm(
    breaker_name: str,
    /,
    *,
    fallback: Fallback | None = None,
    registry: BreakerRegistry | None = None,
    **config: Any,
) -> CircuitBreakerProxy:
    """``@llm("openai")`` on an async generator function: ``async for token in f()``
    runs through the breaker; failing mid-stream counts as a failure."""
    origin = module_run(sys._getframe(1).f_globals)
    return _proxy(breaker_name, fallback, registry, config, origin)


def stream(
    breaker_name: str,
    fn: Callable[..., Any],
    /,
    *args: Any,
    fallback: Fallback | None = None,
    **kwargs: Any,
) -> AsyncIterator[Any]:
    """``async for token in stream("openai", client_stream, prompt)``: iterate what ``fn``
    returns (an async generator or async iterable) under the breaker. When the breaker
    rejects the call, ``fallback(error, *args, **kwargs)`` (sync or async) answers
    instead: its result is iterated (a string is one token)."""
    proxy = CircuitBreakerProxy(breaker_name, fallback=fallback, registry=current_registry())
    return proxy.stream(fn, *args, **kwargs)


async def stream_message(
    breaker_name: str,
    fn: Callable[..., Any],
    /,
    *args: Any,
    message: Message | None = None,
    fallback: Fallback | None = None,
    **kwargs: Any,
) -> Message:
    """Stream ``fn(*args, **kwargs)`` token by token into a chat message under the breaker
    and send it. A failure mid-stream keeps what arrived, ends it with " …" so it does
    not read as a complete answer, and raises (for the guard). ``fallback`` answers a
    rejected call, as in ``stream``."""
    ensure_setup()
    msg: Any = message if message is not None else Message(content="")
    try:
        async for token in stream(breaker_name, fn, *args, fallback=fallback, **kwargs):
            await msg.stream_token(str(token))
    except Exception:
        if msg.content:  # what arrived stays, marked as cut short
            await msg.stream_token("…" if msg.content.endswith(" ") else " …")
        raise
    finally:
        if msg.content:
            await msg.send()
    return msg  # type: ignore[no-any-return]
