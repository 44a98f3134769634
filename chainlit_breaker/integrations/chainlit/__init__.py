"""The Chainlit integration: ``.chainlit/breakers.toml``, tool steps, an on_message guard,
LLM streaming and breaker status in the chat. The only part of the package that imports chainlit.

    from chainlit_breaker.integrations import chainlit as cb
"""

from __future__ import annotations

from .config import current_registry, current_settings, ensure_setup, settings_path, setup
from .notices import (
    breakers_table,
    command_reply,
    handle_command,
    is_admin,
    is_breakers_command,
    sessions_using,
)
from .steps import guard, llm, stream, stream_message, tool

__all__ = [
    "breakers_table",
    "command_reply",
    "current_registry",
    "current_settings",
    "ensure_setup",
    "guard",
    "handle_command",
    "is_admin",
    "is_breakers_command",
    "llm",
    "sessions_using",
    "settings_path",
    "setup",
    "stream",
    "stream_message",
    "tool",
]
