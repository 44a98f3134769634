"""BreakerConfig validation: clear errors for bad values, exception specs, and the Policy.

Also build_config/config_error, which must name the source, table, field and bad value.
"""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from chainlit_breaker import BreakerConfig, ConfigError
from chainlit_breaker.config import build_config, config_error, resolve_exception
from chainlit_breaker.core import Policy, WindowKind


def test_defaults_make_a_consecutive_failure_policy() -> None:
    cfg = BreakerConfig()
    assert cfg.policy == Policy()
    assert cfg.policy.failure_threshold == 5
    assert not cfg.policy.uses_window


def test_policy_carries_every_number() -> None:
    cfg = BreakerConfig(
        failure_threshold=None,
        failure_rate_threshold=0.4,
        slow_call_duration=2.0,
        slow_call_rate_threshold=0.6,
        window="time",
        window_size=30,
        minimum_calls=7,
        reset_timeout=4.0,
        backoff_multiplier=1.5,
        max_reset_timeout=60.0,
        jitter=0.1,
        half_open_max_calls=3,
        success_threshold=2,
        trial_lease_ttl=9.0,
    )
    assert cfg.policy == Policy(
        failure_threshold=None,
        failure_rate_threshold=0.4,
        slow_call_rate_threshold=0.6,
        window_kind=WindowKind.TIME,
        window_size=30,
        minimum_calls=7,
        reset_timeout=4.0,
        backoff_multiplier=1.5,
        max_reset_timeout=60.0,
        jitter=0.1,
        half_open_max_calls=3,
        success_threshold=2,
        trial_lease_ttl=9.0,
    )
    assert cfg.policy.uses_window


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("reset_timeout", -1.0, "greater than 0"),
        ("reset_timeout", 0, "greater than 0"),
        ("failure_rate_threshold", 1.5, "less than or equal to 1"),
        ("slow_call_rate_threshold", 0.0, "greater than 0"),
        ("failure_threshold", 0, "greater than or equal to 1"),
        ("half_open_max_calls", 0, "greater than or equal to 1"),
        ("success_threshold", -2, "greater than or equal to 1"),
        ("jitter", 1.0, "less than 1"),
        ("backoff_multiplier", 0.5, "greater than or equal to 1"),
        ("window", "sliding", "'count' or 'time'"),
        ("window_size", 0, "greater than or equal to 1"),
        ("trial_lease_ttl", -5, "greater than 0"),
        ("failure_threshold", "many", "valid integer"),
        # strict numbers: a bool or a numeric string is a mistake, not 1 or 30
        ("failure_threshold", True, "valid integer"),
        ("half_open_max_calls", 2.0, "valid integer"),
        ("reset_timeout", True, "valid number"),
        ("reset_timeout", "30", "valid number"),
        # an infinite timeout or lease would wedge the breaker for good
        ("reset_timeout", float("inf"), "finite number"),
        ("trial_lease_ttl", float("inf"), "finite number"),
        ("slow_call_duration", float("nan"), "finite number"),
        ("failure_exceptions", [int], "is not an exception class"),
        ("failure_exceptions", 5, "a list of them"),
    ],
)
def test_bad_values_name_the_field(field: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        BreakerConfig(**{field: value})  # type: ignore[arg-type]
    errors = info.value.errors()
    assert [e["loc"] for e in errors] == [(field,)]
    assert message in errors[0]["msg"]


def test_unknown_field_is_rejected() -> None:
    with pytest.raises(ValidationError) as info:
        BreakerConfig(failure_treshold=3)  # type: ignore[call-arg]
    err = info.value.errors()[0]
    assert err["loc"] == ("failure_treshold",)
    assert err["type"] == "extra_forbidden"


def test_slow_rate_needs_a_duration() -> None:
    with pytest.raises(ValidationError, match="slow_call_rate_threshold needs slow_call_duration"):
        BreakerConfig(slow_call_rate_threshold=0.5)


def test_no_trip_policy_is_rejected() -> None:
    with pytest.raises(ValidationError, match="no trip policy"):
        BreakerConfig(failure_threshold=None)


def test_cap_below_reset_timeout_is_rejected() -> None:
    with pytest.raises(ValidationError, match=r"max_reset_timeout \(5.0\) is below"):
        BreakerConfig(reset_timeout=10.0, max_reset_timeout=5.0)


def test_config_is_frozen() -> None:
    cfg = BreakerConfig()
    with pytest.raises(ValidationError):
        cfg.failure_threshold = 3  # type: ignore[misc]


def test_exceptions_by_type_and_dotted_path() -> None:
    cfg = BreakerConfig(
        failure_exceptions=("builtins.OSError", LookupError, "ValueError"),
        ignore_exceptions="json.JSONDecodeError",
    )
    assert cfg.failure_exceptions == (OSError, LookupError, ValueError)
    assert cfg.ignore_exceptions == (json.JSONDecodeError,)
    assert cfg.is_failure(ConnectionError())
    assert cfg.is_failure(KeyError())
    assert cfg.is_failure(ValueError())
    assert not cfg.is_failure(json.JSONDecodeError("x", "", 0))  # a ValueError, but ignored
    assert not cfg.is_failure(RuntimeError())


def test_a_single_exception_class_is_accepted() -> None:
    assert BreakerConfig(failure_exceptions=TimeoutError).failure_exceptions == (TimeoutError,)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_module_xyz.Error", "cannot import exception 'no_such_module_xyz.Error'"),
        ("json.dumps", "'json.dumps' is not an exception class"),
        ("NoSuchBuiltin", "cannot import exception 'NoSuchBuiltin'"),
        ("  ", "expected an exception class or a dotted path"),
        (int, "is not an exception class"),
    ],
)
def test_bad_exception_specs(spec: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_exception(spec)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="failure_exceptions"):
        BreakerConfig(failure_exceptions=(spec,))  # type: ignore[arg-type]


