"""Suite-wide set-up: keep Chainlit's import-time side effects in a temporary folder and
give every test a fresh default registry."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

# Chainlit writes .chainlit/config.toml and .files/ under APP_ROOT when it is imported;
# point it at a throwaway folder before anything can import it.
os.environ.setdefault("CHAINLIT_APP_ROOT", tempfile.mkdtemp(prefix="cb-app-root-"))
# A developer's own setting must not turn the memory-store tests into Redis tests.
os.environ.pop("CHAINLIT_BREAKER_REDIS_URL", None)

import pytest

import chainlit_breaker


@pytest.fixture(autouse=True)
def _fresh_default_registry() -> Iterator[None]:
    chainlit_breaker.registry.clear()
    yield
    chainlit_breaker.registry.clear()
