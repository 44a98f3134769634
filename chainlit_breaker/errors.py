"""Exceptions raised by chainlit_breaker.

One root, :class:`BreakerError`; every error carries the data a caller needs to act on it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, cast

from .core.state import BreakerState

__all__ = ["BreakerError", "CircuitOpenError", "ConfigError", "StoreError"]


class BreakerError(Exception):
    """Root of every exception this package raises on purpose."""


class CircuitOpenError(BreakerError):
    """A call was rejected because the circuit is not admitting calls.

    ``retry_after`` is the number of seconds until the breaker will admit a trial call
    (``0.0`` when trial slots are merely busy, ``math.inf`` when an operator forced it open).
    """

    # No __init__ of our own: the values live in ``args``, which BaseException fills in C.
    # This is built on every rejection (the open hot path), so that matters.

    if TYPE_CHECKING:

        def __init__(self, name: str, state: BreakerState, retry_after: float, /) -> None: ...

    @property
    def name(self) -> str:
        """The breaker's name."""
        return cast(str, self.args[0])

    @property
    def state(self) -> BreakerState:
        """The state that rejected the call (OPEN, HALF_OPEN with no free trial slot, or
        FORCED_OPEN)."""
        return cast(BreakerState, self.args[1])

    @property
    def retry_after(self) -> float:
        """Seconds until a trial call is admitted."""
        return cast(float, self.args[2])

    def __str__(self) -> str:
        if self.state is BreakerState.FORCED_OPEN or math.isinf(self.retry_after):
            when = "until an operator closes it"
        elif self.retry_after <= 0:
            when = "trial calls are in progress; retry shortly"
        else:
            when = f"retry in {self.retry_after:.1f}s"
        return f"circuit {self.name!r} is {self.state.value}: {when}"


class ConfigError(BreakerError, ValueError):
    """Configuration is invalid. The message names the source, the field and the bad value."""


class StoreError(BreakerError):
    """The state store failed. Never raised through a protected call: the breaker falls back."""
