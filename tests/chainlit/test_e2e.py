"""End to end: the demo app under a real ``chainlit run`` server, driven over Chainlit's
socket.io protocol by two clients, with a short reset timeout."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "demo_app" / "app.py"
BREAKERS_TOML = """
[defaults]
failure_threshold = 2
reset_timeout = 2.5

[breakers.weather-api]
label = "the weather service"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def chainlit_env(app_root: Path) -> dict[str, str]:
    env = dict(os.environ)
    # CI=true would switch Chainlit's CLI into CI mode (fake OpenAI key, no cache).
    for name in ("CI", "CHAINLIT_BREAKER_REDIS_URL", "DEMO_AUTH", "CHAINLIT_AUTH_SECRET"):
        env.pop(name, None)
    env["CHAINLIT_APP_ROOT"] = str(app_root)
    return env


@contextlib.contextmanager
def chainlit_server(
    app: Path, app_root: Path, *options: str, env: dict[str, str] | None = None
) -> Iterator[str]:
    """``chainlit run app --headless`` on a free port; yields its URL once it answers."""
    port = free_port()
    chainlit = Path(sys.executable).parent / "chainlit"
    log_path = app_root / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(chainlit), "run", str(app), "--headless", "--port", str(port), *options],
            cwd=app_root,
            env={**chainlit_env(app_root), **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"chainlit exited: {log_path.read_text()}")
                try:
                    with urllib.request.urlopen(url, timeout=1) as resp:
                        if resp.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail("chainlit did not start within 60 s")
                time.sleep(0.2)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    app_root = tmp_path_factory.mktemp("e2e-app")
    (app_root / ".chainlit").mkdir()
    (app_root / ".chainlit" / "breakers.toml").write_text(BREAKERS_TOML)
    with chainlit_server(DEMO, app_root) as url:
        yield url


class ChatClient:
    """One browser tab: a socket.io session that records every event it receives."""

    def __init__(self, url: str, cookie: str | None = None) -> None:
        import socketio

        self.url = url
        self.cookie = cookie
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[str, Any]] = []
        self.changed = asyncio.Event()
        self.sio.on("*", self._record)

    async def _record(self, event: str, data: Any = None) -> None:
        self.events.append((event, data))
        self.changed.set()

    async def wait_for(self, predicate: Any, start: int) -> int:
        """Index of the first event from ``start`` on that satisfies ``predicate``."""
        deadline = asyncio.get_running_loop().time() + 15
        while True:
            for i in range(start, len(self.events)):
                if predicate(*self.events[i]):
                    return i
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"timed out; events: {self.events[start:]}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)

    async def task(self, start: int) -> list[tuple[str, Any]]:
        """The events of one task (task_start ... task_end) from ``start`` on."""
        begin = await self.wait_for(lambda e, d: e == "task_start", start)
        end = await self.wait_for(lambda e, d: e == "task_end", begin)
        return self.events[begin : end + 1]

    async def connect(self, chat_start: bool = True) -> list[tuple[str, Any]]:
        auth = {
            "clientType": "webapp",
            "sessionId": str(uuid.uuid4()),
            "threadId": "",
            "userEnv": "{}",
            "chatProfile": "",
        }
        await self.sio.connect(
            self.url,
            socketio_path="/ws/socket.io",
            transports=["websocket"],
            auth=auth,
            headers={"Cookie": self.cookie} if self.cookie else {},
        )
        start = len(self.events)
        await self.sio.emit("connection_successful")
        if not chat_start:  # the app has no on_chat_start: nothing runs
            await self.wait_for(lambda e, d: e == "clear_call_fn", start)
            return []
        return await self.task(start)  # on_chat_start: the welcome message

    async def say(self, text: str) -> list[tuple[str, Any]]:
        start = len(self.events)
        message = {
            "id": str(uuid.uuid4()),
            "threadId": "",
            "name": "User",
            "type": "user_message",
            "output": text,
            "createdAt": datetime.now(UTC).isoformat(),
        }
        await self.sio.emit("client_message", {"message": message, "fileReferences": []})
        return await self.task(start)


def messages(events: list[tuple[str, Any]], author: str | None = None) -> list[str]:
    return [
        d["output"]
        for e, d in events
        if e == "new_message"
        and d.get("type") == "assistant_message"
        and (author is None or d.get("name") == author)
    ]


def tool_steps(events: list[tuple[str, Any]]) -> list[tuple[str, str, bool]]:
    return [
        (d["name"], d["output"], bool(d["isError"]))
        for e, d in events
        if e == "update_message" and d.get("type") == "tool"
    ]


