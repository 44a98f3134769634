"""breakers.toml: a valid file, a missing file and a table of bad files with the exact
error each must produce; the Redis URL rules; the env override; applying to a registry."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chainlit_breaker import BreakerRegistry, ConfigError, MemoryStore
from chainlit_breaker.settings import (
    Settings,
    apply_settings,
    find_settings_file,
    load_settings,
    redact_url,
)

VALID = """
[store]
url = "memory"
namespace = "demo"

[defaults]
failure_threshold = 4
reset_timeout = 20

[ui]
notices = "toast"
show_exception_text = false
opened = "{service} is down. {retry}"

[breakers.weather-api]
failure_threshold = 2
reset_timeout = 5.5
failure_exceptions = ["TimeoutError", "ConnectionError"]
label = "the weather service"
fallback = "I cannot check the weather right now."

[breakers.llm]
slow_call_duration = 2.0
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / ".chainlit" / "breakers.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_valid_file(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, VALID), env={})
    assert s.store.url == "memory"
    assert s.store.namespace == "demo"
    assert s.defaults.failure_threshold == 4
    assert s.defaults.reset_timeout == 20
    assert s.ui.notices == "toast"
    assert s.ui.show_exception_text is False
    assert s.ui.opened == "{service} is down. {retry}"
    # Only the keys a table sets, so code config still fills the rest.
    assert s.breakers["weather-api"] == {
        "failure_threshold": 2,
        "reset_timeout": 5.5,
        "failure_exceptions": (TimeoutError, ConnectionError),
    }
    assert s.breakers["llm"] == {"slow_call_duration": 2.0}
    assert s.label("weather-api") == "the weather service"
    assert s.label("llm") == "llm"
    assert s.fallback("weather-api") == "I cannot check the weather right now."
    assert s.fallback("llm") is None


def test_missing_file_gives_defaults(tmp_path: Path) -> None:
    s = load_settings(tmp_path / ".chainlit" / "breakers.toml", env={})
    assert s.store.url is None
    assert s.store.namespace == "chainlit_breaker"
    assert s.defaults.failure_threshold == 5
    assert s.breakers == {}
    assert s.ui.notices == "message"
    assert s.ui.show_exception_text is False
    assert "missing" in s.source


def test_file_is_found_like_chainlit_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHAINLIT_APP_ROOT", str(tmp_path / "app"))
    assert find_settings_file() == tmp_path / "app" / ".chainlit" / "breakers.toml"
    monkeypatch.delenv("CHAINLIT_APP_ROOT")
    monkeypatch.chdir(tmp_path)
    assert find_settings_file() == tmp_path / ".chainlit" / "breakers.toml"
    write(tmp_path, "[defaults]\nreset_timeout = 7\n")
    assert load_settings(env={}).defaults.reset_timeout == 7


