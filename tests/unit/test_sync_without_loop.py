"""The sync path never needs an event loop: in a plain thread, in the main thread of a
fresh interpreter, and called from inside a running loop. None may raise RuntimeError."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import chainlit_breaker
from chainlit_breaker import (
    BreakerState,
    CircuitBreakerProxy,
    CircuitOpenError,
    FakeClock,
    MemoryStore,
)

S = BreakerState
ROOT = Path(__file__).resolve().parents[2]


def no_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return True
    return False


def full_cycle(clock: FakeClock, name: str) -> list[str]:
    """Trip, reject, fall back, half-open trial, close and stream: every sync path."""
    proxy = CircuitBreakerProxy(name)
    seen: list[str] = []

    @proxy
    def charge(amount: int, *, fail: bool = False) -> str:
        if fail:
            raise ValueError("declined")
        return f"charged {amount}"

    @proxy
    def lines(n: int) -> Iterator[str]:
        yield from (f"line {i}" for i in range(n))

    seen.append(charge(1))
    for _ in range(2):
        with pytest.raises(ValueError, match="declined"):
            charge(1, fail=True)
    seen.append(proxy.state.value)
    with pytest.raises(CircuitOpenError):
        charge(2)
    with pytest.raises(CircuitOpenError):
        proxy.call_sync(len, "x")
    clock.advance(5.0)
    seen.append(charge(3))  # a half-open trial: goes through the store
    seen.append(proxy.state.value)
    seen.extend(lines(2))
    seen.append(proxy.force_open().value)
    seen.append(proxy.reset().value)
    return seen


EXPECTED = ["charged 1", "open", "charged 3", "closed", "line 0", "line 1", "forced_open", "closed"]


@pytest.fixture
def configured(clock: FakeClock) -> FakeClock:
    chainlit_breaker.configure(
        store=MemoryStore(), clock=clock, defaults={"failure_threshold": 2, "reset_timeout": 5}
    )
    return clock


def test_plain_thread_with_no_loop(configured: FakeClock) -> None:
    out: list[Any] = []

    def worker() -> None:
        try:
            assert no_running_loop()
            out.append(full_cycle(configured, "thread"))
            # no loop was created as a side effect either
            out.append(asyncio.get_event_loop_policy()._local._loop)  # type: ignore[attr-defined]
        except BaseException as exc:
            out.append(exc)

    t = threading.Thread(target=worker)
    t.start()
    t.join(10)
    assert out == [EXPECTED, None]


def test_main_thread_in_a_sync_test(configured: FakeClock) -> None:
    assert threading.current_thread() is threading.main_thread()
    assert no_running_loop()
    assert full_cycle(configured, "main") == EXPECTED


async def test_sync_helper_called_inside_a_running_loop(configured: FakeClock) -> None:
    assert not no_running_loop()

    def sync_helper() -> list[str]:  # e.g. a legacy helper called from a Chainlit handler
        return full_cycle(configured, "in-loop")

    assert sync_helper() == EXPECTED


def test_fresh_interpreter_main_thread_never_creates_a_loop(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import asyncio, threading
        import chainlit_breaker as cb

        clock = cb.FakeClock()
        cb.configure(clock=clock, defaults={"failure_threshold": 1, "reset_timeout": 1})

        @cb.breaker("legacy")
        def legacy(fail=False):
            if fail:
                raise ValueError
            return "ok"

        assert legacy() == "ok"
        try:
            legacy(fail=True)
        except ValueError:
            pass
        try:
            legacy()
        except cb.CircuitOpenError as err:
            assert err.retry_after == 1.0
        clock.advance(1)
        assert legacy() == "ok"
        assert cb.get_breaker("legacy").state is cb.BreakerState.CLOSED
        assert cb.get_breaker("legacy").call_sync(len, "abc") == 3
        assert threading.current_thread() is threading.main_thread()
        assert asyncio.get_event_loop_policy()._local._loop is None, "a loop was created"
        print("OK")
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CHAINLIT_APP_ROOT": str(tmp_path)}
    env.pop("CHAINLIT_BREAKER_REDIS_URL", None)
    proc = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "OK"