async def test_circuit_opens_notifies_and_recovers_over_socketio(server: str) -> None:
    alice, bob = ChatClient(server), ChatClient(server)
    try:
        welcome = await alice.connect()
        assert any("chainlit_breaker demo" in m for m in messages(welcome))
        await bob.connect()

        # Bob uses the weather service while it works: he will hear about its outages.
        ok = await bob.say("what is the weather in Rome?")
        assert tool_steps(ok) == [("weather lookup", "Rome: 21 °C, light wind", False)]
        bob_seen = len(bob.events)

        assert messages(await alice.say("/weather fail")) == [
            "The weather backend will now `fail`."
        ]
        # 1. The tool fails until the circuit opens (failure_threshold = 2).
        first = await alice.say("weather in Paris please")
        assert tool_steps(first) == [
            ("weather lookup", "The weather service failed (ConnectionError).", True)
        ]
        assert messages(first) == [
            "Sorry, the weather service did not answer this time. Please try again."
        ]
        second = await alice.say("weather in Paris please")
        assert messages(second) == [
            "Sorry, the weather service is temporarily unavailable. It will be retried in 3 s."
        ]
        # Bob, idle, gets the opened notice pushed to his session.
        i = await bob.wait_for(lambda e, d: e == "new_message", bob_seen)
        assert messages([bob.events[i]], "Service status") == [
            "The weather service is temporarily unavailable. It will be retried in 3 s."
        ]

        # 2. The next message gets the open-circuit answer without calling the backend.
        rejected = await alice.say("weather in Paris please")
        [(name, output, is_error)] = tool_steps(rejected)
        assert (name, is_error) == ("weather lookup", True)
        assert output.startswith("Circuit open: the weather service is temporarily unavailable.")
        # (Counting down: a slow machine may already be one second further.)
        [reply] = messages(rejected)
        assert re.fullmatch(
            r"Sorry, the weather service is temporarily unavailable\. "
            r"It will be retried in [123] s\.",
            reply,
        )

        # 3. After the reset timeout, the backend is back: the trial call closes it.
        await alice.say("/weather ok")
        bob_seen = len(bob.events)
        await asyncio.sleep(2.6)
        recovered = await alice.say("weather in Paris please")
        assert tool_steps(recovered) == [("weather lookup", "Paris: 21 °C, light wind", False)]
        assert messages(recovered, "Service status") == ["The weather service is available again."]
        i = await bob.wait_for(
            lambda e, d: e == "new_message" and "available again" in d.get("output", ""),
            bob_seen,
        )
        # Bob hears of the trial and of the recovery (Alice, whose message made the trial,
        # only of the recovery: within her reply's run the two are one notice).
        assert messages(bob.events[bob_seen : i + 1], "Service status") == [
            "Trying the weather service again.",
            "The weather service is available again.",
        ]

        # /breakers works for everyone; admin actions are refused without admin metadata.
        table = messages(await alice.say("/breakers"))[0]
        assert "| weather-api (the weather service) | closed |" in table
        refused = messages(await alice.say("/breakers open weather-api"))[0]
        assert refused.startswith("Sorry, only administrators can open circuit breakers.")

        everything = repr(alice.events) + repr(bob.events)
        assert "abc123" not in everything  # the exception text (with a token) never leaks
        assert "weather.internal" not in everything
    finally:
        await alice.sio.disconnect()
        await bob.sio.disconnect()


async def test_the_demo_answers_with_what_still_works(server: str) -> None:
    """With the language model's circuit open, the demo answers with the tools' findings
    (a stream fallback); with stock quotes failing, the weather it found still comes."""
    chat = ChatClient(server)
    try:
        await chat.connect()
        assert "Type `/help`" in messages(await chat.say("/nope"))[0]
        assert "chainlit_breaker demo" in messages(await chat.say("/HELP"))[0]
        await chat.say("/LLM fail")  # switches are case-insensitive too
        for _ in range(2):  # failure_threshold = 2
            cut = messages(await chat.say("hello there, how are you today"))
            assert cut[0].endswith("…")  # the partial answer is marked as cut short
        plain = messages(await chat.say("what's the weather in paris?"))
        assert plain == [
            "The language model is not answering right now; here is what I found. "
            "Paris: 21 °C, light wind"
        ]
        await chat.say("/stocks fail")
        both = messages(await chat.say("weather in rome and a stock quote for ACME"))
        assert len(both) == 1
        assert "Rome: 21 °C, light wind" in both[0]
        assert "(Stock quotes are not available right now.)" in both[0]
    finally:
        await chat.say("/stocks ok")
        await chat.say("/llm ok")
        await chat.sio.disconnect()


README_APP = re.compile(r"<!-- test: chainlit-app -->\s*```python\n(.*?)```", re.S)


