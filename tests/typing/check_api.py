"""Type-level checks of the public API, run by mypy --strict in scripts/test.sh (not by
pytest). Each ``type: ignore[...]`` marks a call that must NOT type-check: with
``warn_unused_ignores`` (part of --strict) mypy fails if the API stops catching it."""

from __future__ import annotations

from chainlit_breaker import CircuitBreakerProxy, PersistentCircuitBreaker, breaker


def add(a: int, b: int) -> int:
    return a + b


async def fetch(url: str) -> bytes:
    return url.encode()


async def main() -> None:
    proxy = CircuitBreakerProxy("typed")
    b = PersistentCircuitBreaker("typed")

    total: int = proxy.call_sync(add, 1, 2)
    body: bytes = await proxy.call(fetch, "https://example.invalid")
    total = b.call_sync(add, 1, 2)
    body = await b.call(fetch, "https://example.invalid")

    proxy.call_sync(add, "one", 2)  # type: ignore[arg-type]
    b.call_sync(add, 1)  # type: ignore[call-arg]
    text: str = await proxy.call(fetch, "x")  # type: ignore[arg-type]

    @breaker("typed", failure_threshold=3)
    def decorated(a: int) -> int:
        return a

    decorated("x")  # type: ignore[arg-type]
    print(total, body, text)
