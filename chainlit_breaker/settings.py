"""Settings: everything ``.chainlit/breakers.toml`` can say (store, defaults, breakers, UI).

Validated with pydantic, independent of Chainlit; ``apply_settings`` hands it to a registry.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import tomllib
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .config import BreakerConfig
from .errors import ConfigError
from .registry import REDIS_URL_ENV, BreakerRegistry
from .registry import registry as default_registry
from .store.base import Store
from .store.memory import MemoryStore

__all__ = [
    "DEFAULT_NAMESPACE",
    "BreakerUI",
    "Settings",
    "StoreSettings",
    "UISettings",
    "SETTINGS_FILE",
    "apply_settings",
    "find_settings_file",
    "load_settings",
    "redact_url",
    "settings_from_mapping",
]

SETTINGS_FILE = Path(".chainlit") / "breakers.toml"

log = logging.getLogger("chainlit_breaker")

DEFAULT_NAMESPACE = "chainlit_breaker"
_REDIS_SCHEMES = ("redis", "rediss", "unix")
_NAMESPACE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
# Keys of a [breakers.<name>] table that are about the chat, not the policy.
_UI_KEYS = frozenset({"label", "fallback"})


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages and logs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at:
        try:
            parts.port  # noqa: B018
        except ValueError:  # "user:password" typed without "@host" reads as host:port
            return urlunsplit(parts._replace(netloc="***"))
        return url
    if ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _check_store_url(url: str) -> str:
    """``memory`` or a Redis URL that redis-py can parse; checked without connecting."""
    url = url.strip()
    if url == "memory":
        return url
    # Not urlsplit's messages: they quote the netloc or the bad "port", which may be a
    # password (typed without its "@host").
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ValueError("not a valid URL (check the host part)") from None
    try:
        port = parts.port
    except ValueError:
        raise ValueError("not a valid URL (the port must be a number from 0 to 65535)") from None
    if parts.scheme not in _REDIS_SCHEMES:
        raise ValueError("must be 'memory' or a redis://, rediss:// or unix:// URL")
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError("a unix:// URL needs a socket path, e.g. unix:///run/redis.sock")
        return url
    if not parts.hostname:
        raise ValueError(f"a {parts.scheme}:// URL needs a host, e.g. redis://localhost:6379/0")
    del port
    db = parts.path.lstrip("/")
    if db and not db.isdigit():
        raise ValueError(f"the database in the path must be a number, got {db!r}")
    return url


class StoreSettings(BaseModel):
    """``[store]``: where breaker state lives."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str | None = Field(
        None,
        description="'memory', or redis://, rediss://, unix:// (unset: the registry's default)",
    )
    namespace: str = Field(DEFAULT_NAMESPACE, description="prefix of every Redis key")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else _check_store_url(value)

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if not _NAMESPACE.match(value):
            raise ValueError("use 1-64 letters, digits, '_', '.', ':' or '-'")
        return value


class UISettings(BaseModel):
    """``[ui]``: how breakers show up in the chat. Templates may use ``{service}``
    (the breaker's label), ``{name}``, ``{retry}`` (a sentence about when it will be
    retried) and ``{seconds}``; those about a failure also ``{error_type}`` and ``{error}``
    (the exception text, filled only when ``show_exception_text`` is true)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    notices: Literal["message", "toast", "off"] = Field(
        "message", description="how state changes are shown to sessions that used the breaker"
    )
    # Strict: lax pydantic would read "yes" or 1 as true, and this one may leak secrets.
    show_exception_text: bool = Field(
        False,
        strict=True,
        description="put exception text in tool steps and replies (may leak details)",
    )
    author: str = Field("Service status", min_length=1, description="author of notices")
    unavailable: str = Field(
        "Sorry, {service} is temporarily unavailable. {retry}",
        description="the guard's reply when a protected call was rejected, or failed and "
        "its circuit is open",
    )
    failed: str = Field(
        "Sorry, {service} did not answer this time. Please try again.",
        description="the guard's reply when a protected call failed and its circuit is "
        "still closed",
    )
    opened: str = Field(
        "{service} is temporarily unavailable. {retry}", description="notice: circuit opened"
    )
    half_opened: str = Field(
        "Trying {service} again.", description="notice: the circuit admits trial calls"
    )
    recovered: str = Field("{service} is available again.", description="notice: closed")
    retry_in: str = Field(
        "It will be retried in {seconds:.0f} s.", description="{retry} while a timeout runs"
    )
    retry_soon: str = Field("It will be retried shortly.", description="{retry} with no wait")
    retry_manual: str = Field(
        "It stays off until an operator turns it back on.", description="{retry} forced open"
    )
    error: str = Field(
        "Sorry, something went wrong while answering. Please try again.",
        description="the guard's reply to an error not raised by a protected call",
    )
    step_rejected: str = Field(
        "Circuit open: {service} is temporarily unavailable. {retry}",
        description="output of a tool step whose call was rejected",
    )
    step_failed: str = Field(
        "{service} failed ({error_type}).", description="output of a tool step that failed"
    )
    admin_key: str = Field("role", description="Chainlit user metadata key that marks admins")
    # Checked strictly below: lax pydantic turns admin_value = 1 into True.
    admin_value: str | bool = Field(
        "admin", description="value of admin_key (or an item of it, if a list) for admins"
    )

    @field_validator(
        "unavailable", "failed", "opened", "half_opened", "recovered", "retry_in",
        "retry_soon", "retry_manual", "error", "step_rejected", "step_failed",
    )  # fmt: skip
    @classmethod
    def _template(cls, value: str) -> str:
        try:
            # {seconds} is filled with whole seconds: checked with an int, as it is used
            value.format(service="s", name="n", retry="r", seconds=1, error_type="E", error="e")
        except (KeyError, IndexError, ValueError) as err:
            raise ValueError(
                f"bad template ({err!r}); use {{service}}, {{name}}, {{retry}}, {{seconds}}, "
                "{error_type} or {error}, and double braces for literal ones"
            ) from None
        return value

    @field_validator("admin_value", mode="before")
    @classmethod
    def _admin_value(cls, value: Any) -> Any:
        if not isinstance(value, (str, bool)):
            raise ValueError("must be a string or true/false")
        return value


class BreakerUI(BaseModel):
    """The chat side of one ``[breakers.<name>]`` table."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    label: str | None = Field(None, min_length=1, description="the name users see")
    fallback: str | None = Field(
        None, min_length=1, description="the guard's answer instead of the unavailable notice"
    )


