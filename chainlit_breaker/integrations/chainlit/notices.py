"""Breaker events as chat notices, the ``/breakers`` table and the admin commands.

One module-level listener (stable across hot reloads) tracks which sessions used which
breaker and posts state changes to them from any thread, without blocking.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import string
import threading
import weakref
from collections import deque
from collections.abc import Callable, Coroutine
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal

from chainlit.context import ChainlitContext, context_var, local_steps
from chainlit.message import Message

from ...breaker import BreakerStatus
from ...core.machine import Op
from ...core.policy import Policy
from ...core.state import BreakerState
from ...errors import CircuitOpenError
from ...events import BreakerEvent, CallFailed, CallRejected, CallSucceeded, StateChanged
from ...registry import BreakerRegistry
from ...settings import Settings

__all__ = [
    "NoticeKind",
    "breakers_table",
    "handle_command",
    "install",
    "is_admin",
    "is_breakers_command",
    "notice_text",
    "retry_text",
]

log = logging.getLogger("chainlit_breaker")

NoticeKind = Literal["opened", "half_opened", "recovered"]
_TOAST: dict[NoticeKind, Literal["warning", "info", "success"]] = {
    "opened": "warning",
    "half_opened": "info",
    "recovered": "success",
}
_DOWN = frozenset({BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.FORCED_OPEN})
_COMMAND = "breakers"


# -- wording ------------------------------------------------------------------------------


def _settings() -> Settings:
    from .config import current_settings

    return current_settings()


def retry_text(
    settings: Settings, retry_after: float, state: BreakerState | None = None, name: str = ""
) -> str:
    """The ``{retry}`` sentence: when the service will be tried again."""
    ui = settings.ui
    if state is BreakerState.FORCED_OPEN or math.isinf(retry_after):
        template = ui.retry_manual
    elif retry_after <= 0:
        template = ui.retry_soon
    else:
        template = ui.retry_in
    # Every template was validated against the full set of placeholders, so each is
    # filled with all of them (a "{service}" here must not raise KeyError at run time).
    return _fill(template, settings, name, "", _seconds(retry_after))


def _seconds(retry_after: float) -> int:
    """Whole seconds to show (forced open has no end: 0, the template says "manual")."""
    return math.ceil(retry_after) if math.isfinite(retry_after) and retry_after > 0 else 0


def _fill(
    template: str,
    settings: Settings,
    name: str,
    retry: str,
    seconds: float,
    *,
    error_type: str = "",
    error: str = "",
) -> str:
    text = template.format(
        service=settings.label(name), name=name, retry=retry, seconds=seconds,
        error_type=error_type, error=error,
    ).strip()  # fmt: skip
    return _sentence(text)


def uses_error(template: str) -> bool:
    """Whether ``template`` places the exception text itself (``{error}``)."""
    return any(field == "error" for _, field, _, _ in string.Formatter().parse(template))


def exception_text(settings: Settings, exc: BaseException | None) -> str:
    """What ``{error}`` shows: the exception's text, only with ``show_exception_text``."""
    if exc is None or not settings.ui.show_exception_text:
        return ""
    return str(exc) or type(exc).__name__


def with_exception(text: str, template: str, settings: Settings, exc: BaseException | None) -> str:
    """``text`` plus the exception when it may be shown and the template has no place
    for it (``{error}``), so show_exception_text reaches every reply."""
    detail = exception_text(settings, exc)
    if not detail or exc is None or uses_error(template):
        return text
    return f"{text}\n\n{type(exc).__name__}: {detail}"


def _sentence(text: str) -> str:
    """``text`` with a capital first letter: labels are written to fit mid-sentence
    ("the weather service"), and templates often start with ``{service}``."""
    return text[:1].upper() + text[1:]


def notice_kind(event: StateChanged) -> NoticeKind | None:
    """Which notice a state change deserves (None: not one users care about)."""
    if event.new in (BreakerState.OPEN, BreakerState.FORCED_OPEN):
        return "opened"
    if event.new is BreakerState.HALF_OPEN:
        return "half_opened"
    if event.old in _DOWN:
        return "recovered"
    return None


def notice_text(settings: Settings, event: StateChanged, kind: NoticeKind) -> str:
    """The notice for ``event``: no exception text, URLs or reasons, only the label."""
    ui = settings.ui
    template = {"opened": ui.opened, "half_opened": ui.half_opened, "recovered": ui.recovered}
    retry = retry_text(settings, event.retry_after, event.new, event.name)
    return _fill(template[kind], settings, event.name, retry, _seconds(event.retry_after))


