"""Per-call overhead of chainlit_breaker next to the peer breakers, in one run.

Usage: ``python bench/bench_overhead.py [--quick] [--json out.json]``. Prints, for each
path, microseconds over a bare call (or a bare raise) and each peer's ratio to ours.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import platform
import sys
import time
import warnings
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import chainlit_breaker as cb

warnings.simplefilter("ignore")


def _best_sync(fn: Callable[[], Any], number: int, repeat: int) -> float:
    """Best-of-``repeat`` mean seconds per call of ``fn``."""
    best = float("inf")
    for _ in range(repeat):
        gc.disable()
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        elapsed = time.perf_counter() - t0
        gc.enable()
        best = min(best, elapsed / number)
    return best


def _best_async(make: Callable[[], Awaitable[Any]], number: int, repeat: int) -> float:
    async def run() -> float:
        best = float("inf")
        for _ in range(repeat):
            gc.disable()
            t0 = time.perf_counter()
            for _ in range(number):
                await make()
            elapsed = time.perf_counter() - t0
            gc.enable()
            best = min(best, elapsed / number)
        return best

    return asyncio.run(run())


def _swallow(fn: Callable[[], Any]) -> Callable[[], None]:
    def call() -> None:
        # Not contextlib.suppress: its own overhead would swamp what is measured.
        try:  # noqa: SIM105
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


def work(x: int) -> int:
    return x


async def awork(x: int) -> int:
    return x


def boom(x: int = 0) -> int:
    raise ValueError("down")


async def aboom(x: int = 0) -> int:
    raise ValueError("down")


class MinimalBreaker:
    """The floor: a 15-line consecutive-failure breaker with no features at all."""

    def __init__(self, threshold: int = 5, timeout: float = 30.0) -> None:
        self.failures, self.threshold, self.timeout, self.opened = 0, threshold, timeout, 0.0

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self.failures >= self.threshold and time.monotonic() - self.opened < self.timeout:
            raise RuntimeError("open")
        try:
            result = fn(*args)
        except Exception:
            self.failures += 1
            if self.failures >= self.threshold:
                self.opened = time.monotonic()
            raise
        self.failures = 0
        return result


def build_cases() -> dict[str, dict[str, Callable[[], Any]]]:
    """name -> {path: zero-arg callable}; async entries return awaitables."""
    cases: dict[str, dict[str, Callable[[], Any]]] = {}

    # ours
    ours = cb.breaker("bench-closed")
    f = ours(work)
    af = ours(awork)
    tripped = cb.breaker("bench-open", failure_threshold=1)
    open_f = tripped(work)
    open_af = tripped(awork)
    _swallow(tripped(boom))()
    assert tripped.state is cb.BreakerState.OPEN
    direct = cb.PersistentCircuitBreaker("bench-direct")
    cases["chainlit_breaker"] = {
        "closed_sync": lambda: f(1),
        "closed_async": lambda: af(1),
        "open_sync": _swallow(lambda: open_f(1)),
        "open_async": _swallow_async(lambda: open_af(1)),
    }
    cases["chainlit_breaker call_sync"] = {"closed_sync": lambda: direct.call_sync(work, 1)}

    minimal = MinimalBreaker()
    minimal_open = MinimalBreaker(threshold=1)
    _swallow(lambda: minimal_open.call(boom))()
    cases["minimal (15 lines)"] = {
        "closed_sync": lambda: minimal.call(work, 1),
        "open_sync": _swallow(lambda: minimal_open.call(work, 1)),
    }

    try:
        import pybreaker

        pb = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30)
        pb_open = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=30)
        pf = pb(work)
        pof = pb_open(work)
        _swallow(pb_open(boom))()
        cases["pybreaker"] = {"closed_sync": lambda: pf(1), "open_sync": _swallow(lambda: pof(1))}
    except ImportError:
        pass

    try:
        from circuitbreaker import circuit

        cf = circuit(failure_threshold=5, recovery_timeout=30)(work)
        caf = circuit(failure_threshold=5, recovery_timeout=30)(awork)
        copen = circuit(failure_threshold=1, recovery_timeout=30)
        cof = copen(work)
        _swallow(copen(boom))()
        cases["circuitbreaker"] = {
            "closed_sync": lambda: cf(1),
            "closed_async": lambda: caf(1),
            "open_sync": _swallow(lambda: cof(1)),
        }
    except ImportError:
        pass

    try:
        import aiobreaker

        ab = aiobreaker.CircuitBreaker(fail_max=5, timeout_duration=timedelta(seconds=30))
        ab_open = aiobreaker.CircuitBreaker(fail_max=1, timeout_duration=timedelta(seconds=30))
        abf = ab(awork)
        abof = ab_open(awork)
        asyncio.run(_swallow_async(lambda: ab_open(aboom)())())
        cases["aiobreaker"] = {
            "closed_async": lambda: abf(1),
            "open_async": _swallow_async(lambda: abof(1)),
        }
    except ImportError:
        pass

    try:
        import purgatory

        sync_factory = purgatory.SyncCircuitBreakerFactory(default_threshold=5, default_ttl=30)
        psf = sync_factory("p-closed")(work)
        psof = sync_factory("p-open", threshold=1)(work)
        _swallow(sync_factory("p-open", threshold=1)(boom))()
        cases["purgatory"] = {
            "closed_sync": lambda: psf(1),
            "open_sync": _swallow(lambda: psof(1)),
        }
    except ImportError:
        pass

    return cases


def _purgatory_async(number: int, repeat: int) -> dict[str, float]:
    """purgatory's async factory needs a running loop to initialise; measured apart."""
    try:
        import purgatory
    except ImportError:
        return {}
    out: dict[str, float] = {}

    async def run() -> None:
        factory = purgatory.AsyncCircuitBreakerFactory(default_threshold=5, default_ttl=30)
        await factory.initialize()
        closed = factory("pa-closed")(awork)
        opened = factory("pa-open", threshold=1)(awork)
        failing = factory("pa-open", threshold=1)(aboom)
        await _swallow_async(lambda: failing(1))()
        rejecting = _swallow_async(lambda: opened(1))
        for path, make in (("closed_async", lambda: closed(1)), ("open_async", rejecting)):
            best = float("inf")
            for _ in range(repeat):
                t0 = time.perf_counter()
                for _ in range(number):
                    await make()
                best = min(best, (time.perf_counter() - t0) / number)
            out[path] = best

    asyncio.run(run())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    number, repeat = (2_000, 3) if args.quick else (100_000, 7)

    baselines = {
        "closed_sync": _best_sync(lambda: work(1), number, repeat),
        "closed_async": _best_async(lambda: awork(1), number, repeat),
        "open_sync": _best_sync(_swallow(lambda: boom(1)), number, repeat),
        "open_async": _best_async(_swallow_async(lambda: aboom(1)), number, repeat),
    }
    results: dict[str, dict[str, float]] = {}
    for name, paths in build_cases().items():
        for path, fn in paths.items():
            if path.endswith("_async"):
                seconds = _best_async(fn, number, repeat)
            else:
                seconds = _best_sync(fn, number, repeat)
            results.setdefault(name, {})[path] = seconds - baselines[path]
    for path, seconds in _purgatory_async(max(number // 10, 200), repeat).items():
        results.setdefault("purgatory", {})[path] = seconds - baselines[path]

    paths = ["closed_sync", "closed_async", "open_sync", "open_async"]
    ours = results["chainlit_breaker"]
    where = f"python {platform.python_version()} on {platform.machine()}"
    print(f"{where}, n={number} best of {repeat}")
    print("overhead in microseconds over a bare call / bare raise; (x) = that breaker / ours")
    header = f"{'breaker':28}" + "".join(f"{p:>22}" for p in paths)
    print(header)
    print("-" * len(header))
    for name, row in results.items():
        cells = []
        for p in paths:
            if p not in row:
                cells.append(f"{'-':>22}")
                continue
            us = row[p] * 1e6
            ratio = row[p] / ours[p] if ours.get(p) else float("nan")
            cells.append(f"{us:>13.3f} ({ratio:5.1f}x)")
        print(f"{name:28}" + "".join(cells))
    print("bare:", ", ".join(f"{p}={baselines[p] * 1e6:.3f}us" for p in paths))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"baselines": baselines, "overhead": results, "n": number}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
