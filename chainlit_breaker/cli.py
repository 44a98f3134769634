"""The ``chainlit-breaker`` command: ``init`` writes a commented ``breakers.toml``;
``status``, ``reset``, ``open`` and ``close`` act on breakers through the configured store."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from .core.machine import Op
from .errors import ConfigError
from .registry import BreakerRegistry
from .settings import apply_settings, find_settings_file, load_settings

__all__ = ["EXAMPLE", "main"]

EXAMPLE = """\
# Circuit breakers for this Chainlit app (read by chainlit_breaker).
# Lives next to Chainlit's own config.toml; every key is optional.

[store]
# Where breaker state lives: "memory" (this process only) or a Redis URL
# (redis://, rediss://, unix://) shared by every instance of the app.
# The environment variable CHAINLIT_BREAKER_REDIS_URL overrides it. Left out, the app
# keeps the store it was given in code (a MemoryStore by default).
# url = "memory"
# Prefix of every Redis key, so several apps can share one Redis.
namespace = "chainlit_breaker"

[defaults]
# Applies to every breaker; a [breakers.<name>] table overrides it.
failure_threshold = 5         # consecutive failures that open the circuit
reset_timeout = 30.0          # seconds open before one trial call is let through
# failure_rate_threshold = 0.5  # or open at this failure rate over the window
# window = "count"              # "count": the last window_size calls; "time": seconds
# window_size = 100
# minimum_calls = 10            # calls in the window before rates count
# slow_call_duration = 10.0     # a call slower than this counts as slow
# slow_call_rate_threshold = 0.8
# backoff_multiplier = 2.0      # reset_timeout grows on each re-open...
# max_reset_timeout = 300.0     # ...up to this
# jitter = 0.1                  # +/- random spread of the timeout
# half_open_max_calls = 1       # concurrent trial calls
# success_threshold = 1         # trial successes needed to close
# trial_lease_ttl = 60.0        # a trial permit expires if its holder dies (max 86400)
# failure_exceptions = ["Exception"]          # what counts as a failure
# ignore_exceptions = ["ValueError"]          # never a failure

[ui]
notices = "message"           # how state changes are shown: "message", "toast" or "off"
show_exception_text = false   # never show exception text to users unless true
# author = "Service status"
# Wording; placeholders: {service} (label), {name}, {retry}, {seconds}; about a failure
# also {error_type} and {error} (the exception text: empty unless show_exception_text).
# unavailable = "Sorry, {service} is temporarily unavailable. {retry}"
# failed = "Sorry, {service} did not answer this time. Please try again."
# opened = "{service} is temporarily unavailable. {retry}"
# half_opened = "Trying {service} again."
# recovered = "{service} is available again."
# retry_in = "It will be retried in {seconds:.0f} s."
# retry_soon = "It will be retried shortly."
# retry_manual = "It stays off until an operator turns it back on."
# error = "Sorry, something went wrong while answering. Please try again."
# step_rejected = "Circuit open: {service} is temporarily unavailable. {retry}"
# step_failed = "{service} failed ({error_type})."
# Users whose Chainlit auth metadata has admin_key = admin_value (or a list holding it)
# may run /breakers reset|open|close <name>.
admin_key = "role"
admin_value = "admin"

# One table per breaker: any [defaults] key, plus a label and a fallback answer.
# [breakers.weather-api]
# failure_threshold = 3
# reset_timeout = 10.0
# label = "the weather service"
# fallback = "I can't check the weather right now; please try again later."
"""

_OPS = {"reset": Op.RESET, "open": Op.FORCE_OPEN, "close": Op.FORCE_CLOSED}


def _init(args: argparse.Namespace) -> int:
    path = Path(args.path) if args.path else find_settings_file(args.app_root)
    if path.exists() and not args.force:
        print(f"{path} already exists; use --force to overwrite it.", file=sys.stderr)
        return 1
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(EXAMPLE, encoding="utf-8")
    print(f"Wrote {path}")
    return 0


def _registry(args: argparse.Namespace) -> BreakerRegistry:
    path = Path(args.path) if args.path else find_settings_file(args.app_root)
    settings = load_settings(path)
    if settings.store.url in (None, "memory"):
        raise ConfigError(
            f"{path}: [store] url is not a Redis URL, so breaker state lives inside each app "
            "process and this command cannot see it (set url or CHAINLIT_BREAKER_REDIS_URL)"
        )
    reg = BreakerRegistry()
    apply_settings(settings, reg)
    return reg


def _status(args: argparse.Namespace) -> int:
    reg = _registry(args)
    try:
        names = args.names or reg.names()
        if not names:
            print("No breakers configured (name them to query them).")
        for name in names:
            st = reg.get(name).status()
            if st.state.value == "forced_open":
                retry = "manual"
            elif math.isfinite(st.retry_after) and st.retry_after > 0:
                retry = f"{math.ceil(st.retry_after)}s"
            else:
                retry = "-"
            rate = f"{st.failure_rate:.0%}" if st.failure_rate is not None else "-"
            print(f"{name:30} {st.state.value:12} failure rate {rate:>5}  retry in {retry}")
    finally:
        reg.clear()
    return 0


def _command(args: argparse.Namespace) -> int:
    reg = _registry(args)
    try:
        configured = reg.names()
        brk = reg.get(args.name)  # off the loop: reads the shared state before returning
        # Known: configured in breakers.toml, or with state in the store (a breaker set
        # up in code that has been used). Anything else is most likely a typo, and a
        # command would create a breaker that no app uses.
        if args.name not in configured and brk.snapshot.version == 0 and not args.create:
            known = ", ".join(configured) or "none configured"
            print(
                f"error: no breaker called {args.name!r} in breakers.toml or in the store "
                f"(known: {known}); pass --create to {args.command} it anyway",
                file=sys.stderr,
            )
            return 1
        state = brk.command(_OPS[args.command])
        print(f"{args.name}: {state.value}")
    finally:
        reg.clear()
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chainlit-breaker", description="Circuit breakers for Chainlit apps."
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--app-root",
        help="the Chainlit app folder (default: $CHAINLIT_APP_ROOT or the current folder)",
    )
    common.add_argument("--path", help="the breakers.toml file (default: <app-root>/.chainlit/)")
    sub = parser.add_subparsers(dest="command", required=True)
    init = sub.add_parser("init", parents=[common], help="write a commented breakers.toml")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.set_defaults(run=_init)
    status = sub.add_parser("status", parents=[common], help="show breakers (Redis store)")
    status.add_argument("names", nargs="*", help="breakers to show (default: configured)")
    status.set_defaults(run=_status)
    for op, text in (("reset", "reset"), ("open", "force open"), ("close", "force closed")):
        cmd = sub.add_parser(op, parents=[common], help=f"{text} a breaker (Redis store)")
        cmd.add_argument("name")
        cmd.add_argument(
            "--create",
            action="store_true",
            help="act on a breaker that is neither in breakers.toml nor in the store yet",
        )
        cmd.set_defaults(run=_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    raise SystemExit(main())