# -- sessions -----------------------------------------------------------------------------


@dataclass
class _Entry:
    session: weakref.ref[Any]
    loop: asyncio.AbstractEventLoop
    names: set[str] = field(default_factory=set)
    # How far this session was told of each breaker's outage now running: "opened",
    # then "trying" again, then once more "opened" if that trial failed (so the last word
    # is never a retry that did not work), then quiet until "available again". An outage
    # would otherwise post "opened", "trying", "opened", ... on every failed trial.
    told: dict[str, str] = field(default_factory=dict)

    def wants(self, name: str, kind: NoticeKind) -> bool:
        """Whether this session should hear ``kind`` for ``name`` (and note that it did).
        Call with ``_lock`` held."""
        stage = self.told.get(name)
        if kind == "recovered":
            self.told.pop(name, None)
            return True
        if kind == "half_opened":
            if stage in (None, "opened"):
                self.told[name] = "trying"
                return True
            return False
        if stage is None or stage == "trying":
            self.told[name] = "opened" if stage is None else "still down"
            return True
        return False


class _Scope:
    """One guarded handler run: failures seen (to name the service in the reply) and
    notices for this session, held back until the reply is out so they can be merged."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.lock = threading.Lock()
        self.failures: list[tuple[BaseException, str]] = []
        self.pending: dict[str, tuple[NoticeKind, str]] = {}
        self.closed = False

    def defer(self, name: str, kind: NoticeKind, text: str, wanted: bool = True) -> bool:
        """Hold a notice until the reply is out; the latest change of a breaker replaces
        an earlier one (a trial that failed within the run: no "trying again" after a
        reply that says it is unavailable). ``wanted`` false: the change only replaces."""
        with self.lock:
            if self.closed:
                return False
            self.pending.pop(name, None)  # keep order of the latest change per breaker
            if wanted:
                self.pending[name] = (kind, text)
            return True

    def failed(self, error: BaseException | None, name: str) -> None:
        if error is not None:
            with self.lock:
                self.failures.append((error, name))

    def close(self) -> dict[str, tuple[NoticeKind, str]]:
        with self.lock:
            self.closed = True
            pending, self.pending = self.pending, {}
            return pending


scope_var: ContextVar[_Scope | None] = ContextVar("chainlit_breaker_scope", default=None)

_lock = threading.Lock()
_sessions: dict[str, _Entry] = {}
_tasks: set[asyncio.Future[Any]] = set()  # strong refs until done, so sends are not GC'd


def _current_context() -> ChainlitContext | None:
    return context_var.get(None)


_PRUNE_MIN = 64
_prune_at = _PRUNE_MIN


def _note_use(ctx: ChainlitContext, name: str) -> None:
    global _prune_at
    session = ctx.session
    sid = session.id
    with _lock:
        entry = _sessions.get(sid)
        if entry is None or entry.session() is not session or entry.loop is not ctx.loop:
            entry = _sessions[sid] = _Entry(weakref.ref(session), ctx.loop)
            # Sessions end without telling us, and a breaker that never changes state
            # never prunes its dead users in _dispatch: sweep when the table doubled.
            if len(_sessions) >= _prune_at:
                for dead in [k for k, e in _sessions.items() if e.session() is None]:
                    del _sessions[dead]
                _prune_at = max(_PRUNE_MIN, 2 * len(_sessions))
        entry.names.add(name)


def sessions_using(name: str) -> list[str]:
    """Ids of the live sessions that used breaker ``name`` (for tests and tooling)."""
    with _lock:
        return [sid for sid, e in _sessions.items() if name in e.names and e.session()]


def _schedule(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` on ``loop`` without waiting for it, from any thread."""
    if loop.is_closed():
        coro.close()
        return
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        task = loop.create_task(coro)
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)
        return
    try:
        done = asyncio.run_coroutine_threadsafe(coro, loop)
    except RuntimeError:  # the loop closed meanwhile
        coro.close()
        return
    future = asyncio.wrap_future(done, loop=loop)
    _tasks.add(future)
    # Not future.add_done_callback: an asyncio future's callbacks belong to its loop's
    # thread (a race there loses the callback, or raises in asyncio debug mode).
    done.add_done_callback(lambda _: _tasks.discard(future))


