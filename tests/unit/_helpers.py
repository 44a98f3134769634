"""Helpers the unit tests share: protected functions that succeed or fail.

Imported by the test modules; conftest.py holds only fixtures.
"""

from __future__ import annotations

from typing import Any

from chainlit_breaker import PersistentCircuitBreaker


class Boom(Exception):
    """The failure the protected functions raise."""


def ok(value: Any = "ok") -> Any:
    return value


def fail(exc: BaseException | None = None) -> Any:
    raise exc if exc is not None else Boom("down")


async def aok(value: Any = "ok") -> Any:
    return value


async def afail(exc: BaseException | None = None) -> Any:
    raise exc if exc is not None else Boom("down")


def leases(b: PersistentCircuitBreaker) -> int:
    """Half-open trial permits currently held."""
    return len(b.snapshot.leases)
