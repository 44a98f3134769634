"""Per-call cost of chainlit_breaker on Redis next to the peers' Redis storages, in one run.

Usage: ``python bench/bench_redis.py [--quick] [--json out.json]``. Starts its own
redis-server on a free port (never the shared one), prints mean / p99 microseconds and
Redis commands per protected call for each breaker and path with each peer's ratio to ours,
then pauses that server (SIGSTOP) to time calls during an outage, and stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import redis
import redis.asyncio

import chainlit_breaker as cb
from chainlit_breaker.store.redis import RedisStore

warnings.simplefilter("ignore")
# Peers log a traceback per failed Redis command and our store one warning per outage: the
# table is the output, the outage rows say what happened.
for _name in ("pybreaker", "aiobreaker", "purgatory", "chainlit_breaker"):
    logging.getLogger(_name).setLevel(logging.CRITICAL)

PATHS = ["closed_sync", "closed_async", "failure_sync", "failure_async", "open_sync", "open_async"]
OURS = "chainlit_breaker"
REFERENCE = ("(reference) bare call", "(reference) one redis-py GET")
# Commands our Lua scripts run inside EVALSHA: the server counts them in commandstats too,
# but they are no extra round trip, so they are reported apart.
_LUA_DIR = Path(cb.__file__).parent / "store" / "redis"
IN_SCRIPT = {
    m.lower()
    for lua in _LUA_DIR.glob("*.lua")
    for m in re.findall(r"redis\.p?call\(\s*['\"](\w+)", lua.read_text())
}
OUR_SCRIPTS = IN_SCRIPT | {"evalsha", "eval"}
BIG = 1_000_000  # a threshold the failure path never reaches


# -- the server --------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A redis-server of our own: no persistence, a temp dir, a free port."""

    def __init__(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise SystemExit("redis-server is not installed")
        self.dir = tempfile.mkdtemp(prefix="cb-bench-redis-")
        self.port = _free_port()
        if self.port == 6379:  # the shared server's port: never ours
            self.port = _free_port()
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.dir,
        )  # fmt: skip
        self.admin = redis.Redis(port=self.port, socket_timeout=5)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.admin.ping()
                break
            except redis.RedisError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"redis-server on port {self.port} did not start") from None
                time.sleep(0.02)
        self.version = str(self.admin.info("server")["redis_version"])

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def commandstats(self) -> dict[str, tuple[int, int]]:
        """command -> (calls, server microseconds) so far."""
        stats = self.admin.info("commandstats")
        return {
            k.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"])) for k, v in stats.items()
        }

    def pause(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.resume()
        self.admin.close()
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


# -- what is protected -------------------------------------------------------------------


def work(x: int) -> int:
    return x


async def awork(x: int) -> int:
    return x


def boom(x: int = 0) -> int:
    raise ValueError("down")


async def aboom(x: int = 0) -> int:
    raise ValueError("down")


def _swallow(fn: Callable[[], Any]) -> Callable[[], None]:
    def call() -> None:
        try:  # noqa: SIM105 - contextlib.suppress would add its own cost to every sample
            fn()
        except Exception:
            pass

    return call


def _swallow_async(fn: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[None]]:
    async def call() -> None:
        try:  # noqa: SIM105
            await fn()
        except Exception:
            pass

    return call


# -- measuring ---------------------------------------------------------------------------


@dataclass
class Row:
    breaker: str
    path: str
    mean_us: float = 0.0
    p99_us: float = 0.0
    cmds_per_call: float = 0.0
    in_script_per_call: float = 0.0
    server_us: float = 0.0  # Redis' own time per call (commandstats usec)
    commands: dict[str, int] = field(default_factory=dict)
    background: dict[str, int] = field(default_factory=dict)  # our store's, not this row's
    n: int = 0
    ratio: float | None = None
    note: str = ""


@dataclass
class Case:
    """One breaker on one path: its samples and server counters, gathered in blocks."""

    breaker: str
    path: str
    fn: Callable[[], Any]  # on *_async paths it returns an awaitable
    n: int
    ours: bool = False
    samples: list[int] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)
    usec: dict[str, int] = field(default_factory=dict)

    def count(self, before: Stats, after: Stats) -> None:
        for k, (calls, usec) in after.items():
            if k == "info":
                continue
            was = before.get(k, (0, 0))
            self.calls[k] = self.calls.get(k, 0) + calls - was[0]
            self.usec[k] = self.usec.get(k, 0) + usec - was[1]

    def row(self) -> Row:
        n = len(self.samples)
        ordered = sorted(self.samples)
        delta = {k: v for k, v in sorted(self.calls.items()) if v}
        # Our store's background refresh runs while the other rows are measured: its
        # scripts are nothing those breakers sent.
        background = {k: v for k, v in delta.items() if not self.ours and k in OUR_SCRIPTS}
        delta = {k: v for k, v in delta.items() if k not in background}
        # Commands a script runs are counted by Redis too (and their time is in the
        # EVALSHA's): they are no extra round trip.
        inner = {k for k in delta if self.ours and k in IN_SCRIPT}
        in_script = sum(delta[k] for k in inner)
        return Row(
            self.breaker,
            self.path,
            mean_us=sum(self.samples) / n / 1e3,
            p99_us=ordered[min(n - 1, int(0.99 * n))] / 1e3,
            cmds_per_call=(sum(delta.values()) - in_script) / n,
            in_script_per_call=in_script / n,
            server_us=sum(self.usec[k] for k in delta if k not in inner) / n,
            commands=delta,
            background=background,
            n=n,
        )