async def send_notice(session: Any, settings: Settings, kind: NoticeKind, text: str) -> None:
    """Show ``text`` in ``session`` as configured (message, toast or nothing). Sets
    context variables: run it as a task of its own."""
    mode = settings.ui.notices
    if mode == "off":
        return
    try:
        # Our own context: a notice is not part of whatever step happens to be running.
        context_var.set(ChainlitContext(session))
        local_steps.set(None)
        if mode == "toast":
            await context_var.get().emitter.send_toast(text, _TOAST[kind])
        else:
            notice: Any = Message(content=text, author=settings.ui.author)
            await notice.send()
    except Exception:  # a notice must never break anything
        log.exception("chainlit_breaker: could not send a notice")


def _dispatch(event: StateChanged, ctx: ChainlitContext | None) -> None:
    kind = notice_kind(event)
    if kind is None:
        return
    settings = _settings()
    if settings.ui.notices == "off":
        return
    text = notice_text(settings, event, kind)
    scope = scope_var.get() if ctx is not None else None
    with _lock:
        targets = [(sid, e) for sid, e in _sessions.items() if event.name in e.names]
    for sid, entry in targets:
        session = entry.session()
        if session is None:
            with _lock:
                _sessions.pop(sid, None)
            continue
        with _lock:
            wanted = entry.wants(event.name, kind)
        in_scope = scope is not None and scope.session_id == sid
        if in_scope and scope is not None and scope.defer(event.name, kind, text, wanted):
            continue
        if wanted:
            _schedule(entry.loop, send_notice(session, settings, kind, text))


# The last outcomes of each breaker's calls in this process, for the /breakers rate of a
# breaker that keeps no window of its own (its policy counts consecutive failures only).
RECENT_CALLS = 100
_recent: dict[str, deque[bool]] = {}


def _note_outcome(name: str, failed: bool) -> None:
    with _lock:
        calls = _recent.get(name)
        if calls is None:
            calls = _recent[name] = deque(maxlen=RECENT_CALLS)
        calls.append(failed)


def recent_outcomes(name: str) -> tuple[int, int]:
    """(failures, calls) among the last RECENT_CALLS calls of ``name`` in this process."""
    with _lock:
        calls = _recent.get(name)
        return (sum(calls), len(calls)) if calls else (0, 0)


@dataclass
class _Outage:
    """What this process saw of a breaker's outage: why it opened, and how many trial
    calls failed since (the /breakers table says so; the breaker's counters are gone)."""

    cause: str | None
    failed_trials: int = 0


_outages: dict[str, _Outage] = {}
_CAUSES = (
    (re.compile(r"(\d+) consecutive failures"), "opened by {0} failures in a row"),
    (re.compile(r"failure rate (\d+)/(\d+) calls"), "opened by {0} failures in {1} calls"),
    (re.compile(r"slow-call rate (\d+)/(\d+) calls"), "opened by {0} slow calls in {1}"),
)


def _cause(reason: str | None) -> str | None:
    for pattern, text in _CAUSES:
        found = pattern.fullmatch(reason or "")
        if found:
            return text.format(*found.groups())
    return None


def _note_change(event: StateChanged) -> None:
    with _lock:
        if event.new is BreakerState.OPEN:
            outage = _outages.get(event.name)
            if event.old is BreakerState.HALF_OPEN and outage is not None:
                outage.failed_trials += 1
            elif outage is None or event.old is BreakerState.CLOSED:
                _outages[event.name] = _Outage(_cause(event.reason))
        elif event.new in (BreakerState.CLOSED, BreakerState.DISABLED, BreakerState.FORCED_OPEN):
            _outages.pop(event.name, None)


def outage_of(name: str) -> _Outage | None:
    with _lock:
        return _outages.get(name)


def _listener(event: BreakerEvent) -> None:
    """The one global listener. Runs in whatever thread caused the event."""
    if isinstance(event, (CallSucceeded, CallFailed)):
        _note_outcome(event.name, isinstance(event, CallFailed))
    elif isinstance(event, StateChanged):
        _note_change(event)
    ctx = _current_context()
    # Only calls make a session a user: an admin's /breakers command is not one.
    if ctx is not None and isinstance(event, (CallSucceeded, CallFailed, CallRejected)):
        _note_use(ctx, event.name)
        if isinstance(event, CallFailed):
            scope = scope_var.get()
            if scope is not None:
                scope.failed(event.error, event.name)
    if isinstance(event, StateChanged):
        _dispatch(event, ctx)


