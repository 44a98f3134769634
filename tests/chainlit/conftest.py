"""Fixtures for the Chainlit integration: a real ChainlitContext over a mocked websocket
session (every UI event lands in ``session.emit.call_args_list``) and a clean slate."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any
from unittest.mock import AsyncMock, Mock

import pytest


@pytest.fixture(autouse=True)
def _forget_integration() -> Iterator[None]:
    from chainlit_breaker.integrations.chainlit import config

    config._forget()
    yield
    config._forget()


def make_session(sid: str = "session-1", user: Any = None) -> Any:
    from chainlit.session import WebsocketSession

    session = Mock(spec=WebsocketSession)
    session.id = sid
    session.thread_id = f"thread-{sid}"
    session.user = user
    session.emit = AsyncMock()
    session.has_first_interaction = True
    return session


@pytest.fixture
async def session() -> AsyncIterator[Any]:
    """A mocked websocket session with a real ChainlitContext set for this test."""
    from chainlit.context import ChainlitContext, context_var

    sess = make_session()
    token = context_var.set(ChainlitContext(sess))
    yield sess
    context_var.reset(token)


def events(session: Any) -> list[tuple[str, Any]]:
    """Every (event, payload) emitted to ``session`` so far."""
    return [(c.args[0], c.args[1]) for c in session.emit.call_args_list]
