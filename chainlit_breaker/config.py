"""Validated breaker configuration (pydantic v2).

``BreakerConfig`` is what users write; ``BreakerConfig.policy`` is what the pure core reads.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from .core.policy import Policy, WindowKind
from .errors import ConfigError

__all__ = ["BreakerConfig", "ExceptionSpec", "config_error", "resolve_exception"]

# Numbers are strict: a TOML `reset_timeout = true` or `"30"` is an error, not 1.0 or 30.0,
# and infinities are refused (an infinite reset timeout or lease would wedge the breaker).
_FLOAT: Any = {"strict": True, "allow_inf_nan": False}

ExceptionSpec = type[BaseException] | str
"""An exception class, or its dotted import path (``"httpx.HTTPError"``) as TOML allows."""


def resolve_exception(spec: ExceptionSpec) -> type[BaseException]:
    """Turn an exception class or a dotted path into the class, or explain why not."""
    if isinstance(spec, type):
        if issubclass(spec, BaseException):
            return spec
        raise ValueError(f"{spec!r} is not an exception class")
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"expected an exception class or a dotted path, got {spec!r}")
    path = spec.strip()
    module_name, _, attr = path.rpartition(".")
    candidates = [("builtins", path)] if not module_name else [(module_name, attr)]
    for mod, name in candidates:
        try:
            obj = getattr(importlib.import_module(mod), name)
        except (ImportError, AttributeError):
            continue
        if isinstance(obj, type) and issubclass(obj, BaseException):
            return obj
        raise ValueError(f"{path!r} is not an exception class")
    raise ValueError(f"cannot import exception {path!r}")


class BreakerConfig(BaseModel):
    """Every policy of one breaker. All fields are optional; defaults are shown.

    Tripping (CLOSED -> OPEN) happens when any enabled policy says so:

    * ``failure_threshold`` consecutive failures (``None`` turns it off);
    * a failure rate of at least ``failure_rate_threshold`` (0-1) over the window;
    * a slow-call rate of at least ``slow_call_rate_threshold`` (0-1) over the window,
      where a call slower than ``slow_call_duration`` seconds is slow (its result is
      still returned).

    Rates are only judged once the window holds ``minimum_calls`` calls.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    failure_threshold: int | None = Field(
        5, ge=1, strict=True, description="consecutive failures that trip"
    )
    failure_rate_threshold: float | None = Field(
        None, gt=0, le=1, **_FLOAT, description="failure rate (0-1] over the window that trips"
    )
    slow_call_duration: float | None = Field(
        None, gt=0, **_FLOAT, description="seconds after which a call counts as slow"
    )
    slow_call_rate_threshold: float | None = Field(
        None, gt=0, le=1, **_FLOAT, description="slow-call rate (0-1] over the window that trips"
    )
    window: Literal["count", "time"] = Field(
        "count", description="count: the last window_size calls; time: the last window_size s"
    )
    window_size: int = Field(
        100, ge=1, le=100_000, strict=True, description="calls or seconds in the window"
    )
    minimum_calls: int = Field(
        10, ge=1, strict=True, description="calls in the window before rates count"
    )
    reset_timeout: float = Field(
        30.0, gt=0, **_FLOAT, description="seconds OPEN before a trial call"
    )
    backoff_multiplier: float = Field(
        1.0,
        ge=1,
        le=100,
        **_FLOAT,
        description="reset_timeout grows by this factor on each re-open",
    )
    max_reset_timeout: float | None = Field(None, gt=0, **_FLOAT, description="cap for the backoff")
    jitter: float = Field(0.0, ge=0, lt=1, **_FLOAT, description="+/- fraction of random spread")
    half_open_max_calls: int = Field(
        1, ge=1, strict=True, description="concurrent trial calls in HALF_OPEN"
    )
    success_threshold: int = Field(
        1, ge=1, strict=True, description="trial successes needed to close"
    )
    trial_lease_ttl: float = Field(
        60.0,
        gt=0,
        le=86400,
        **_FLOAT,
        description="seconds (at most a day) a trial permit lives if its holder never reports",
    )
    failure_exceptions: tuple[ExceptionSpec, ...] = Field(
        (Exception,), description="exceptions that count as failures (classes or dotted paths)"
    )
    ignore_exceptions: tuple[ExceptionSpec, ...] = Field(
        (), description="exceptions that never count as failures (the call counts as a success)"
    )
    failure_predicate: Callable[[BaseException], bool] | None = Field(
        None, description="called with a failure exception; False means not a failure"
    )
    result_predicate: Callable[[Any], bool] | None = Field(
        None, description="called with a result; True means the call failed (result is returned)"
    )

    _policy: Policy = PrivateAttr()
    _failure_types: tuple[type[BaseException], ...] = PrivateAttr()
    _ignore_types: tuple[type[BaseException], ...] = PrivateAttr()

    @field_validator("failure_exceptions", "ignore_exceptions", mode="before")
    @classmethod
    def _resolve(cls, value: Any) -> tuple[type[BaseException], ...]:
        # Resolved before the type check, so a bad entry gives one error that says why
        # (the union of class and path would otherwise report once per member).
        if isinstance(value, (type, str)):
            value = (value,)
        if not isinstance(value, (list, tuple)):
            raise ValueError(
                f"expected an exception class, a dotted path or a list of them, got {value!r}"
            )
        return tuple(resolve_exception(spec) for spec in value)

    @model_validator(mode="after")
    def _consistent(self) -> BreakerConfig:
        if self.slow_call_rate_threshold is not None and self.slow_call_duration is None:
            raise ValueError("slow_call_rate_threshold needs slow_call_duration to be set")
        if (
            self.failure_threshold is None
            and self.failure_rate_threshold is None
            and self.slow_call_rate_threshold is None
        ):
            raise ValueError(
                "no trip policy: set failure_threshold, failure_rate_threshold "
                "or slow_call_rate_threshold"
            )
        uses_rate = (
            self.failure_rate_threshold is not None or self.slow_call_rate_threshold is not None
        )
        if uses_rate and self.window == "count" and self.minimum_calls > self.window_size:
            # Such a window never holds minimum_calls calls, so the rate would never trip.
            raise ValueError(
                f"minimum_calls ({self.minimum_calls}) is more than the window_size "
                f"({self.window_size}) calls a count window holds, so the rate could never "
                "trip: lower minimum_calls or raise window_size"
            )
        if (
            not self.failure_exceptions
            and self.result_predicate is None
            and self.slow_call_rate_threshold is None
        ):
            raise ValueError(
                "failure_exceptions is empty and no result_predicate or slow-call policy is "
                "set, so nothing could ever count against the breaker"
            )
        if self.max_reset_timeout is not None and self.max_reset_timeout < self.reset_timeout:
            raise ValueError(
                f"max_reset_timeout ({self.max_reset_timeout}) is below "
                f"reset_timeout ({self.reset_timeout})"
            )
        return self

    def model_post_init(self, __context: Any) -> None:
        self._policy = Policy(
            failure_threshold=self.failure_threshold,
            failure_rate_threshold=self.failure_rate_threshold,
            slow_call_rate_threshold=self.slow_call_rate_threshold,
            window_kind=WindowKind(self.window),
            window_size=self.window_size,
            minimum_calls=self.minimum_calls,
            reset_timeout=self.reset_timeout,
            backoff_multiplier=self.backoff_multiplier,
            max_reset_timeout=self.max_reset_timeout,
            jitter=self.jitter,
            half_open_max_calls=self.half_open_max_calls,
            success_threshold=self.success_threshold,
            trial_lease_ttl=self.trial_lease_ttl,
        )
        self._failure_types = tuple(t for t in self.failure_exceptions if isinstance(t, type))
        self._ignore_types = tuple(t for t in self.ignore_exceptions if isinstance(t, type))

    @property
    def policy(self) -> Policy:
        """The plain-numbers view the core and the stores consume."""
        return self._policy

    def is_failure(self, exc: BaseException) -> bool:
        """Whether ``exc`` counts as a failure under this config (cancellation is handled
        by the breaker before this is asked)."""
        if self._ignore_types and isinstance(exc, self._ignore_types):
            return False
        if not isinstance(exc, self._failure_types):
            return False
        predicate = self.failure_predicate
        return True if predicate is None else bool(predicate(exc))

    def with_overrides(
        self, overrides: Mapping[str, Any], *, source: str = "config"
    ) -> BreakerConfig:
        """A new config: this one with ``overrides`` applied and validated again."""
        if not overrides:
            return self
        data = {name: getattr(self, name) for name in self.model_fields_set}
        data.update(overrides)
        return build_config(data, source=source)


def config_error(err: ValidationError, *, source: str, table: str | None = None) -> ConfigError:
    """Turn a pydantic error into one ConfigError naming the source, table, field and value."""
    lines = []
    for item in err.errors():
        field = ".".join(str(part) for part in item["loc"]) or "(table)"
        where = f"[{table}] " if table else ""
        value = item.get("input")
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        lines.append(f"{source}: {where}{field}: {item['msg']} (got {shown})")
    return ConfigError("\n".join(lines))


def build_config(
    data: Mapping[str, Any], *, source: str = "config", table: str | None = None
) -> BreakerConfig:
    """Validate a mapping into a BreakerConfig, raising ConfigError with a precise message."""
    try:
        return BreakerConfig.model_validate(dict(data))
    except ValidationError as err:
        raise config_error(err, source=source, table=table) from None
