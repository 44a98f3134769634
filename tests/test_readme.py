"""The README's examples run: every ```python block marked `<!-- test: run -->`.

Keeps the documented API honest; each block runs in a fresh namespace and registry.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import chainlit_breaker

README = Path(__file__).resolve().parent.parent / "README.md"
_BLOCK = re.compile(r"<!-- test: run -->\s*```python\n(.*?)```", re.S)


def _blocks() -> list[str]:
    return _BLOCK.findall(README.read_text(encoding="utf-8"))


def test_readme_has_runnable_examples() -> None:
    assert len(_blocks()) >= 4


@pytest.mark.parametrize("index", range(len(_blocks())))
def test_readme_example_runs(index: int) -> None:
    chainlit_breaker.registry.clear()
    code = _blocks()[index]
    exec(compile(code, f"README.md[example {index}]", "exec"), {"__name__": "readme"})