Stats = dict[str, tuple[int, int]]


def run_sync(server: Server, cases: list[Case], rounds: int) -> None:
    """Every case in turn, ``rounds`` times: a change in the machine's load hits all alike."""
    clock = time.perf_counter_ns
    for case in cases:
        for _ in range(max(case.n // 20, 10)):
            case.fn()
    for _ in range(rounds):
        for case in cases:
            fn, block = case.fn, case.n // rounds
            samples = [0] * block
            before = server.commandstats()
            gc.disable()
            try:
                for i in range(block):
                    t0 = clock()
                    fn()
                    samples[i] = clock() - t0
            finally:
                gc.enable()
            case.count(before, server.commandstats())
            case.samples += samples


async def run_async(server: Server, cases: list[Case], rounds: int) -> None:
    clock = time.perf_counter_ns
    for case in cases:
        for _ in range(max(case.n // 20, 10)):
            await case.fn()
    for _ in range(rounds):
        for case in cases:
            make, block = case.fn, case.n // rounds
            samples = [0] * block
            before = server.commandstats()
            gc.disable()
            try:
                for i in range(block):
                    t0 = clock()
                    await make()
                    samples[i] = clock() - t0
            finally:
                gc.enable()
            case.count(before, server.commandstats())
            case.samples += samples


# -- the breakers ------------------------------------------------------------------------


class Ours:
    """Our breakers on one RedisStore: through the decorator and through call_sync/call."""

    deco, direct = OURS, f"{OURS} call_sync/call"

    def __init__(self, server: Server) -> None:
        self.store = RedisStore.from_url(server.url, namespace="bench-ours")
        reg = cb.BreakerRegistry()
        reg.configure(store=self.store)
        self.closed = cb.breaker("closed", registry=reg)
        self.failing = cb.breaker("failing", registry=reg, failure_threshold=BIG)
        self.tripped = cb.breaker("open", registry=reg, failure_threshold=1, reset_timeout=3600)
        config = cb.BreakerConfig
        self.d_closed = cb.PersistentCircuitBreaker("d-closed", config(), self.store)
        self.d_failing = cb.PersistentCircuitBreaker(
            "d-failing", config(failure_threshold=BIG), self.store
        )
        self.d_open = cb.PersistentCircuitBreaker(
            "d-open", config(failure_threshold=1, reset_timeout=3600), self.store
        )
        _swallow(lambda: self.tripped(boom)(1))()
        _swallow(lambda: self.d_open.call_sync(boom, 1))()
        assert reg.get("open").state is cb.BreakerState.OPEN
        assert self.d_open.state is cb.BreakerState.OPEN
        time.sleep(0.05)  # the subscription and first reads settle before anything is counted

    def sync_cases(self, n_fast: int, n_redis: int) -> list[Case]:
        deco, direct = self.deco, self.direct
        f, ff, of = self.closed(work), self.failing(boom), self.tripped(work)
        d_closed, d_failing, d_open = self.d_closed, self.d_failing, self.d_open
        return [
            Case(deco, "closed_sync", lambda: f(1), n_fast, True),
            Case(deco, "failure_sync", _swallow(lambda: ff(1)), n_redis, True),
            Case(deco, "open_sync", _swallow(lambda: of(1)), n_fast, True),
            Case(direct, "closed_sync", lambda: d_closed.call_sync(work, 1), n_fast, True),
            Case(
                direct, "failure_sync", _swallow(lambda: d_failing.call_sync(boom, 1)), n_redis,
                True,
            ),
            Case(direct, "open_sync", _swallow(lambda: d_open.call_sync(work, 1)), n_fast, True),
        ]  # fmt: skip

    def async_cases(self, n_fast: int, n_redis: int) -> list[Case]:
        deco, direct = self.deco, self.direct
        af, aff, aof = self.closed(awork), self.failing(aboom), self.tripped(awork)
        d_closed, d_failing, d_open = self.d_closed, self.d_failing, self.d_open
        return [
            Case(deco, "closed_async", lambda: af(1), n_fast, True),
            Case(deco, "failure_async", _swallow_async(lambda: aff(1)), n_redis, True),
            Case(deco, "open_async", _swallow_async(lambda: aof(1)), n_fast, True),
            Case(direct, "closed_async", lambda: d_closed.call(awork, 1), n_fast, True),
            Case(
                direct, "failure_async", _swallow_async(lambda: d_failing.call(aboom, 1)), n_redis,
                True,
            ),
            Case(direct, "open_async", _swallow_async(lambda: d_open.call(awork, 1)), n_fast, True),
        ]  # fmt: skip


def pybreaker_cases(server: Server, n: int) -> tuple[list[Case], list[Row]]:
    try:
        import pybreaker
    except ImportError:
        return [], [Row("pybreaker + CircuitRedisStorage", "closed_sync", note="not installed")]
    client = redis.Redis(port=server.port)

    def make(name: str, fail_max: int) -> Any:
        storage = pybreaker.CircuitRedisStorage(pybreaker.STATE_CLOSED, client, namespace=name)
        return pybreaker.CircuitBreaker(
            fail_max=fail_max, reset_timeout=3600, state_storage=storage, name=name
        )

    name = "pybreaker + CircuitRedisStorage"
    closed, failing, tripped = make("pb-closed", 5), make("pb-failing", BIG), make("pb-open", 1)
    f, ff, of = closed(work), failing(boom), tripped(work)
    _swallow(lambda: tripped(boom)(1))()
    if tripped.current_state != pybreaker.STATE_OPEN:
        raise SystemExit(f"pybreaker did not open: {tripped.current_state}")
    return [
        Case(name, "closed_sync", lambda: f(1), n),
        Case(name, "failure_sync", _swallow(lambda: ff(1)), n),
        Case(name, "open_sync", _swallow(lambda: of(1)), n),
    ], []


async def purgatory_cases(server: Server, n: int) -> tuple[list[Case], list[Any]]:
    """Cases and the clients to close afterwards."""
    import purgatory

    name = "purgatory + AsyncRedisUnitOfWork"
    uow = purgatory.AsyncRedisUnitOfWork(server.url)
    factory = purgatory.AsyncCircuitBreakerFactory(default_ttl=3600, uow=uow)
    await factory.initialize()
    af = factory("pg-closed", threshold=5)(awork)
    aff = factory("pg-failing", threshold=BIG)(aboom)
    aof = factory("pg-open", threshold=1)(awork)
    await _swallow_async(lambda: factory("pg-open", threshold=1)(aboom)(1))()
    return [
        Case(name, "closed_async", lambda: af(1), n),
        Case(name, "failure_async", _swallow_async(lambda: aff(1)), n),
        Case(name, "open_async", _swallow_async(lambda: aof(1)), n),
    ], [uow.contexts.redis]


def purgatory_sync_row(server: Server) -> Row:
    """Its sync Redis unit of work builds an asyncio client: show what a user gets."""
    import purgatory

    name = "purgatory + SyncRedisUnitOfWork"
    try:
        factory = purgatory.SyncCircuitBreakerFactory(uow=purgatory.SyncRedisUnitOfWork(server.url))
        factory.initialize()
        factory("pg-sync")(work)(1)
    except Exception as exc:
        note = f"unusable: the first call raises {type(exc).__name__}: {exc}"
        return Row(name, "closed_sync", note=note[:140])
    return Row(name, "closed_sync", note="a call succeeded (not broken any more?)")


def aiobreaker_cases(server: Server, n: int) -> tuple[list[Case], list[Row]]:
    name = "aiobreaker + CircuitRedisStorage"
    try:
        import aiobreaker
        from aiobreaker.state import CircuitBreakerState
        from aiobreaker.storage.redis import CircuitRedisStorage
    except ImportError:
        return [], [Row(name, "closed_async", note="not installed, or no Redis storage")]
    # Its Redis storage takes a sync client, even in the async breaker: it blocks the loop.
    client = redis.Redis(port=server.port)

    def make(label: str, fail_max: int) -> Any:
        storage = CircuitRedisStorage(CircuitBreakerState.CLOSED, client, namespace=label)
        return aiobreaker.CircuitBreaker(
            fail_max=fail_max,
            timeout_duration=timedelta(hours=1),
            state_storage=storage,
            name=label,
        )

    closed, failing, tripped = make("ab-closed", 5), make("ab-failing", BIG), make("ab-open", 1)
    af, aff, aof = closed(awork), failing(aboom), tripped(awork)
    asyncio.run(_swallow_async(lambda: tripped(aboom)(1))())
    if tripped.current_state is not CircuitBreakerState.OPEN:
        raise SystemExit(f"aiobreaker did not open: {tripped.current_state}")
    return [
        Case(name, "closed_async", lambda: af(1), n),
        Case(name, "failure_async", _swallow_async(lambda: aff(1)), n),
        Case(name, "open_async", _swallow_async(lambda: aof(1)), n),
    ], []


def bench_calls(server: Server, n_fast: int, n_redis: int, rounds: int) -> list[Row]:
    bare, get = REFERENCE
    client = redis.Redis(port=server.port)
    ours = Ours(server)
    sync_cases = [
        Case(bare, "closed_sync", lambda: work(1), n_redis),
        Case(get, "closed_sync", lambda: client.get("x"), n_redis),
        *ours.sync_cases(n_fast, n_redis),
    ]
    py_cases, notes = pybreaker_cases(server, n_redis)
    sync_cases += py_cases
    run_sync(server, sync_cases, rounds)
    client.close()

    ab_cases, more = aiobreaker_cases(server, n_redis)
    notes += more
    try:
        notes.append(purgatory_sync_row(server))
    except ImportError:
        notes.append(Row("purgatory", "closed_sync", note="not installed"))
    async_cases: list[Case] = []

    async def run() -> None:
        aclient = redis.asyncio.Redis(port=server.port)
        to_close: list[Any] = [aclient]
        cases = [Case(get, "closed_async", lambda: aclient.get("x"), n_redis)]
        cases += ours.async_cases(n_fast, n_redis)
        try:
            pg_cases, clients = await purgatory_cases(server, n_redis)
            cases += pg_cases
            to_close += clients
        except ImportError:
            notes.append(
                Row("purgatory + AsyncRedisUnitOfWork", "closed_async", note="not installed")
            )
        cases += ab_cases
        async_cases.extend(cases)
        await run_async(server, cases, rounds)
        for c in to_close:
            await c.aclose()
        await ours.store.aclose()

    asyncio.run(run())
    return [c.row() for c in sync_cases + async_cases] + notes


# -- the outage --------------------------------------------------------------------------


@dataclass
class OutageRow:
    breaker: str
    calls: int
    completed: int
    worst_ms: float | None
    mean_ms: float | None
    p99_ms: float | None
    slow_calls: int  # calls over 10 ms
    note: str
    worst_is_lower_bound: bool = False  # a call was still blocked when we stopped waiting


def _outage_row(name: str, calls: int, samples: list[float], note: str) -> OutageRow:
    if not samples:
        return OutageRow(name, calls, 0, None, None, None, 0, note)
    ordered = sorted(samples)
    return OutageRow(
        name,
        calls,
        len(samples),
        worst_ms=ordered[-1] * 1e3,
        mean_ms=sum(samples) / len(samples) * 1e3,
        p99_ms=ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1e3,
        slow_calls=sum(1 for s in samples if s > 0.010),
        note=note,
    )


def bench_outage(server: Server, calls: int, pybreaker_cap: float) -> list[OutageRow]:
    """Failing calls (threshold not reached) while redis-server is stopped with SIGSTOP."""
    rows: list[OutageRow] = []
    config = cb.BreakerConfig(failure_threshold=BIG)
    sync_store = RedisStore.from_url(server.url, namespace="bench-outage-sync")
    async_store = RedisStore.from_url(server.url, namespace="bench-outage-async")
    ours = cb.PersistentCircuitBreaker("down", config, sync_store)
    aours = cb.PersistentCircuitBreaker("adown", config, async_store)
    _swallow(lambda: ours.call_sync(boom, 1))()  # connected before the pause
    loop = asyncio.new_event_loop()
    loop.run_until_complete(_swallow_async(lambda: aours.call(aboom, 1))())
    py_breaker: Any = None
    try:
        import pybreaker

        # redis-py's defaults, as a pybreaker user gets them (5 s timeouts, 3 retries).
        py_client = redis.Redis(port=server.port)
        py_breaker = pybreaker.CircuitBreaker(
            fail_max=3,
            reset_timeout=30,
            state_storage=pybreaker.CircuitRedisStorage(
                pybreaker.STATE_CLOSED, py_client, namespace="pb-down"
            ),
        )
        py_breaker.call(work, 1)
    except ImportError:
        pass

    async def run_async() -> None:
        ticks: list[float] = []
        stop = asyncio.Event()

        async def ticker() -> None:
            last = time.perf_counter()
            while not stop.is_set():
                await asyncio.sleep(0.001)
                now = time.perf_counter()
                ticks.append(now - last)
                last = now

        tick_task = asyncio.create_task(ticker())
        await asyncio.sleep(0.01)
        samples: list[float] = []
        for _ in range(calls):
            t0 = time.perf_counter()
            await _swallow_async(lambda: aours.call(aboom, 1))()
            samples.append(time.perf_counter() - t0)
            await asyncio.sleep(0)
        stop.set()
        await tick_task
        gap = max(ticks) * 1e3 if ticks else float("nan")
        note = f"await call; worst gap of a 1 ms asyncio ticker meanwhile {gap:.1f} ms"
        rows.append(_outage_row(f"{OURS} (async)", calls, samples, note))

    time.sleep(0.05)
    server.pause()
    try:
        samples: list[float] = []
        for _ in range(calls):
            t0 = time.perf_counter()
            _swallow(lambda: ours.call_sync(boom, 1))()
            samples.append(time.perf_counter() - t0)
        state = "down" if not sync_store.available else "up"
        note = f"call_sync; store reported {state}, breaker {ours.state.name} after"
        rows.append(_outage_row(f"{OURS} (sync)", calls, samples, note))
        loop.run_until_complete(run_async())
        if py_breaker is not None:
            rows.append(_outage_pybreaker(py_breaker, server, pybreaker_cap))
    finally:
        server.resume()
        loop.run_until_complete(async_store.aclose())
        loop.close()
        sync_store.close()
    return rows


def _outage_pybreaker(py_breaker: Any, server: Server, cap: float) -> OutageRow:
    """pybreaker's calls block on redis-py's timeouts and retries: run them in a thread,
    stop waiting at ``cap`` seconds, then resume the server and see when they return."""
    plan = [("success", work), ("failure", boom), ("failure", boom), ("failure", boom)]
    done: list[tuple[str, float, str]] = []

    def run() -> None:
        for kind, fn in plan:
            t0 = time.perf_counter()
            try:
                py_breaker.call(fn, 1)
                outcome = "returned"
            except Exception as exc:
                outcome = f"raised {type(exc).__name__}"
            done.append((kind, time.perf_counter() - t0, outcome))

    thread = threading.Thread(target=run, daemon=True)
    started = time.perf_counter()
    thread.start()
    thread.join(cap)
    blocked = thread.is_alive()
    before_cap = list(done)
    server.resume()
    resumed = time.perf_counter()
    thread.join(30)
    parts = [f"{k} {d * 1e3:.0f} ms, {o}" for k, d, o in before_cap]
    if blocked:
        k = plan[len(before_cap)][0]
        parts.append(f"{k} still blocked at the {cap:.0f} s cap")
        after = done[len(before_cap) :]
        if after:
            k, _, o = after[0]
            parts.append(f"it {o} {time.perf_counter() - resumed:.2f} s after SIGCONT")
            parts += [f"then {k} {d * 1e3:.1f} ms, {o}" for k, d, o in after[1:]]
        if thread.is_alive():
            parts.append("still blocked 30 s after SIGCONT")
    parts.append(f"state {py_breaker.current_state} at the end")
    samples = [d for _, d, _ in before_cap]
    row = _outage_row("pybreaker (redis-py defaults)", len(plan), samples, "; ".join(parts))
    if blocked:
        row.worst_ms = (resumed - started) * 1e3
        row.worst_is_lower_bound = True
    return row


# -- output ------------------------------------------------------------------------------


def _fmt(value: float | None, width: int, digits: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


def print_tables(rows: list[Row], outage: list[OutageRow], info: dict[str, Any]) -> None:
    ours = {r.path: r for r in rows if r.breaker == OURS}
    for r in rows:
        mine = ours.get(r.path)
        if r.n and mine is not None and mine.mean_us and r.breaker not in (OURS, *REFERENCE):
            r.ratio = r.mean_us / mine.mean_us
    print(
        f"python {info['python']}, redis-py {info['redis_py']}, redis-server "
        f"{info['redis_server']} on 127.0.0.1 (own server), {platform.machine()}"
    )
    print(
        f"n={info['n_fast']} per local path, n={info['n_redis']} per Redis-bound path; "
        "us per protected call (timer included); cmds = commands the client sent per call, "
        "srv us = Redis' time per call (INFO commandstats)"
    )
    print(
        "(x) = mean / ours (the decorator row) on the same path; ours' cmds include its "
        "background refresh (one read per breaker per second), the others' exclude it"
    )
    header = f"{'path':14}{'breaker':36}{'mean us':>10}{'p99 us':>10}"
    header += f"{'cmds':>7}{'srv us':>8}{'(x)':>9}  note"
    print(header)
    print("-" * len(header))
    for path in PATHS:
        for r in rows:
            if r.path != path:
                continue
            if not r.n:
                print(
                    f"{path:14}{r.breaker:36}{'-':>10}{'-':>10}{'-':>7}{'-':>8}{'-':>9}  {r.note}"
                )
                continue
            ratio = f"{r.ratio:8.1f}x" if r.ratio is not None else f"{'':>9}"
            note = r.note
            if r.in_script_per_call >= 0.005:
                note = (note + " " if note else "") + f"+{r.in_script_per_call:.2f} in-script"
            print(
                f"{path:14}{r.breaker:36}{r.mean_us:>10.1f}{r.p99_us:>10.1f}"
                f"{r.cmds_per_call:>7.3f}{r.server_us:>8.1f}{ratio}  {note}"
            )
        print()
    print("outage: redis-server stopped with SIGSTOP, failing calls (threshold not reached)")
    header = (
        f"{'breaker':32}{'calls':>6}{'done':>6}{'worst ms':>11}{'mean ms':>10}{'>10ms':>7}  note"
    )
    print(header)
    print("-" * len(header))
    for o in outage:
        worst = _fmt(o.worst_ms, 11, 1)
        if o.worst_is_lower_bound:
            worst = f"{'>' + worst.strip():>11}"
        print(
            f"{o.breaker:32}{o.calls:>6}{o.completed:>6}{worst}"
            f"{_fmt(o.mean_ms, 10, 3)}{o.slow_calls:>7}  {o.note}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts (smoke run, < 30 s)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.quick:
        n_fast, n_redis, outage_calls, cap, rounds = 1_000, 100, 50, 2.0, 2
    else:
        n_fast, n_redis, outage_calls, cap, rounds = 50_000, 5_000, 200, 60.0, 10

    started = time.monotonic()
    server = Server()
    try:
        rows = bench_calls(server, n_fast, n_redis, rounds)
        outage = bench_outage(server, outage_calls, cap)
        info = {
            "python": platform.python_version(),
            "redis_py": redis.__version__,
            "redis_server": server.version,
            "n_fast": n_fast,
            "n_redis": n_redis,
        }
    finally:
        server.stop()
    print_tables(rows, outage, info)
    print(f"total {time.monotonic() - started:.1f} s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(
                {
                    "info": info,
                    "rows": [asdict(r) for r in rows],
                    "outage": [asdict(o) for o in outage],
                },
                fh,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
