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
    n: int = 0
    ratio: float | None = None
    note: str = ""


Stats = dict[str, tuple[int, int]]


def _row(name: str, path: str, samples: list[int], before: Stats, after: Stats, ours: bool) -> Row:
    n = len(samples)
    ordered = sorted(samples)
    calls = {k: v[0] - before.get(k, (0, 0))[0] for k, v in after.items() if k != "info"}
    usec = {k: v[1] - before.get(k, (0, 0))[1] for k, v in after.items() if k != "info"}
    delta = {k: v for k, v in sorted(calls.items()) if v}
    # Time inside a script is in the EVALSHA's usec already.
    inner = {k for k in delta if ours and k in IN_SCRIPT}
    in_script = sum(delta[k] for k in inner)
    sent = sum(delta.values()) - in_script
    server_us = sum(usec[k] for k in delta if k not in inner)
    return Row(
        name,
        path,
        mean_us=sum(samples) / n / 1e3,
        p99_us=ordered[min(n - 1, int(0.99 * n))] / 1e3,
        cmds_per_call=sent / n,
        in_script_per_call=in_script / n,
        server_us=server_us / n,
        commands=delta,
        n=n,
    )


def measure_sync(
    server: Server, name: str, path: str, fn: Callable[[], Any], n: int, ours: bool = False
) -> Row:
    for _ in range(max(n // 20, 10)):
        fn()
    clock = time.perf_counter_ns
    samples = [0] * n
    before = server.commandstats()
    gc.disable()
    try:
        for i in range(n):
            t0 = clock()
            fn()
            samples[i] = clock() - t0
    finally:
        gc.enable()
    return _row(name, path, samples, before, server.commandstats(), ours)


async def measure_async(
    server: Server,
    name: str,
    path: str,
    make: Callable[[], Awaitable[Any]],
    n: int,
    ours: bool = False,
) -> Row:
    for _ in range(max(n // 20, 10)):
        await make()
    clock = time.perf_counter_ns
    samples = [0] * n
    before = server.commandstats()
    gc.disable()
    try:
        for i in range(n):
            t0 = clock()
            await make()
            samples[i] = clock() - t0
    finally:
        gc.enable()
    return _row(name, path, samples, before, server.commandstats(), ours)


# -- the breakers ------------------------------------------------------------------------


def bench_reference(server: Server, n: int) -> list[Row]:
    """What the rows are made of: a bare call, one redis-py GET round trip."""
    bare, get = REFERENCE
    rows = [measure_sync(server, bare, "closed_sync", lambda: work(1), n)]
    client = redis.Redis(port=server.port)
    rows.append(measure_sync(server, get, "closed_sync", lambda: client.get("x"), n))
    client.close()

    async def run() -> None:
        aclient = redis.asyncio.Redis(port=server.port)
        rows.append(await measure_async(server, get, "closed_async", lambda: aclient.get("x"), n))
        await aclient.aclose()

    asyncio.run(run())
    return rows


def bench_ours(server: Server, n_fast: int, n_redis: int) -> list[Row]:
    store = RedisStore.from_url(server.url, namespace="bench-ours")
    reg = cb.BreakerRegistry()
    reg.configure(store=store)
    closed = cb.breaker("closed", registry=reg)
    failing = cb.breaker("failing", registry=reg, failure_threshold=BIG)
    tripped = cb.breaker("open", registry=reg, failure_threshold=1, reset_timeout=3600)
    config = cb.BreakerConfig
    d_closed = cb.PersistentCircuitBreaker("d-closed", config(), store)
    d_failing = cb.PersistentCircuitBreaker("d-failing", config(failure_threshold=BIG), store)
    d_open = cb.PersistentCircuitBreaker(
        "d-open", config(failure_threshold=1, reset_timeout=3600), store
    )
    _swallow(lambda: tripped(boom)(1))()
    _swallow(lambda: d_open.call_sync(boom, 1))()
    assert reg.get("open").state is cb.BreakerState.OPEN
    assert d_open.state is cb.BreakerState.OPEN
    time.sleep(0.05)  # the subscription and first reads settle before anything is counted

    deco, direct = OURS, f"{OURS} call_sync/call"
    f, ff, of = closed(work), failing(boom), tripped(work)
    sync_cases: list[tuple[str, str, Callable[[], Any], int]] = [
        (deco, "closed_sync", lambda: f(1), n_fast),
        (deco, "failure_sync", _swallow(lambda: ff(1)), n_redis),
        (deco, "open_sync", _swallow(lambda: of(1)), n_fast),
        (direct, "closed_sync", lambda: d_closed.call_sync(work, 1), n_fast),
        (direct, "failure_sync", _swallow(lambda: d_failing.call_sync(boom, 1)), n_redis),
        (direct, "open_sync", _swallow(lambda: d_open.call_sync(work, 1)), n_fast),
    ]
    rows = [measure_sync(server, name, path, fn, n, True) for name, path, fn, n in sync_cases]

    async def run() -> None:
        af, aff, aof = closed(awork), failing(aboom), tripped(awork)
        async_cases: list[tuple[str, str, Callable[[], Awaitable[Any]], int]] = [
            (deco, "closed_async", lambda: af(1), n_fast),
            (deco, "failure_async", _swallow_async(lambda: aff(1)), n_redis),
            (deco, "open_async", _swallow_async(lambda: aof(1)), n_fast),
            (direct, "closed_async", lambda: d_closed.call(awork, 1), n_fast),
            (direct, "failure_async", _swallow_async(lambda: d_failing.call(aboom, 1)), n_redis),
            (direct, "open_async", _swallow_async(lambda: d_open.call(awork, 1)), n_fast),
        ]
        for name, path, make, n in async_cases:
            rows.append(await measure_async(server, name, path, make, n, True))
        await store.aclose()

    asyncio.run(run())
    return rows


def bench_pybreaker(server: Server, n: int) -> list[Row]:
    try:
        import pybreaker
    except ImportError:
        return [Row("pybreaker + CircuitRedisStorage", "closed_sync", note="not installed")]
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
    rows = [
        measure_sync(server, name, "closed_sync", lambda: f(1), n),
        measure_sync(server, name, "failure_sync", _swallow(lambda: ff(1)), n),
        measure_sync(server, name, "open_sync", _swallow(lambda: of(1)), n),
    ]
    if tripped.current_state != pybreaker.STATE_OPEN:
        rows[-1].note = f"breaker was {tripped.current_state}, not open"
    client.close()
    return rows


def bench_purgatory(server: Server, n: int) -> list[Row]:
    try:
        import purgatory
    except ImportError:
        return [Row("purgatory + AsyncRedisUnitOfWork", "closed_async", note="not installed")]
    name = "purgatory + AsyncRedisUnitOfWork"
    rows: list[Row] = []

    async def run() -> None:
        uow = purgatory.AsyncRedisUnitOfWork(server.url)
        factory = purgatory.AsyncCircuitBreakerFactory(default_ttl=3600, uow=uow)
        await factory.initialize()
        af = factory("pg-closed", threshold=5)(awork)
        aff = factory("pg-failing", threshold=BIG)(aboom)
        aof = factory("pg-open", threshold=1)(awork)
        await _swallow_async(lambda: factory("pg-open", threshold=1)(aboom)(1))()
        rows.append(await measure_async(server, name, "closed_async", lambda: af(1), n))
        rows.append(
            await measure_async(server, name, "failure_async", _swallow_async(lambda: aff(1)), n)
        )
        rows.append(
            await measure_async(server, name, "open_async", _swallow_async(lambda: aof(1)), n)
        )
        await uow.contexts.redis.aclose()

    asyncio.run(run())

    # Its sync Redis unit of work builds an asyncio client: show what a user gets.
    sync_name = "purgatory + SyncRedisUnitOfWork"
    try:
        factory = purgatory.SyncCircuitBreakerFactory(uow=purgatory.SyncRedisUnitOfWork(server.url))
        factory.initialize()
        factory("pg-sync")(work)(1)
    except Exception as exc:
        note = f"unusable: the first call raises {type(exc).__name__}: {exc}"
        rows.append(Row(sync_name, "closed_sync", note=note[:140]))
    else:
        rows.append(Row(sync_name, "closed_sync", note="a call succeeded (not broken any more?)"))
    return rows


def bench_aiobreaker(server: Server, n: int) -> list[Row]:
    try:
        import aiobreaker
        from aiobreaker.state import CircuitBreakerState
        from aiobreaker.storage.redis import CircuitRedisStorage
    except ImportError:
        return [Row("aiobreaker + CircuitRedisStorage", "closed_async", note="no Redis storage")]
    name = "aiobreaker + CircuitRedisStorage"
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

    rows: list[Row] = []

    async def run() -> None:
        closed, failing, tripped = make("ab-closed", 5), make("ab-failing", BIG), make("ab-open", 1)
        af, aff, aof = closed(awork), failing(aboom), tripped(awork)
        await _swallow_async(lambda: tripped(aboom)(1))()
        rows.append(await measure_async(server, name, "closed_async", lambda: af(1), n))
        rows.append(
            await measure_async(server, name, "failure_async", _swallow_async(lambda: aff(1)), n)
        )
        rows.append(
            await measure_async(server, name, "open_async", _swallow_async(lambda: aof(1)), n)
        )
        if tripped.current_state is not CircuitBreakerState.OPEN:
            rows[-1].note = f"breaker was {tripped.current_state}, not open"

    asyncio.run(run())
    client.close()
    return rows


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
    print("(x) = mean / ours (the decorator row) on the same path")
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
            if r.in_script_per_call:
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
        n_fast, n_redis, outage_calls, cap = 1_000, 100, 50, 2.0
    else:
        n_fast, n_redis, outage_calls, cap = 50_000, 5_000, 200, 20.0

    started = time.monotonic()
    server = Server()
    try:
        rows = bench_reference(server, n_redis)
        rows += bench_ours(server, n_fast, n_redis)
        rows += bench_pybreaker(server, n_redis)
        rows += bench_purgatory(server, n_redis)
        rows += bench_aiobreaker(server, n_redis)
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
