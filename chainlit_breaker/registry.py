"""Named breakers, built lazily from the registry's store, defaults and per-name config.

Decorating at import time works before configuration: a proxy asks the registry for its
breaker on first use, and again whenever the registry was reconfigured.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from .breaker import Fallback, PersistentCircuitBreaker, live_breakers
from .config import BreakerConfig, build_config
from .core.clock import Clock
from .events import Listener
from .store.base import Store
from .store.memory import MemoryStore

__all__ = ["BreakerRegistry", "REDIS_URL_ENV", "configure", "get_breaker", "registry", "reset_all"]

log = logging.getLogger("chainlit_breaker")

REDIS_URL_ENV = "CHAINLIT_BREAKER_REDIS_URL"

# Process-wide, so a generation number is never reused, not even by a cleared registry.
_generations = itertools.count(1)


class _Keep:
    """Marker: leave this setting as it is."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Any = _Keep()


def default_store() -> Store:
    """The store used when none was configured: Redis if ``CHAINLIT_BREAKER_REDIS_URL``
    is set, else a fresh MemoryStore."""
    url = os.environ.get(REDIS_URL_ENV, "").strip()
    if url:
        from .store.redis import RedisStore

        return RedisStore.from_url(url)
    return MemoryStore()


def _overrides(value: BreakerConfig | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(value, BreakerConfig):
        return {name: getattr(value, name) for name in value.model_fields_set}
    return dict(value)


class BreakerRegistry:
    """Breakers by name. Configuration precedence, lowest first:

    1. ``defaults`` (a BreakerConfig; the library defaults if unset);
    2. keyword arguments given in code: ``breaker("name", failure_threshold=3)``;
    3. per-name config given to ``configure(breakers={...})`` (for example from
       ``.chainlit/breakers.toml``), so operators can tune without editing code.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._store: Store | None = None
        self._clock: Clock | None = None
        self._defaults = BreakerConfig()
        self._configured: dict[str, dict[str, Any]] = {}
        self._in_code: dict[str, dict[str, Any]] = {}
        # Where each code registration came from: (module name, a token of that run of
        # the module). A hot reload runs the module again with a new token, so what its
        # last run registered can be told from what this run registers.
        self._origins: dict[str, tuple[str, object]] = {}
        self._forgotten: set[str] = set()
        self._fallbacks: dict[str, Fallback] = {}
        self._breakers: dict[str, PersistentCircuitBreaker] = {}
        self._listeners: tuple[Listener, ...] = ()
        self.generation = next(_generations)
        """Changed whenever built breakers were replaced; proxies re-resolve on change."""

    # -- configuration --------------------------------------------------------------

    def configure(
        self,
        *,
        store: Store | None = KEEP,
        defaults: BreakerConfig | Mapping[str, Any] | None = KEEP,
        breakers: Mapping[str, BreakerConfig | Mapping[str, Any]] | None = KEEP,
        clock: Clock | None = KEEP,
    ) -> None:
        """Change what breakers are built from. Arguments left out are kept; ``None``
        restores the default. Breakers already built are rebuilt on their next use if
        the store or clock changed, or reconfigured in place if only config changed
        (their state is kept)."""
        with self._lock:
            # Validate every known name against the new settings before changing anything:
            # a bad configure leaves the registry as it was, and no ConfigError can surface
            # later out of a protected call.
            old = (self._defaults, self._configured)
            if defaults is not KEEP:
                if defaults is None:
                    self._defaults = BreakerConfig()
                elif isinstance(defaults, BreakerConfig):
                    self._defaults = defaults
                else:
                    self._defaults = build_config(defaults, source="defaults")
            if breakers is not KEEP:
                self._configured = {name: _overrides(cfg) for name, cfg in (breakers or {}).items()}
            try:
                for name in sorted({*self._in_code, *self._configured}):
                    self._compose(name)
            except BaseException:
                self._defaults, self._configured = old
                raise
            rebuild = False
            if store is not KEEP:
                if store is not self._store:
                    rebuild = True
                self._store = store
            if clock is not KEEP:
                if clock is not self._clock:
                    rebuild = True
                self._clock = clock
            if rebuild:
                self._breakers.clear()
                self.generation = next(_generations)
            else:
                for name, built in self._breakers.items():
                    built.reconfigure(self.config_for(name))

    def register(
        self,
        name: str,
        overrides: Mapping[str, Any],
        *,
        fallback: Fallback | None = None,
        origin: tuple[str, object] | None = None,
    ) -> None:
        """Record config given in code for ``name`` (the last registration wins, so a
        hot reload that re-runs the module replaces rather than duplicates). ``origin``
        names the run of the module that registers it (see ``forget_code_from``)."""
        with self._lock:
            previous = self._in_code.get(name)
            data = dict(overrides)
            if data:
                self._compose(name, in_code=data)
            if previous is not None and previous.keys() != data.keys():
                log.debug("breaker %r: code config replaced (%s -> %s)", name, previous, data)
            self._in_code[name] = data
            self._forgotten.discard(name)
            if origin is not None:
                self._origins[name] = origin
            else:
                self._origins.pop(name, None)
            if fallback is not None:
                self._fallbacks[name] = fallback
            built = self._breakers.get(name)
            if built is not None:
                built.reconfigure(self.config_for(name))
                if fallback is not None:
                    built.fallback = fallback

    def forget_code_from(self, module: str, run: object) -> list[str]:
        """Drop the code config that an earlier run of ``module`` registered (not run
        ``run``, the current one): a hot reload re-runs the module, and what it no longer
        says (a removed keyword, a renamed breaker) must not linger. Breakers built for
        those names go back to their TOML and default config; a name nothing registers
        again leaves ``names()``. Returns the names dropped."""
        with self._lock:
            stale = [
                n for n, (mod, tok) in self._origins.items() if mod == module and tok is not run
            ]
            for name in stale:
                del self._origins[name]
                self._in_code.pop(name, None)
                self._forgotten.add(name)
                built = self._breakers.get(name)
                if built is not None:
                    built.reconfigure(self.config_for(name))
            return stale

    def _compose(
        self,
        name: str,
        *,
        in_code: Mapping[str, Any] | None = None,
        configured: Mapping[str, Any] | None = None,
    ) -> BreakerConfig:
        code = self._in_code.get(name, {}) if in_code is None else in_code
        conf = self._configured.get(name, {}) if configured is None else configured
        cfg = self._defaults.with_overrides(code, source=f"breaker {name!r} (code)")
        return cfg.with_overrides(conf, source=f"breaker {name!r}")

    def config_for(self, name: str) -> BreakerConfig:
        """The effective config of ``name`` (see the precedence above)."""
        with self._lock:
            return self._compose(name)

    @property
    def defaults(self) -> BreakerConfig:
        return self._defaults

    @property
    def configured_store(self) -> Store | None:
        """The store set by ``configure`` or built on first use; None before either."""
        return self._store

    @property
    def store(self) -> Store:
        """The store breakers are built on (created on first use)."""
        with self._lock:
            if self._store is None:
                self._store = default_store()
            return self._store

    # -- breakers -------------------------------------------------------------------------

    def get(self, name: str) -> PersistentCircuitBreaker:
        """The breaker called ``name``, built on first use."""
        built = self._breakers.get(name)
        if built is not None:
            return built
        with self._lock:
            built = self._breakers.get(name)
            if built is None:
                built = PersistentCircuitBreaker(
                    name,
                    self.config_for(name),
                    self.store,
                    clock=self._clock,
                    fallback=self._fallbacks.get(name),
                    listeners=self._listeners,
                )
                self._breakers[name] = built
            return built

    def __contains__(self, name: object) -> bool:
        return name in self._breakers

    def breakers(self) -> dict[str, PersistentCircuitBreaker]:
        """Every breaker built so far, by name."""
        with self._lock:
            return dict(self._breakers)

    def names(self) -> list[str]:
        """Every name known from code, configuration or use, sorted (less those whose
        code went away in a hot reload and that nothing else names)."""
        with self._lock:
            known = {*self._breakers, *self._in_code, *self._configured}
            return sorted(known - (self._forgotten - set(self._configured)))

    def add_listener(self, listener: Listener) -> None:
        """Give ``listener`` the events of every breaker, present and future (idempotent)."""
        with self._lock:
            if listener not in self._listeners:
                self._listeners = (*self._listeners, listener)
            for built in self._breakers.values():
                built.add_listener(listener)

    def remove_listener(self, listener: Listener) -> None:
        with self._lock:
            self._listeners = tuple(x for x in self._listeners if x != listener)
            for built in self._breakers.values():
                built.remove_listener(listener)

    def reset_all(self) -> None:
        """Reset every built breaker to a fresh CLOSED state (for test isolation)."""
        for built in self.breakers().values():
            built.reset()

    def clear(self, *, close_store: bool = True) -> None:
        """Forget every breaker, code registration, listener and setting: a new registry."""
        with self._lock:
            store = self._store
            self.__init__()  # type: ignore[misc]
        if close_store and store is not None:
            store.close()

    def iter_status(self) -> Iterable[tuple[str, PersistentCircuitBreaker]]:
        for name in self.names():
            yield name, self.get(name)


registry = BreakerRegistry()
"""The process-wide default registry that ``CircuitBreakerProxy`` and ``breaker`` use."""


def configure(
    *,
    store: Store | None = KEEP,
    defaults: BreakerConfig | Mapping[str, Any] | None = KEEP,
    breakers: Mapping[str, BreakerConfig | Mapping[str, Any]] | None = KEEP,
    clock: Clock | None = KEEP,
) -> None:
    """Configure the default registry; see :meth:`BreakerRegistry.configure`."""
    registry.configure(store=store, defaults=defaults, breakers=breakers, clock=clock)


def get_breaker(name: str) -> PersistentCircuitBreaker:
    """The breaker called ``name`` in the default registry."""
    return registry.get(name)


def reset_all() -> None:
    """Reset every breaker of this process to a fresh CLOSED state: the default
    registry's, other registries' and standalone ones (use between tests). A breaker on a
    shared store is reset there too, for every process."""
    for built in live_breakers():
        built.reset()