async def test_the_readme_minimal_app_works(tmp_path: Path) -> None:
    [code] = README_APP.findall((ROOT / "README.md").read_text(encoding="utf-8"))
    (tmp_path / "app.py").write_text(code)
    with chainlit_server(tmp_path / "app.py", tmp_path) as url:
        chat = ChatClient(url)
        try:
            await chat.connect(chat_start=False)
            paris = await chat.say("Paris")
            assert tool_steps(paris) == [
                ("get_weather", "sunny, 21 °C in Paris", False),
                ("country_of", "France", False),
            ]
            streamed = [d["token"] for e, d in paris if e == "stream_token"]
            assert "".join(streamed).strip().endswith("sunny, 21 °C in Paris")
            assert messages(paris)[-1] == "Paris (France): sunny, 21 °C in Paris "
            replies = [messages(await chat.say("Atlantis")) for _ in range(3)]
            assert replies == [
                ["Sorry, weather-api did not answer this time. Please try again."],
                ["Sorry, weather-api did not answer this time. Please try again."],
                ["Sorry, weather-api is temporarily unavailable. It will be retried in 30 s."],
            ]
            rejected = await chat.say("Paris")
            assert tool_steps(rejected)[0][1].startswith("Circuit open: weather-api")
            assert messages(rejected) == [
                "Sorry, weather-api is temporarily unavailable. It will be retried in 30 s."
            ]
            assert "weather.internal" not in repr(chat.events)
        finally:
            await chat.sio.disconnect()


async def test_two_instances_share_the_circuit_through_redis(tmp_path: Path) -> None:
    """Two Chainlit servers on one Redis: a circuit opened by one rejects in the other,
    and each instance's sessions hear about changes the other caused (remote notices
    from the store's listener thread). The CLI sees and drives the same state."""
    from tests.redis.conftest import RedisServer

    redis_server = RedisServer()
    toml = BREAKERS_TOML + f'\n[store]\nurl = "{redis_server.url}"\nnamespace = "e2e"\n'
    roots = []
    for name in ("one", "two"):
        root = tmp_path / name
        (root / ".chainlit").mkdir(parents=True)
        (root / ".chainlit" / "breakers.toml").write_text(toml)
        roots.append(root)
    cli = [str(Path(sys.executable).parent / "chainlit-breaker")]
    cli_env = chainlit_env(roots[0])

    def run_cli(*args: str) -> Any:  # off the loop: the clients keep receiving meanwhile
        return asyncio.to_thread(
            subprocess.run, [*cli, *args], env=cli_env, capture_output=True, text=True,
            timeout=60, check=True,
        )  # fmt: skip

    try:
        with chainlit_server(DEMO, roots[0]) as url1, chainlit_server(DEMO, roots[1]) as url2:
            alice, bob = ChatClient(url1), ChatClient(url2)
            try:
                await alice.connect()
                await bob.connect()
                await alice.say("weather in Oslo")
                await bob.say("weather in Rome")
                bob_seen = len(bob.events)
                await alice.say("/weather fail")  # only instance one's backend breaks
                await alice.say("weather in Oslo")
                opened = await alice.say("weather in Oslo")
                assert messages(opened) == [
                    "Sorry, the weather service is temporarily unavailable. "
                    "It will be retried in 3 s."
                ]
                # Bob, on the other instance, is told, and is rejected too.
                i = await bob.wait_for(lambda e, d: e == "new_message", bob_seen)
                assert messages([bob.events[i]], "Service status") == [
                    "The weather service is temporarily unavailable. It will be retried in 3 s."
                ]
                rejected = await bob.say("weather in Rome")
                assert tool_steps(rejected)[0][1].startswith("Circuit open:")
                status = await run_cli("status", "weather-api")
                assert status.stdout.split()[:2] == ["weather-api", "open"]

                # Bob's instance runs the trial after the timeout; Alice hears it closed.
                alice_seen = len(alice.events)
                await asyncio.sleep(2.6)
                ok = await bob.say("weather in Rome")
                assert tool_steps(ok) == [("weather lookup", "Rome: 21 °C, light wind", False)]
                i = await alice.wait_for(
                    lambda e, d: e == "new_message" and "available again" in d["output"],
                    alice_seen,
                )
                assert messages([alice.events[i]], "Service status") == [
                    "The weather service is available again."
                ]

                # An operator forces it open from a shell: both sessions are told.
                alice_seen, bob_seen = len(alice.events), len(bob.events)
                forced = await run_cli("open", "weather-api")
                assert forced.stdout.strip() == "weather-api: forced_open"
                expected = (
                    "The weather service is temporarily unavailable. "
                    "It stays off until an operator turns it back on."
                )
                for client, seen in ((alice, alice_seen), (bob, bob_seen)):
                    i = await client.wait_for(lambda e, d: e == "new_message", seen)
                    assert messages([client.events[i]], "Service status") == [expected]
            finally:
                await alice.sio.disconnect()
                await bob.sio.disconnect()
    finally:
        redis_server.stop()


