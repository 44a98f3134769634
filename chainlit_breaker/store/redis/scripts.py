"""The Lua scripts (loaded once from the package's .lua files), their arguments and replies.

Turns core events and policies into ARGV, and script replies or pub/sub messages into
snapshots and decisions in the caller's clock.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from urllib.parse import quote

from ...core.machine import Acquire, Command, Decision, Event, Record, Release, Verdict
from ...core.policy import Policy
from ...core.state import BreakerState, Bucket, Lease, Snapshot

__all__ = ["SCRIPTS", "Reply", "Script", "encode_name", "event_args", "parse", "policy_args"]

_MAX_PLAIN_NAME = 120


@dataclass(frozen=True, slots=True)
class Script:
    """One script's full source (common prelude + op) and its SHA1 for EVALSHA."""

    name: str
    source: str
    sha: str


def _load() -> dict[str, Script]:
    folder = resources.files(__package__ or "chainlit_breaker.store.redis")
    common = folder.joinpath("common.lua").read_text(encoding="utf-8")
    scripts = {}
    for name in ("acquire", "record", "release", "command", "read"):
        source = common + "\n" + folder.joinpath(f"{name}.lua").read_text(encoding="utf-8")
        sha = hashlib.sha1(source.encode("utf-8"), usedforsecurity=False).hexdigest()
        scripts[name] = Script(name, source, sha)
    return scripts


SCRIPTS = _load()


def encode_name(name: str) -> str:
    """A key-safe, collision-free form of a breaker name: no braces (the hash tag stays
    intact), no separators. Short names stay readable; long ones are hashed."""
    # surrogatepass: a name with a lone surrogate (from a decoded file name, say) is a
    # valid str and a valid breaker name; it gets bytes of its own like any other.
    raw = name.encode("utf-8", "surrogatepass")
    plain = quote(raw, safe="")
    if len(plain) <= _MAX_PLAIN_NAME:
        return "q" + plain  # quote() is injective, so distinct names stay distinct
    return "h" + hashlib.sha256(raw).hexdigest()


def _num(value: float | None) -> str:
    return "" if value is None else repr(float(value))


@lru_cache(maxsize=256)
def policy_args(policy: Policy) -> str:
    """ARGV[6], the policy's values joined by "|": sent on every call, so config in code
    always wins over Redis."""
    p = policy
    return "|".join(
        (
            "" if p.failure_threshold is None else str(p.failure_threshold),
            _num(p.failure_rate_threshold),
            _num(p.slow_call_rate_threshold),
            p.window_kind.value,
            str(p.window_size),
            str(p.minimum_calls),
            _num(p.reset_timeout),
            _num(p.backoff_multiplier),
            _num(p.max_reset_timeout),
            _num(p.jitter),
            str(p.half_open_max_calls),
            str(p.success_threshold),
            _num(p.trial_lease_ttl),
        )
    )


def event_args(event: Event, pending: int) -> tuple[Script, tuple[str, ...]]:
    """The script for ``event`` and its op arguments (ARGV[8..]); ``pending`` plain
    successes are applied first (only meaningful for a Record)."""
    if isinstance(event, Record):
        records: list[str] = []
        if pending:
            records += ["0", "0", str(pending), ""]
        records += [
            "1" if event.failure else "0",
            "1" if event.slow else "0",
            str(event.count),
            event.permit or "",
        ]
        return SCRIPTS["record"], (str(len(records) // 4), *records)
    if isinstance(event, Acquire):
        return SCRIPTS["acquire"], (event.permit,)
    if isinstance(event, Release):
        return SCRIPTS["release"], (event.permit,)
    if isinstance(event, Command):
        return SCRIPTS["command"], (event.op.value,)
    raise TypeError(f"not a breaker event: {event!r}")


def flush_args(pending: int) -> tuple[Script, tuple[str, ...]]:
    return SCRIPTS["record"], ("1", "0", "0", str(pending), "")


@dataclass(frozen=True, slots=True)
class Reply:
    """A script reply or published message; times in the snapshot are the script's."""

    warning: str
    now: float
    decision: Decision
    epoch: tuple[int, int]
    snapshot: Snapshot

    @property
    def order(self) -> tuple[int, int, int]:
        """Orders every state of one breaker: creation (or absence) time, then version."""
        return (*self.epoch, self.snapshot.version)

    def local(self, local_now: float) -> Snapshot:
        """The snapshot with its times moved onto the caller's clock (read at ``local_now``
        against the script's ``now``): remaining durations are what both sides agree on."""
        offset = local_now - self.now
        s = self.snapshot
        if offset == 0.0 or (
            s.opened_at is None and s.open_until is None and not s.leases and not s.buckets
        ):
            return s  # nothing to move (a CLOSED state without a time window, most often)

        def move(t: float | None) -> float | None:
            return None if t is None else t + offset

        return replace(
            s,
            opened_at=move(s.opened_at),
            open_until=move(s.open_until),
            leases=tuple((p, t + offset) for p, t in s.leases),
            buckets=tuple((math.floor(b[0] + offset), b[1], b[2], b[3]) for b in s.buckets),
        )


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return str(value)


_VERDICTS = {v.value: v for v in Verdict}
_STATES = {s.value: s for s in BreakerState}
_PLAIN = {v.value: Decision(v) for v in Verdict}


def parse(fields: list[object] | tuple[object, ...]) -> Reply:
    """Parse a reply as built by common.lua's ``reply`` (the fixed fields joined in one
    string, then permit, expiry pairs), or the same with the fixed fields as 16 elements."""
    if len(fields) % 2:
        f = _text(fields[0]).split("|")
        rest = [_text(x) for x in fields[1:]]
    else:
        f = [_text(x) for x in fields]
        f, rest = f[:16], f[16:]
    if len(f) != 16:
        raise ValueError(f"malformed script reply ({len(f)} fixed fields)")
    if f[3] == "0" and not f[4] and not f[5]:
        decision = _PLAIN[f[2]]  # no wait, no change: one shared Decision per verdict
    else:
        previous = _STATES[f[5]] if f[5] else None
        decision = Decision(_VERDICTS[f[2]], float(f[3]), f[4] or None, previous)
    buckets: list[Bucket] = []
    if f[10]:
        for item in f[10].split(";"):
            a, b, c, d = item.split(",")
            buckets.append((int(a), int(b), int(c), int(d)))
    leases: tuple[Lease, ...] = ()
    if rest:
        pairs = [(rest[i], float(rest[i + 1])) for i in range(0, len(rest), 2)]
        pairs.sort(key=lambda lease: (lease[1], lease[0]))
        leases = tuple(pairs)
    snapshot = Snapshot(
        state=_STATES[f[7]],
        consecutive_failures=int(f[8]),
        codes=f[9],
        buckets=tuple(buckets),
        opened_at=float(f[11]) if f[11] else None,
        open_until=float(f[12]) if f[12] else None,
        open_count=int(f[13]),
        trial_successes=int(f[14]),
        leases=leases,
        version=int(f[15]),
    )
    sec, _, usec = f[6].partition(".")
    return Reply(f[0], float(f[1]), decision, (int(sec), int(usec or 0)), snapshot)
