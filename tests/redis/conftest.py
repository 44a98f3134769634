"""Real redis-server processes for the Redis store tests, started on free ports in temp dirs.

Helpers pause (SIGSTOP/SIGCONT), kill, restart empty and flush the script cache; the
shared server on 6379 is never touched.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

REDIS_SERVER = shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One redis-server we own: no persistence, so a restart comes back empty."""

    def __init__(self, *extra: str) -> None:
        if REDIS_SERVER is None:
            pytest.skip("redis-server is not installed")
        self.dir = tempfile.mkdtemp(prefix="cb-redis-")
        self.port = free_port()
        assert self.port != 6379
        self.socket_path = os.path.join(self.dir, "redis.sock")
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            str(REDIS_SERVER),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", self.dir,
            "--unixsocket", self.socket_path,
            "--unixsocketperm", "700",
            "--enable-debug-command", "local",
            *self.extra,
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.dir
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with self.client(socket_timeout=0.5) as client:
                    client.ping()
                return
            except (
                redis.exceptions.BusyLoadingError,
                redis.exceptions.AuthenticationError,
                redis.exceptions.ResponseError,
            ):
                return  # it answers: loading, or asking for a password
            except redis.RedisError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on port {self.port} did not start") from None
                time.sleep(0.02)

    def client(self, **kwargs: object) -> redis.Redis:
        options: dict[str, object] = {"socket_timeout": 5}
        if "--requirepass" in self.extra:
            options["password"] = self.extra[self.extra.index("--requirepass") + 1]
        options.update(kwargs)
        return redis.Redis(port=self.port, **options)  # type: ignore[arg-type]

    def pause(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)
        self.paused = False

    def kill(self) -> None:
        if self.proc is not None:
            if self.paused:
                self.resume()
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def restart_empty(self) -> None:
        self.kill()
        self.start()

    def script_flush(self) -> None:
        with self.client() as client:
            client.script_flush()

    def commandstats(self) -> dict[str, int]:
        with self.client() as client:
            stats = client.info("commandstats")
        return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """A server shared by a module's tests (they use distinct namespaces)."""
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A server for one test alone: fault tests kill, pause and restart it."""
    server = RedisServer()
    yield server
    server.stop()


_namespaces = iter(range(1_000_000))


@pytest.fixture
def namespace(request: pytest.FixtureRequest) -> str:
    return f"t{next(_namespaces)}-{os.getpid()}"


@pytest.fixture
def stores(redis_server: RedisServer, namespace: str) -> Iterator[Callable[..., Any]]:
    """stores(**options): RedisStores on the module's server in the test's namespace,
    closed after the test."""
    from chainlit_breaker.store.redis import RedisStore

    made: list[RedisStore] = []

    def make(**options: Any) -> RedisStore:
        store = RedisStore.from_url(redis_server.url, namespace=namespace, **options)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


def wait_for(predicate: Callable[[], bool], seconds: float = 3.0) -> float:
    """Poll ``predicate`` until it holds (failing after ``seconds``); the time it took."""
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < seconds, "timed out"
        time.sleep(0.002)
    return time.monotonic() - start
