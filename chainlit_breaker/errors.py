"""Exceptions raised by chainlit_breaker.

One root, :class:`BreakerError`; every error carries the data a caller needs to act on it.
"""

from __future__ import annotations

import math

from .core.state import BreakerState

__all__ = ["BreakerError", "CircuitOpenError", "ConfigError", "StoreError"]


class BreakerError(Exception):
    """Root of every exception this package raises on purpose."""


class CircuitOpenError(BreakerError):
    """A call was rejected because the circuit is not admitting calls.

    ``retry_after`` is the number of seconds until the breaker will admit a trial call
    (``0.0`` when trial slots are merely busy, ``math.inf`` when an operator forced it open).
    """

    __slots__ = ("name", "state", "retry_after")

    def __init__(self, name: str, state: BreakerState, retry_after: float) -> None:
        # Cheap on purpose: this is built on every rejection (the open hot path).
        self.name = name
        self.state = state
        self.retry_after = retry_after

    def __str__(self) -> str:
        if self.state is BreakerState.FORCED_OPEN or math.isinf(self.retry_after):
            when = "until an operator closes it"
        elif self.retry_after <= 0:
            when = "trial calls are in progress; retry shortly"
        else:
            when = f"retry in {self.retry_after:.1f}s"
        return f"circuit {self.name!r} is {self.state.value}: {when}"

    def __reduce__(self) -> tuple[type[CircuitOpenError], tuple[str, BreakerState, float]]:
        return (CircuitOpenError, (self.name, self.state, self.retry_after))


class ConfigError(BreakerError, ValueError):
    """Configuration is invalid. The message names the source, the field and the bad value."""


class StoreError(BreakerError):
    """The state store failed. Never raised through a protected call: the breaker falls back."""