BAD = [
    pytest.param(
        '[breakers.weather-api]\nfailure_threshold = "five"\n',
        "[breakers.weather-api] failure_threshold: Input should be a valid integer (got 'five')",
        id="wrong-type",
    ),
    pytest.param(
        "[breakers.weather-api]\nfailure_threshold = true\n",
        "[breakers.weather-api] failure_threshold: Input should be a valid integer (got True)",
        id="bool-for-an-int",
    ),
    pytest.param(
        "[defaults]\nreset_timeout = true\n",
        "[defaults] reset_timeout: Input should be a valid number (got True)",
        id="bool-for-a-float",
    ),
    pytest.param(
        '[breakers.weather-api]\nreset_timeout = "30"\n',
        "[breakers.weather-api] reset_timeout: Input should be a valid number (got '30')",
        id="string-for-a-float",
    ),
    pytest.param(
        "[breakers.weather-api]\ntrial_lease_ttl = inf\n",
        "[breakers.weather-api] trial_lease_ttl: Input should be a finite number (got inf)",
        id="infinite-lease",
    ),
    pytest.param(
        '[breakers.""]\nfailure_threshold = 3\n',
        "[breakers.''] a breaker needs a non-empty name",
        id="empty-breaker-name",
    ),
    pytest.param(
        "[breakers.weather-api]\nfailure_treshold = 3\n",
        "[breakers.weather-api] failure_treshold: Extra inputs are not permitted (got 3)",
        id="unknown-breaker-field",
    ),
    pytest.param(
        "[breakers.weather-api]\nreset_timeout = -1\n",
        "[breakers.weather-api] reset_timeout: Input should be greater than 0 (got -1)",
        id="negative-timeout",
    ),
    pytest.param(
        "[defaults]\nreset_timeout = -0.5\n",
        "[defaults] reset_timeout: Input should be greater than 0 (got -0.5)",
        id="negative-default-timeout",
    ),
    pytest.param(
        "[breakers.weather-api\nfailure_threshold = 3\n",
        "invalid TOML: Expected ']' at the end of a table declaration (at line 1, column 22)",
        id="toml-does-not-parse",
    ),
    pytest.param(
        '[store]\nurl = "http://cache.internal:6379"\n',
        "[store] url: must be 'memory' or a redis://, rediss:// or unix:// URL "
        "(got 'http://cache.internal:6379')",
        id="bad-redis-url-scheme",
    ),
    pytest.param(
        '[store]\nurl = "redis://:hunter2@cache.internal:notaport/0"\n',
        "[store] url: not a valid URL (the port must be a number from 0 to 65535) "
        "(got 'redis://:***@cache.internal:notaport/0')",
        id="bad-redis-url-port-secret-redacted",
    ),
    pytest.param(
        '[store]\nurl = "redis://default:hunter2/0"\n',
        "[store] url: not a valid URL (the port must be a number from 0 to 65535) "
        "(got 'redis://***/0')",
        id="password-without-host-redacted",
    ),
    pytest.param(
        '[store]\nurl = "redis://cache.internal:6379/zero"\n',
        "[store] url: the database in the path must be a number, got 'zero' "
        "(got 'redis://cache.internal:6379/zero')",
        id="bad-redis-url-db",
    ),
    pytest.param(
        '[ui]\nnotices = "popup"\n',
        "[ui] notices: Input should be 'message', 'toast' or 'off' (got 'popup')",
        id="bad-notice-mode",
    ),
    pytest.param(
        '[ui]\nopened = "{servce} is down"\n',
        "[ui] opened: bad template (KeyError('servce'));",
        id="bad-template",
    ),
    pytest.param(
        "[breakers.weather-api]\nlabel = 3\n",
        "[breakers.weather-api] label: Input should be a valid string (got 3)",
        id="bad-label",
    ),
    pytest.param(
        '[ui]\nshow_exception_text = "yes"\n',
        "[ui] show_exception_text: Input should be a valid boolean (got 'yes')",
        id="exception-text-flag-not-a-bool",
    ),
    pytest.param(
        "[ui]\nadmin_value = 1\n",
        "[ui] admin_value: must be a string or true/false (got 1)",
        id="admin-value-not-a-string",
    ),
    pytest.param(
        "[breakers]\nweather-api = 3\n",
        "[breakers.weather-api] must be a table (got 3)",
        id="breaker-not-a-table",
    ),
    pytest.param(
        "[breaker.weather-api]\nfailure_threshold = 3\n",
        "unknown table or key 'breaker'",
        id="unknown-table",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD)
def test_bad_file_names_file_table_field_and_value(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    message = str(info.value)
    assert message.count("\n") == 0, message  # one error, one line
    assert message.startswith(f"{path}: "), message
    assert expected in message, message
    assert "hunter2" not in message


def test_env_url_overrides_file_and_is_validated(tmp_path: Path) -> None:
    path = write(tmp_path, '[store]\nurl = "memory"\nnamespace = "x"\n')
    env = {"CHAINLIT_BREAKER_REDIS_URL": "rediss://user:pw@redis.example:6380/2"}
    s = load_settings(path, env=env)
    assert s.store.url == "rediss://user:pw@redis.example:6380/2"
    assert s.store.namespace == "x"
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={"CHAINLIT_BREAKER_REDIS_URL": "redis:///"})
    assert str(info.value) == (
        "$CHAINLIT_BREAKER_REDIS_URL: [store] url: a redis:// URL needs a host, "
        "e.g. redis://localhost:6379/0 (got 'redis:///')"
    )


@pytest.mark.parametrize(
    "url",
    ["memory", "redis://localhost", "redis://localhost:6379/0", "rediss://u:p@h:1/15",
     "unix:///run/redis.sock", "unix:///tmp/r.sock?db=1"],
)  # fmt: skip
def test_good_store_urls(tmp_path: Path, url: str) -> None:
    s = load_settings(write(tmp_path, f'[store]\nurl = "{url}"\n'), env={})
    assert s.store.url == url


def test_redact_url() -> None:
    assert redact_url("redis://:s3cret@h:6379/0") == "redis://:***@h:6379/0"
    assert redact_url("redis://h:6379/0") == "redis://h:6379/0"


def test_apply_settings_configures_registry_and_keeps_store_on_reapply(tmp_path: Path) -> None:
    reg = BreakerRegistry()
    s = load_settings(write(tmp_path, VALID), env={})
    apply_settings(s, reg)
    store = reg.store
    assert isinstance(store, MemoryStore)
    assert reg.config_for("weather-api").failure_threshold == 2
    assert reg.config_for("other").failure_threshold == 4
    brk = reg.get("weather-api")
    brk.force_open()
    # A hot reload applies the same settings again: same store, same breaker, same state.
    apply_settings(load_settings(write(tmp_path, VALID), env={}), reg)
    assert reg.store is store
    assert reg.get("weather-api") is brk
    assert brk.state.value == "forced_open"
    # A changed policy reconfigures in place.
    changed = VALID.replace("failure_threshold = 2", "failure_threshold = 9")
    apply_settings(load_settings(write(tmp_path, changed), env={}), reg)
    assert reg.get("weather-api") is brk
    assert brk.config.failure_threshold == 9


def test_apply_without_store_url_leaves_store_alone() -> None:
    reg = BreakerRegistry()
    mine = MemoryStore()
    reg.configure(store=mine)
    apply_settings(Settings(), reg)
    assert reg.store is mine


def test_redis_url_builds_a_redis_store_lazily() -> None:
    redis_mod = pytest.importorskip("chainlit_breaker.store.redis")
    if not hasattr(redis_mod, "RedisStore"):
        pytest.skip("the Redis store has not landed yet")
    reg = BreakerRegistry()
    s = Settings.model_validate({"store": {"url": "redis://127.0.0.1:1/0", "namespace": "t"}})
    apply_settings(s, reg)
    assert isinstance(reg.store, redis_mod.RedisStore)
    reg.clear()


def test_import_does_not_import_chainlit() -> None:
    code = (
        "import sys, chainlit_breaker, chainlit_breaker.settings, chainlit_breaker.cli\n"
        "import chainlit_breaker.integrations\n"
        "bad = sorted(m for m in sys.modules if m == 'chainlit' or m.startswith('chainlit.'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_readme_documents_every_key() -> None:
    from chainlit_breaker.config import BreakerConfig
    from chainlit_breaker.settings import BreakerUI, StoreSettings, UISettings

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Using it in a Chainlit app", 1)[1]
    keys = [*StoreSettings.model_fields, *UISettings.model_fields, *BreakerUI.model_fields]
    keys += [k for k in BreakerConfig.model_fields if not k.endswith("_predicate")]
    missing = [k for k in keys if f"`{k}`" not in section and f"] {k}`" not in section]
    assert not missing


def _clients(port: int) -> int:
    """Connections to our redis-server other than the one asking."""
    import redis

    with redis.Redis(port=port, socket_timeout=5) as client:
        return int(client.info("clients")["connected_clients"]) - 1


def _wait_for(predicate: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _redis_settings(url: str, namespace: str) -> Settings:
    return Settings.model_validate({"store": {"url": url, "namespace": namespace}})


@pytest.fixture
def redis_server() -> Iterator[Any]:
    from tests.redis.conftest import RedisServer

    server = RedisServer()
    yield server
    server.stop()


@pytest.mark.slow
def test_a_new_store_setting_closes_the_old_store(redis_server: Any) -> None:
    reg = BreakerRegistry()
    try:
        apply_settings(_redis_settings(redis_server.url, "one"), reg)
        old = reg.store
        reg.get("svc").force_open()  # connects: a client and a pub/sub listener
        assert _wait_for(lambda: _clients(redis_server.port) >= 2)
        # The same settings again (a reload that did not touch [store]) keep it open.
        apply_settings(_redis_settings(redis_server.url, "one"), reg)
        assert reg.store is old
        assert _clients(redis_server.port) >= 2
        apply_settings(_redis_settings(redis_server.url, "two"), reg)
        assert reg.store is not old
        assert _wait_for(lambda: _clients(redis_server.port) == 0), _clients(redis_server.port)
        assert reg.get("svc").state.value == "closed"  # the new namespace knows nothing
    finally:
        reg.clear()


@pytest.mark.slow
async def test_a_reload_on_the_loop_closes_the_old_store_under_a_call_in_flight(
    redis_server: Any,
) -> None:
    reg = BreakerRegistry()
    try:
        apply_settings(_redis_settings(redis_server.url, "one"), reg)
        brk = reg.get("svc")
        await brk.ready()
        started, release = asyncio.Event(), asyncio.Event()

        async def slow_failure() -> None:
            started.set()
            await release.wait()
            raise OSError("the service's own error")

        call = asyncio.create_task(brk.call(slow_failure))
        await started.wait()
        assert await asyncio.to_thread(_clients, redis_server.port) >= 1
        apply_settings(_redis_settings(redis_server.url, "two"), reg)  # the loop's thread
        for _ in range(500):  # closed in a task, without blocking the loop
            if await asyncio.to_thread(_clients, redis_server.port) == 0:
                break
            await asyncio.sleep(0.01)
        assert await asyncio.to_thread(_clients, redis_server.port) == 0
        release.set()
        with pytest.raises(OSError, match="own error"):  # not a store error
            await call
        assert brk.state.value == "closed"
    finally:
        reg.clear()
