"""Finds and loads ``.chainlit/breakers.toml`` for a Chainlit app and keeps the settings
in force; ``setup()`` is safe to call on every hot reload."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

from chainlit.config import config_dir

from ...registry import BreakerRegistry
from ...registry import registry as default_registry
from ...settings import Settings, apply_settings, load_settings
from . import notices

__all__ = ["current_registry", "current_settings", "ensure_setup", "settings_path", "setup"]

_lock = threading.Lock()
_settings: Settings | None = None
_registry: BreakerRegistry = default_registry


def settings_path() -> Path:
    """``breakers.toml`` next to Chainlit's own ``config.toml`` (``$CHAINLIT_APP_ROOT`` or
    the cwd, as Chainlit resolved it when it was imported)."""
    return Path(config_dir) / "breakers.toml"


def setup(
    path: str | os.PathLike[str] | None = None,
    *,
    registry: BreakerRegistry | None = None,
    settings: Settings | None = None,
) -> Settings:
    """Load ``breakers.toml`` (or use ``settings``), configure the registry and install
    the chat notices. Call it at the top of the app; calling it again (a hot reload)
    re-reads the file without duplicating anything or losing breaker state."""
    global _settings, _registry
    loaded = settings if settings is not None else load_settings(path or settings_path())
    reg = registry if registry is not None else default_registry
    with _lock:
        apply_settings(loaded, reg)
        notices.install(reg)
        _settings, _registry = loaded, reg
        caller = sys._getframe(1).f_globals
        if caller.get("__name__") != __name__:
            _forget_last_run(reg, caller)
    return loaded


def _forget_last_run(registry: BreakerRegistry, caller: dict[str, object]) -> None:
    """The app module called setup(): a hot reload runs it again from the top, so what
    its previous run registered in code and this run does not say again must go (a
    removed keyword, a renamed breaker). Registrations of this run are kept, whether
    they come before or after this call."""
    from .steps import module_run

    run = module_run(caller)
    if run is not None:
        registry.forget_code_from(*run)


def ensure_setup() -> Settings:
    """The settings in force, running ``setup()`` with the defaults first if needed."""
    current = _settings
    if current is None:
        return setup()
    notices.install(_registry)  # cheap when installed; the registry may have been cleared
    return current


def current_settings() -> Settings:
    """The settings in force (``setup()`` with the defaults if it never ran)."""
    current = _settings
    return current if current is not None else setup()


def current_registry() -> BreakerRegistry:
    return _registry


def _forget() -> None:
    """Back to "never set up" (for tests)."""
    global _settings, _registry
    with _lock:
        _settings, _registry = None, default_registry
    notices._forget()