# Registry generations we installed on: clear() (and only a store or clock change
# besides) starts a new one, so checking it spares add_listener on every tool call.
_installed: weakref.WeakKeyDictionary[BreakerRegistry, int] = weakref.WeakKeyDictionary()


def install(registry: BreakerRegistry) -> None:
    """Route ``registry``'s events to the chat (idempotent: one listener object)."""
    if _installed.get(registry) != registry.generation:
        registry.add_listener(_listener)
        _installed[registry] = registry.generation


def _forget() -> None:
    global _prune_at
    with _lock:
        _sessions.clear()
        _recent.clear()
        _outages.clear()
        _prune_at = _PRUNE_MIN
    _installed.clear()


async def flush(scope: _Scope, settings: Settings, replied: set[str]) -> None:
    """Send the notices held back during a guarded run, minus an "opened" notice for a
    service the reply already said is unavailable."""
    pending = scope.close()
    ctx = _current_context()
    if ctx is None:
        return
    for name, (kind, text) in pending.items():
        if kind == "opened" and name in replied:
            continue
        # A task of its own: send_notice sets context variables for its message.
        await asyncio.create_task(send_notice(ctx.session, settings, kind, text))


# -- /breakers -----------------------------------------------------------------------------


def is_admin(user: Any, settings: Settings) -> bool:
    """Whether the Chainlit user's auth metadata marks them admin (``[ui] admin_key`` /
    ``admin_value``; a list value counts if it contains ``admin_value``)."""
    metadata = getattr(user, "metadata", None)
    if not isinstance(metadata, dict):
        return False
    value = metadata.get(settings.ui.admin_key)
    wanted = settings.ui.admin_value

    def same(item: Any) -> bool:  # 1 == True in Python; an admin flag must be the flag
        return item == wanted and type(item) is type(wanted)

    if isinstance(value, (list, tuple, set, frozenset)):
        return any(same(item) for item in value)
    return value is not None and same(value)


def _percent(failures: int, calls: int) -> str:
    return f"{failures / calls:.0%} ({failures}/{calls})"


def _failures(status: BreakerStatus, policy: Policy) -> str:
    """The failure-rate column: over the breaker's own window when it keeps one (shared
    by every instance), else over this instance's last RECENT_CALLS calls, with the run
    of consecutive failures that the policy judges. Opening clears the breaker's
    counters, so an open breaker also says what opened it."""
    parts = []
    if status.calls:
        parts.append(_percent(status.failures, status.calls))
    elif not policy.uses_window:
        failures, calls = recent_outcomes(status.name)
        if calls:
            parts.append(_percent(failures, calls) + " recent")
    if status.state in (BreakerState.OPEN, BreakerState.HALF_OPEN):
        outage = outage_of(status.name)
        cause = outage.cause if outage is not None else None
        if cause is None and not policy.uses_window and policy.failure_threshold:
            cause = f"opened by {policy.failure_threshold} failures in a row"  # the only way
        if cause is not None:
            parts.append(cause)
        trials = outage.failed_trials if outage is not None else 0
        if trials:
            parts.append(f"{trials} failed trial{'s' if trials > 1 else ''}")
    elif status.consecutive_failures:
        parts.append(f"{status.consecutive_failures} in a row")
    return ", ".join(parts) or "-"


def breakers_table(registry: BreakerRegistry, settings: Settings) -> str:
    """A markdown table: name, state, failure rate (see ``_failures``) and time until
    retry of each breaker."""
    rows = ["| Breaker | State | Failure rate | Retry in |", "| --- | --- | --- | --- |"]
    for name, brk in registry.iter_status():
        status = brk.status()
        rate = _failures(status, brk.config.policy)
        if status.state is BreakerState.FORCED_OPEN:
            retry = "manual"
        elif status.state is BreakerState.OPEN:
            # Still OPEN once the timeout ran out: the next call will be the trial.
            retry = f"{math.ceil(status.retry_after)} s" if status.retry_after > 0 else "now"
        else:
            retry = "-"
        label = settings.label(name)
        shown = name if label == name else f"{name} ({label})"
        rows.append(f"| {_cell(shown)} | {state_text(status.state)} | {rate} | {retry} |")
    if len(rows) == 2:
        return "No circuit breakers yet."
    return "\n".join(rows)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


_STATE_WORDS = {
    BreakerState.CLOSED: "closed",
    BreakerState.OPEN: "open",
    BreakerState.HALF_OPEN: "half-open",
    BreakerState.FORCED_OPEN: "forced open",
    BreakerState.DISABLED: "disabled",
}