def test_failure_predicate_narrows_failures() -> None:
    cfg = BreakerConfig(failure_predicate=lambda e: "retryable" not in str(e))
    assert cfg.is_failure(RuntimeError("fatal"))
    assert not cfg.is_failure(RuntimeError("retryable glitch"))


def test_build_config_names_source_table_field_and_value() -> None:
    with pytest.raises(ConfigError) as info:
        build_config(
            {"reset_timeout": -3, "failure_rate_threshold": 2},
            source=".chainlit/breakers.toml",
            table="breakers.llm",
        )
    lines = sorted(str(info.value).splitlines())
    assert len(lines) == 2
    prefix = ".chainlit/breakers.toml: [breakers.llm] "
    assert lines[0].startswith(prefix + "failure_rate_threshold: ")
    assert lines[0].endswith("(got 2)")
    assert lines[1].startswith(prefix + "reset_timeout: ")
    assert "greater than 0" in lines[1]
    assert lines[1].endswith("(got -3)")
    assert isinstance(info.value, ValueError)  # ConfigError is also a ValueError


def test_config_error_for_a_table_level_error_and_long_values() -> None:
    try:
        BreakerConfig(failure_threshold=None, failure_exceptions=("x" * 200,))
    except ValidationError as err:
        msg = str(config_error(err, source="env"))
    else:
        pytest.fail("expected a ValidationError")
    assert msg.startswith("env: failure_exceptions")
    # the offending value is shown, shortened
    assert msg.endswith("...)")
    assert len(msg.rpartition("(got ")[2]) <= 81
    try:
        BreakerConfig(failure_threshold=None)
    except ValidationError as err:
        msg = str(config_error(err, source="defaults"))
    assert msg.startswith("defaults: (table): ")
    assert "no trip policy" in msg


def test_with_overrides_keeps_set_fields_and_validates_again() -> None:
    base = BreakerConfig(failure_threshold=3, reset_timeout=7.0)
    assert base.with_overrides({}) is base
    cfg = base.with_overrides({"reset_timeout": 9.0})
    assert (cfg.failure_threshold, cfg.reset_timeout) == (3, 9.0)
    with pytest.raises(ConfigError, match="code: reset_timeout"):
        base.with_overrides({"reset_timeout": -1}, source="code")


@pytest.mark.parametrize("rate", ["failure_rate_threshold", "slow_call_rate_threshold"])
def test_count_window_smaller_than_minimum_calls_is_rejected(rate: str) -> None:
    """Such a rate could never trip: the window never holds minimum_calls calls."""
    extra = {"slow_call_duration": 1.0} if rate.startswith("slow") else {}
    with pytest.raises(ValidationError, match=r"minimum_calls \(10\) is more than"):
        BreakerConfig(**{rate: 0.5, "window_size": 5}, **extra)  # type: ignore[arg-type]
    BreakerConfig(**{rate: 0.5, "window_size": 5, "minimum_calls": 5}, **extra)  # type: ignore[arg-type]
    # a time window may see any number of calls; no rate policy, no window
    BreakerConfig(**{rate: 0.5, "window": "time", "window_size": 5}, **extra)  # type: ignore[arg-type]
    BreakerConfig(window_size=5)


def test_a_bad_exception_entry_is_one_error() -> None:
    with pytest.raises(ValidationError) as info:
        BreakerConfig(failure_exceptions=[int])  # type: ignore[list-item]
    assert len(info.value.errors()) == 1


def test_nothing_that_could_count_is_refused() -> None:
    with pytest.raises(ValidationError, match="nothing could ever count"):
        BreakerConfig(failure_exceptions=())
    # results alone may count
    cfg = BreakerConfig(failure_exceptions=(), result_predicate=lambda r: r is None)
    assert cfg.failure_exceptions == ()


def test_whole_numbers_are_fine_for_seconds() -> None:
    assert BreakerConfig(reset_timeout=30).reset_timeout == 30.0