async def test_hot_reload_under_watch_duplicates_nothing(tmp_path: Path) -> None:
    """``chainlit run -w``: editing the app re-executes it. Afterwards one failure still
    gives one reply, opening gives one notice per session, /breakers one row per breaker,
    and the open state survives the reload."""
    (tmp_path / ".chainlit").mkdir()
    (tmp_path / ".chainlit" / "breakers.toml").write_text(BREAKERS_TOML)
    app = tmp_path / "app.py"
    app.write_text(DEMO.read_text(encoding="utf-8"))
    with chainlit_server(app, tmp_path, "-w") as url:
        alice, bob = ChatClient(url), ChatClient(url)
        try:
            await alice.connect()
            await bob.connect()
            await bob.say("weather in Rome")
            for n in range(2):  # reload twice: the module runs three times in all
                seen = len(alice.events)
                app.write_text(app.read_text(encoding="utf-8") + f"\n# edit {n}\n")
                await alice.wait_for(lambda e, d: e == "reload", seen)
            bob_seen = len(bob.events)
            await alice.say("/weather fail")
            first = await alice.say("weather in Paris")
            second = await alice.say("weather in Paris")
            assert len(tool_steps(first)) == len(tool_steps(second)) == 1
            assert messages(second) == [
                "Sorry, the weather service is temporarily unavailable. It will be retried in 3 s."
            ]
            await bob.wait_for(lambda e, d: e == "new_message", bob_seen)
            await asyncio.sleep(0.5)  # room for duplicates to show up, if there were any
            assert len(messages(bob.events[bob_seen:], "Service status")) == 1
            assert messages(alice.events, "Service status") == []  # the reply said it

            seen = len(alice.events)
            app.write_text(app.read_text(encoding="utf-8") + "\n# edit while open\n")
            await alice.wait_for(lambda e, d: e == "reload", seen)
            table = messages(await alice.say("/breakers"))[0]
            assert table.count("weather-api") == 1
            assert "| weather-api (the weather service) | open |" in table
        finally:
            await alice.sio.disconnect()
            await bob.sio.disconnect()


def login(url: str, username: str, password: str) -> str:
    """Log in through Chainlit's password form; the auth cookie as a Cookie header."""
    form = urllib.parse.urlencode({"username": username, "password": password}).encode()
    with urllib.request.urlopen(f"{url}/login", data=form, timeout=10) as resp:
        cookies = [c.split(";", 1)[0] for c in resp.headers.get_all("set-cookie") or []]
    assert cookies, "login set no cookie"
    return "; ".join(cookies)


async def test_admin_actions_follow_chainlit_auth_metadata(tmp_path: Path) -> None:
    (tmp_path / ".chainlit").mkdir()
    (tmp_path / ".chainlit" / "breakers.toml").write_text(BREAKERS_TOML)
    with chainlit_server(DEMO, tmp_path, env={"DEMO_AUTH": "1"}) as url:
        admin = ChatClient(url, await asyncio.to_thread(login, url, "admin", "admin"))
        user = ChatClient(url, await asyncio.to_thread(login, url, "user", "user"))
        try:
            await admin.connect()
            await user.connect()
            await user.say("weather in Rome")
            refused = messages(await user.say("/breakers open weather-api"))
            assert refused == [
                "Sorry, only administrators can open circuit breakers. "
                "Your account is not marked as an admin."
            ]
            user_seen = len(user.events)
            done = messages(await admin.say("/breakers open weather-api"))
            assert done == ["Breaker 'weather-api' is now forced open."]
            i = await user.wait_for(lambda e, d: e == "new_message", user_seen)
            assert "until an operator turns it back on" in user.events[i][1]["output"]
            assert messages(await user.say("weather in Rome")) == [
                "Sorry, the weather service is temporarily unavailable. "
                "It stays off until an operator turns it back on."
            ]
            user_seen = len(user.events)
            done = messages(await admin.say("/breakers close weather-api"))
            assert done == ["Breaker 'weather-api' forced closed; it is now closed."]
            i = await user.wait_for(lambda e, d: e == "new_message", user_seen)
            assert user.events[i][1]["output"] == "The weather service is available again."
        finally:
            await admin.sio.disconnect()
            await user.sio.disconnect()
