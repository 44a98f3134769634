"""``chainlit-breaker init``: the example file it writes is valid and documented, and it
never overwrites without --force."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from chainlit_breaker.cli import EXAMPLE, main
from chainlit_breaker.settings import UISettings, load_settings


def test_init_writes_a_valid_commented_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init", "--app-root", str(tmp_path)]) == 0
    path = tmp_path / ".chainlit" / "breakers.toml"
    assert capsys.readouterr().out.strip() == f"Wrote {path}"
    s = load_settings(path, env={})
    assert s.store.url is None  # left out: the store given in code stays
    assert s.defaults.failure_threshold == 5
    text = path.read_text()
    # Every UI key is documented in the example.
    for key in UISettings.model_fields:
        assert f"{key} =" in text, key
    # Uncommenting the optional lines still gives a valid file.
    uncommented = "\n".join(
        line[2:] if re.match(r"# [a-z_]+ = ", line) else line for line in EXAMPLE.splitlines()
    ).replace('ignore_exceptions = ["ValueError"]', "")
    uncommented = uncommented.replace("# [breakers.weather-api]", "[breakers.weather-api]")
    data = tomllib.loads(uncommented)
    assert data["breakers"]["weather-api"]["label"] == "the weather service"
    path.write_text(uncommented)
    s = load_settings(path, env={})
    assert s.breakers["weather-api"] == {"failure_threshold": 3, "reset_timeout": 10.0}


def test_init_refuses_to_overwrite_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / ".chainlit" / "breakers.toml"
    path.parent.mkdir()
    path.write_text("# mine\n")
    assert main(["init", "--app-root", str(tmp_path)]) == 1
    assert "already exists; use --force" in capsys.readouterr().err
    assert path.read_text() == "# mine\n"
    assert main(["init", "--app-root", str(tmp_path), "--force"]) == 0
    assert path.read_text() == EXAMPLE


def test_status_needs_a_shared_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--app-root", str(tmp_path)]) == 2
    assert "not a Redis URL" in capsys.readouterr().err


def test_console_script_uses_chainlit_app_root(tmp_path: Path) -> None:
    exe = shutil.which("chainlit-breaker", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("the console script is not installed (pip install -e .)")
    env = {**os.environ, "CHAINLIT_APP_ROOT": str(tmp_path)}
    out = subprocess.run([exe, "init"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / ".chainlit" / "breakers.toml").read_text() == EXAMPLE


@pytest.mark.slow  # starts a redis-server
def test_status_open_close_reset_through_redis(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from chainlit_breaker import BreakerRegistry, BreakerState
    from chainlit_breaker.settings import apply_settings
    from tests.redis.conftest import RedisServer

    server = RedisServer()
    try:
        path = tmp_path / ".chainlit" / "breakers.toml"
        path.parent.mkdir()
        path.write_text(
            f'[store]\nurl = "{server.url}"\nnamespace = "cli"\n'
            "[breakers.weather-api]\nfailure_threshold = 1\n"
        )
        app = BreakerRegistry()  # what a running app sees
        apply_settings(load_settings(path, env={}), app)
        root = ["--app-root", str(tmp_path)]

        def cli(*args: str) -> str:
            assert main([*args, *root]) == 0
            return capsys.readouterr().out

        def app_sees(name: str, state: BreakerState) -> bool:
            # The app learns of the CLI's change by pub/sub: a moment later, not at once.
            deadline = time.monotonic() + 2.0
            while app.get(name).state is not state and time.monotonic() < deadline:
                time.sleep(0.01)
            return app.get(name).state is state

        assert cli("status").split()[:2] == ["weather-api", "closed"]
        assert cli("open", "weather-api") == "weather-api: forced_open\n"
        # The app process sees the operator's command through the shared store.
        assert app_sees("weather-api", BreakerState.FORCED_OPEN)
        status = cli("status", "weather-api")
        assert status.split()[:2] == ["weather-api", "forced_open"]
        assert "retry in manual" in status
        assert cli("close", "weather-api") == "weather-api: closed\n"
        assert app_sees("weather-api", BreakerState.CLOSED)
        assert cli("reset", "weather-api") == "weather-api: closed\n"

        # A typo must not create a breaker nobody uses: refused, with the known names.
        assert main(["open", "wether-api", *root]) == 1
        out = capsys.readouterr()
        assert out.out == ""
        assert out.err == (
            "error: no breaker called 'wether-api' in breakers.toml or in the store "
            "(known: weather-api); pass --create to open it anyway\n"
        )
        assert main(["reset", "wether-api", *root]) == 1  # nothing was written
        assert "no breaker called 'wether-api'" in capsys.readouterr().err
        # A breaker configured only in code is known once it has state in the store.
        app.get("search").force_open()
        assert cli("reset", "search") == "search: closed\n"
        assert app_sees("search", BreakerState.CLOSED)
        assert cli("open", "new-one", "--create") == "new-one: forced_open\n"
        assert app_sees("new-one", BreakerState.FORCED_OPEN)
        app.clear()
    finally:
        server.stop()
