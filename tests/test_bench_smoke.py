"""The benchmarks still run: each one's --quick mode in a subprocess, a row for every breaker.

A rename in the package or a peer's upgrade that breaks a benchmark fails here, not on the
day someone wants the figures.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_bench(script: str, tmp_path: Path, timeout: float) -> tuple[str, dict[str, Any]]:
    out = tmp_path / "out.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, f"{script} exited {proc.returncode}:\n{proc.stderr[-4000:]}"
    return proc.stdout, json.loads(out.read_text())


def printed(stdout: str) -> set[tuple[str, str]]:
    """(breaker, path) of every row of bench_redis.py's main table (path in 14 columns,
    breaker in the next 36)."""
    return {
        (line[14:50].strip(), line[:14].strip())
        for line in stdout.splitlines()
        if line[:14].strip().endswith(("_sync", "_async"))
    }


@pytest.mark.slow
def test_overhead_benchmark_runs(tmp_path: Path) -> None:
    stdout, data = run_bench("bench_overhead.py", tmp_path, timeout=90)
    breakers = [
        "chainlit_breaker",
        "chainlit_breaker call_sync",
        "minimal (15 lines)",
        "pybreaker",
        "circuitbreaker",
        "aiobreaker",
        "purgatory",
    ]
    lines = stdout.splitlines()
    for name in breakers:
        assert any(line.startswith(f"{name} ") for line in lines), f"no row for {name}"
    overhead = data["overhead"]
    assert isinstance(overhead, dict)
    assert set(overhead) >= set(breakers)
    ours = overhead["chainlit_breaker"]
    assert set(ours) == {"closed_sync", "closed_async", "open_sync", "open_async"}


@pytest.mark.slow
def test_redis_benchmark_runs(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    stdout, data = run_bench("bench_redis.py", tmp_path, timeout=120)
    rows = data["rows"]
    assert isinstance(rows, list)
    paths = {
        "chainlit_breaker": [
            "closed_sync",
            "closed_async",
            "failure_sync",
            "failure_async",
            "open_sync",
            "open_async",
        ],
        "chainlit_breaker call_sync/call": [
            "closed_sync",
            "closed_async",
            "failure_sync",
            "failure_async",
            "open_sync",
            "open_async",
        ],
        "pybreaker + CircuitRedisStorage": ["closed_sync", "failure_sync", "open_sync"],
        "purgatory + AsyncRedisUnitOfWork": ["closed_async", "failure_async", "open_async"],
        "aiobreaker + CircuitRedisStorage": ["closed_async", "failure_async", "open_async"],
    }
    measured = {(r["breaker"], r["path"]): r for r in rows}
    shown = printed(stdout)
    for name, wanted in paths.items():
        for path in wanted:
            row = measured.get((name, path))
            assert row is not None, f"no {path} row for {name}"
            assert row["n"] > 0, row
            assert row["mean_us"] > 0, row
            # Every peer path talks to Redis: a zero would mean it ran on memory instead.
            if not name.startswith("chainlit_breaker"):
                assert row["cmds_per_call"] >= 1, row
            assert (name, path) in shown, f"{path} row for {name} is not printed"
    # Our failures reach Redis (one script call each), and the broken peer is reported.
    assert measured[("chainlit_breaker", "failure_sync")]["cmds_per_call"] >= 1
    broken = measured[("purgatory + SyncRedisUnitOfWork", "closed_sync")]
    assert broken["n"] == 0
    assert broken["note"]
    assert ("purgatory + SyncRedisUnitOfWork", "closed_sync") in shown

    outage = {o["breaker"]: o for o in data["outage"]}
    assert set(outage) == {
        "chainlit_breaker (sync)",
        "chainlit_breaker (async)",
        "pybreaker (redis-py defaults)",
    }
    for name in ("chainlit_breaker (sync)", "chainlit_breaker (async)"):
        assert outage[name]["completed"] == outage[name]["calls"], outage[name]
    outage_lines = stdout.split("outage:", 1)[1].splitlines()
    for name in outage:
        assert any(line.startswith(f"{name} ") for line in outage_lines), f"no row for {name}"