class Settings(BaseModel):
    """The whole of ``breakers.toml``. ``breakers`` holds only the keys each table sets,
    so code config (``breaker("x", failure_threshold=3)``) still applies to the rest."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    store: StoreSettings = StoreSettings()
    defaults: BreakerConfig = BreakerConfig()
    breakers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    services: dict[str, BreakerUI] = Field(default_factory=dict)
    ui: UISettings = UISettings()
    source: str = Field("defaults", description="where these settings came from")

    def label(self, name: str) -> str:
        service = self.services.get(name)
        return service.label if service is not None and service.label else name

    def fallback(self, name: str) -> str | None:
        service = self.services.get(name)
        return service.fallback if service is not None else None


# -- loading --------------------------------------------------------------------------------


def _shown(value: Any) -> str:
    if isinstance(value, str) and "://" in value:
        value = redact_url(value)
    shown = repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def _error(err: ValidationError, source: str, table: str) -> ConfigError:
    lines = []
    for item in err.errors():
        field = ".".join(str(part) for part in item["loc"]) or "(table)"
        msg = item["msg"].removeprefix("Value error, ")
        lines.append(f"{source}: [{table}] {field}: {msg} (got {_shown(item.get('input'))})")
    return ConfigError("\n".join(lines))


def _table(data: Mapping[str, Any], key: str, source: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"{source}: [{key}] must be a table (got {_shown(value)})")
    return dict(value)


def settings_from_mapping(
    data: Mapping[str, Any], *, source: str = "settings", env: Mapping[str, str] | None = None
) -> Settings:
    """Validate parsed TOML into Settings. Every error is one ConfigError naming
    ``source``, the table, the field and the bad value. ``CHAINLIT_BREAKER_REDIS_URL``
    in ``env`` (default ``os.environ``) overrides ``[store] url``."""
    env = os.environ if env is None else env
    unknown = sorted(set(data) - {"store", "defaults", "breakers", "ui"})
    if unknown:
        raise ConfigError(
            f"{source}: unknown table or key {unknown[0]!r} "
            "(expected [store], [defaults], [ui] and [breakers.<name>])"
        )
    store_data = _table(data, "store", source)
    override = env.get(REDIS_URL_ENV, "").strip()
    try:
        store = StoreSettings.model_validate(store_data)
    except ValidationError as err:
        raise _error(err, source, "store") from None
    if override:
        try:
            store = StoreSettings.model_validate({**store_data, "url": override})
        except ValidationError as err:
            raise _error(err, f"${REDIS_URL_ENV}", "store") from None
    try:
        ui = UISettings.model_validate(_table(data, "ui", source))
    except ValidationError as err:
        raise _error(err, source, "ui") from None
    defaults_data = _table(data, "defaults", source)
    try:
        defaults = BreakerConfig.model_validate(defaults_data)
    except ValidationError as err:
        raise _error(err, source, "defaults") from None

    breakers: dict[str, dict[str, Any]] = {}
    services: dict[str, BreakerUI] = {}
    for name, table in _table(data, "breakers", source).items():
        where = f"breakers.{name}"
        if not isinstance(table, Mapping):
            raise ConfigError(f"{source}: [{where}] must be a table (got {_shown(table)})")
        if not name.strip():
            raise ConfigError(f"{source}: [breakers.{name!r}] a breaker needs a non-empty name")
        ui_part = {k: v for k, v in table.items() if k in _UI_KEYS}
        policy_part = {k: v for k, v in table.items() if k not in _UI_KEYS}
        try:
            services[name] = BreakerUI.model_validate(ui_part)
            # Checked on top of the defaults, since a table may lean on them (for example
            # slow_call_rate_threshold with a default slow_call_duration).
            merged = BreakerConfig.model_validate({**defaults_data, **policy_part})
        except ValidationError as err:
            raise _error(err, source, where) from None
        breakers[name] = {key: getattr(merged, key) for key in policy_part}
    return Settings(
        store=store,
        defaults=defaults,
        breakers=breakers,
        services=services,
        ui=ui,
        source=source,
    )


def find_settings_file(app_root: str | os.PathLike[str] | None = None) -> Path:
    """Where ``breakers.toml`` is looked for, found the way Chainlit finds its own
    ``config.toml``: under ``app_root``, else ``$CHAINLIT_APP_ROOT``, else the cwd."""
    root = app_root if app_root is not None else os.environ.get("CHAINLIT_APP_ROOT")
    return Path(root if root else os.getcwd()) / SETTINGS_FILE


def load_settings(
    path: str | os.PathLike[str] | None = None, *, env: Mapping[str, str] | None = None
) -> Settings:
    """Read and validate ``path`` (default: ``find_settings_file()``). A missing file
    gives the defaults; a bad one raises one ConfigError naming the file and the line
    or the table, field and value."""
    file = Path(path) if path is not None else find_settings_file()
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        return settings_from_mapping({}, source=f"{file} (missing: defaults)", env=env)
    except OSError as err:
        raise ConfigError(f"{file}: cannot read: {err.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"{file}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{file}: invalid TOML: {err}") from None
    return settings_from_mapping(data, source=str(file), env=env)


# -- applying --------------------------------------------------------------------------------

_lock = threading.Lock()
# The store each registry got from us and the settings it was built for: applying the
# same store settings again (a hot reload re-running the app) keeps the same store, so
# breakers and their state survive.
_applied: weakref.WeakKeyDictionary[BreakerRegistry, tuple[tuple[str, str], Store]] = (
    weakref.WeakKeyDictionary()
)


def _build_store(url: str, namespace: str) -> Store:
    if url == "memory":
        return MemoryStore()
    from .store.redis import RedisStore  # redis-py only when asked for

    return RedisStore.from_url(url, namespace=namespace)


# Old stores being closed on an event loop: referenced until done.
_closing: set[asyncio.Task[None]] = set()


def _retire(store: Store) -> None:
    """Close a store we built and replaced. On an event loop (a hot reload runs there)
    it closes in a task, so the loop is not held up by joining threads or flushing."""
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is None:
        try:
            store.close()
        except Exception:  # closing the old store must not fail the new settings
            log.warning("chainlit_breaker: could not close the old store", exc_info=True)
        return

    async def close() -> None:
        try:
            await store.aclose()
        except Exception:
            log.warning("chainlit_breaker: could not close the old store", exc_info=True)

    task = loop.create_task(close())
    _closing.add(task)
    task.add_done_callback(_closing.discard)


def apply_settings(settings: Settings, registry: BreakerRegistry | None = None) -> None:
    """Configure ``registry`` (the default one if None) from ``settings``.

    Idempotent: applying equal store settings again keeps the store built last time
    (while the registry still uses it), so running this on every hot reload is safe.
    Changed store settings build a new store, and the one built here before is closed
    once the registry has moved to the new one (breakers still running a call on the
    old one fall back to local state; nothing raises). Without ``[store] url`` the
    registry's store is left alone.
    """
    reg = default_registry if registry is None else registry
    url = settings.store.url
    with _lock:
        if url is None:
            reg.configure(defaults=settings.defaults, breakers=settings.breakers)
            return
        key = (url, settings.store.namespace)
        previous = _applied.get(reg)
        current = reg.configured_store
        built: Store | None = None
        if previous is not None and previous[0] == key and previous[1] is current:
            store = previous[1]
        else:
            store = built = _build_store(url, settings.store.namespace)
        try:
            reg.configure(store=store, defaults=settings.defaults, breakers=settings.breakers)
        except BaseException:  # bad config: the registry keeps its old store, still open
            if built is not None:
                _retire(built)
            raise
        if built is not None:
            _applied[reg] = (key, built)
            if previous is not None:
                _retire(previous[1])
