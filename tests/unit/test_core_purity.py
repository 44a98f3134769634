"""The core is pure: it imports nothing that does I/O, schedules work or reads a clock, and
nothing of the project outside itself (tests/unit/test_machine.py drives it with numbers)."""

from __future__ import annotations

import ast
from pathlib import Path

import chainlit_breaker.core

CORE = Path(chainlit_breaker.core.__file__).parent
# What the core may import: data modelling and arithmetic only.
ALLOWED = {"__future__", "dataclasses", "enum", "math", "typing", "collections.abc"}
# Names that would mean reading a clock or randomness, whatever module they came from.
FORBIDDEN_CALLS = {"time", "monotonic", "perf_counter", "random", "sleep", "open", "print"}


def _modules() -> list[Path]:
    files = sorted(CORE.glob("*.py"))
    assert len(files) >= 5, files  # __init__, clock, machine, policy, state
    return files


def test_core_imports_only_pure_modules_and_itself() -> None:
    for path in _modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: must stay inside the core package
                    assert node.level == 1, f"{path.name} reaches outside the core"
                    continue
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name in ALLOWED, f"{path.name} imports {name}"


def test_core_calls_no_clock_and_does_no_io() -> None:
    for path in _modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                assert name not in FORBIDDEN_CALLS, f"{path.name}:{node.lineno} calls {name}()"