def state_text(state: BreakerState) -> str:
    """A state as users read it ("forced open", not "forced_open")."""
    return _STATE_WORDS[state]


_OPS: dict[str, tuple[Op, str]] = {
    "reset": (Op.RESET, "reset"),
    "open": (Op.FORCE_OPEN, "forced open"),
    "close": (Op.FORCE_CLOSED, "forced closed"),
}
_USAGE = (
    "Usage: `/breakers` shows every breaker. Admins can also run "
    "`/breakers reset <name>`, `/breakers open <name>` and `/breakers close <name>`."
)


def is_breakers_command(message: Any) -> bool:
    """``/breakers ...`` typed as text, or Chainlit's command button named ``breakers``."""
    if getattr(message, "command", None) == _COMMAND:
        return True
    content = getattr(message, "content", "")
    if not isinstance(content, str):
        return False
    words = content.strip().split(maxsplit=1)
    return bool(words) and words[0].lower() == f"/{_COMMAND}"


def _arguments(message: Any) -> list[str]:
    words = str(getattr(message, "content", "")).split()
    if words and words[0].lower() == f"/{_COMMAND}":
        words = words[1:]
    if words:
        words[0] = words[0].lower()  # the action; breaker names keep their case
    return words


async def command_reply(
    message: Any,
    registry: BreakerRegistry,
    settings: Settings,
    user: Any,
    *,
    admin: Callable[[Any, Settings], bool] = is_admin,
) -> str:
    """The answer to a ``/breakers`` message (runs admin actions when allowed)."""
    args = _arguments(message)
    if not args:
        # A breaker this instance has not used yet was just built, and with a shared
        # store its mirror reads the shared state in a task: wait for those reads, or
        # the first table shows CLOSED for a breaker another instance opened.
        await asyncio.gather(*(brk.ready() for _, brk in registry.iter_status()))
        return breakers_table(registry, settings)
    if len(args) != 2 or args[0] not in _OPS:
        return _USAGE
    action, name = args
    op, done = _OPS[action]
    if not admin(user, settings):
        return (
            f"Sorry, only administrators can {action} circuit breakers. "
            "Your account is not marked as an admin."
        )
    names = registry.names()
    if name not in names:
        # Typed by a person: a unique match but for case is the one they meant.
        alike = [known for known in names if known.casefold() == name.casefold()]
        if len(alike) != 1:
            known = ", ".join(names) or "none"
            return f"There is no breaker called {name!r}. Known breakers: {known}."
        name = alike[0]
    brk = registry.get(name)
    state = await brk.command_async(op)
    log.info("chainlit_breaker: %s %s by %r", name, done, getattr(user, "identifier", None))
    now = state_text(state)
    reply = (
        f"Breaker {name!r} is now {now}."
        if now == done
        else f"Breaker {name!r} {done}; it is now {now}."
    )
    if not getattr(brk.store, "available", True):
        reply += (
            " The shared store is not answering, so this applies to this instance now and "
            "reaches the others when it answers again."
        )
    return reply


async def handle_command(
    message: Any,
    *,
    admin: Callable[[Any, Settings], bool] = is_admin,
) -> bool:
    """Answer ``message`` if it is a ``/breakers`` command; False if it is not one."""
    if not is_breakers_command(message):
        return False
    from .config import current_registry, ensure_setup

    settings = ensure_setup()
    ctx = context_var.get()
    reply = await command_reply(
        message, current_registry(), settings, getattr(ctx.session, "user", None), admin=admin
    )
    answer: Any = Message(content=reply, author=settings.ui.author)
    await answer.send()
    return True


def unavailable_text(
    settings: Settings, err: CircuitOpenError, failure: BaseException | None = None
) -> str:
    """The guard's reply to a rejected call, or to ``failure`` of a protected call (or
    the breaker's configured fallback, which is shown as written)."""
    fallback = settings.fallback(err.name)
    if fallback is not None:
        return fallback
    retry = retry_text(settings, err.retry_after, err.state, err.name)
    # A failure that left the circuit closed: nothing waits before the next try.
    closed = failure is not None and err.state is BreakerState.CLOSED
    template = settings.ui.failed if closed else settings.ui.unavailable
    text = _fill(
        template, settings, err.name, retry, _seconds(err.retry_after),
        error_type=type(failure).__name__ if failure is not None else "",
        error=exception_text(settings, failure),
    )  # fmt: skip
    return with_exception(text, template, settings, failure)
