"""The Chainlit layer against a real ChainlitContext over a mocked websocket session:
the exact events emitted for tool steps (async and sync), guard replies, notices (also
from worker threads and store threads), /breakers and admin actions, and hot reload."""

from __future__ import annotations

import asyncio
import contextlib
import runpy
import textwrap
import threading
from math import inf
from pathlib import Path
from typing import Any

import pytest
from chainlit.context import ChainlitContext, context_var
from chainlit.message import Message
from chainlit.user import User

import chainlit_breaker
from chainlit_breaker import BreakerState, CircuitOpenError, FakeClock, StateChanged
from chainlit_breaker.integrations import chainlit as cb
from chainlit_breaker.integrations.chainlit import notices
from chainlit_breaker.settings import Settings

from .conftest import events, make_session

SECRET = "redis://:hunter2@10.0.0.7:6379"


def summary(session: Any) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for event, payload in events(session):
        if event in ("new_message", "update_message"):
            out.append(
                (event, payload["type"], payload["name"], payload["output"], payload["isError"])
            )
        elif event == "toast":
            out.append((event, payload["type"], payload["message"]))
        else:
            out.append((event,))
    return out


async def drain() -> None:
    """Wait for every notice scheduled so far (they never block the caller)."""
    for _ in range(50):
        await asyncio.sleep(0)
        pending = [t for t in list(notices._tasks) if not t.done()]
        if not pending:
            return
        await asyncio.gather(*pending)


@pytest.fixture
def clock() -> FakeClock:
    fake = FakeClock()
    chainlit_breaker.configure(clock=fake)
    return fake


def use(settings: Settings | None = None, **ui: Any) -> Settings:
    base = settings if settings is not None else Settings()
    if ui:
        base = base.model_copy(update={"ui": base.ui.model_copy(update=ui)})
    return cb.setup(settings=base)


def user_message(text: str) -> Message:
    return Message(content=text, type="user_message")


OPEN_TEXT = "Circuit open: weather-api is temporarily unavailable. It will be retried in 10 s."


# -- tool steps ----------------------------------------------------------------------------


def make_async_tool() -> Any:
    @cb.tool("weather-api", failure_threshold=2, reset_timeout=10)
    async def weather(city: str) -> str:
        if city == "fail":
            raise ConnectionError(f"cannot reach {SECRET}")
        return f"sunny in {city}"

    return weather


def make_sync_tool(threads: list[int]) -> Any:
    @cb.tool("weather-api", failure_threshold=2, reset_timeout=10)
    def weather(city: str) -> str:
        threads.append(threading.get_ident())
        if city == "fail":
            raise ConnectionError(f"cannot reach {SECRET}")
        return f"sunny in {city}"

    return weather


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_tool_success_failure_rejection_recovery(
    session: Any, clock: FakeClock, kind: str
) -> None:
    use()
    threads: list[int] = []
    weather = make_async_tool() if kind == "async" else make_sync_tool(threads)
    assert asyncio.iscoroutinefunction(weather)
    assert weather.__name__ == "weather"

    assert await weather("paris") == "sunny in paris"
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await weather("fail")
        await drain()
    with pytest.raises(CircuitOpenError) as info:
        await weather("paris")
    assert info.value.name == "weather-api"
    await drain()
    clock.advance(10.5)
    assert await weather("rome") == "sunny in rome"
    await drain()

    tool = "tool"
    failed = "Weather-api failed (ConnectionError)."
    got = summary(session)
    steps = [e for e in got if e[1] == tool]
    notices = [e[3] for e in got if e[1] == "assistant_message"]
    assert steps == [
        ("new_message", tool, "weather", "", False),
        ("update_message", tool, "weather", "sunny in paris", False),
        ("new_message", tool, "weather", "", False),
        ("update_message", tool, "weather", failed, True),
        ("new_message", tool, "weather", "", False),
        ("update_message", tool, "weather", failed, True),
        ("new_message", tool, "weather", "", False),
        ("update_message", tool, "weather", OPEN_TEXT, True),
        ("new_message", tool, "weather", "", False),
        ("update_message", tool, "weather", "sunny in rome", False),
    ]
    # No guard: each notice is sent at once, from its own task (so its place among the
    # steps of a call still running is not fixed; the trip's comes after that step).
    assert notices == [
        "Weather-api is temporarily unavailable. It will be retried in 10 s.",
        "Trying weather-api again.",
        "Weather-api is available again.",
    ]
    assert got.index(steps[5]) < got.index(next(e for e in got if e[1] == "assistant_message"))
    first = events(session)[0][1]
    assert first["input"] == '{\n    "city": "paris"\n}'
    assert first["threadId"] == "thread-session-1"
    if kind == "sync":
        # The body ran in worker threads, never on the loop's thread.
        assert len(threads) == 4
        assert threading.get_ident() not in threads
    assert SECRET not in repr(session.emit.call_args_list)
    assert "hunter2" not in repr(session.emit.call_args_list)


async def test_tool_shows_exception_text_only_when_allowed(session: Any) -> None:
    use(show_exception_text=True)

    @cb.tool("svc")
    async def boom() -> None:
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        await boom()
    assert summary(session)[-1] == ("update_message", "tool", "boom", "Svc failed: disk full", True)


async def test_hidden_tool_input_is_not_sent(session: Any) -> None:
    use()

    @cb.tool("payments", show_input=False)
    async def charge(card_number: str) -> str:
        return "charged"

    await charge("4111 1111 1111 1111")
    assert "4111" not in repr(session.emit.call_args_list)
    assert events(session)[0][1]["showInput"] is False


@pytest.mark.slow  # waits for a real (10 ms) timeout
async def test_tool_timeout_counts_as_failure(session: Any) -> None:
    use()
    release = threading.Event()

    @cb.tool("legacy", name="legacy lookup", timeout=0.01, failure_threshold=1)
    def hang() -> str:
        release.wait(5)
        return "late"

    try:
        with pytest.raises(TimeoutError):
            await hang()
    finally:
        release.set()
    assert chainlit_breaker.get_breaker("legacy").state is BreakerState.OPEN
    assert summary(session)[1] == (
        "update_message",
        "tool",
        "legacy lookup",
        "Legacy failed (TimeoutError).",
        True,
    )


async def test_tool_fallback_answers_rejections(session: Any) -> None:
    use()

    def cached(err: CircuitOpenError, city: str) -> str:
        return f"cached weather for {city}"

    @cb.tool("weather-api", fallback=cached)
    async def weather(city: str) -> str:
        return "live"

    chainlit_breaker.get_breaker("weather-api").force_open()
    assert await weather("oslo") == "cached weather for oslo"
    assert summary(session)[-1] == (
        "update_message",
        "tool",
        "weather",
        "cached weather for oslo",
        False,
    )


# -- the guard -----------------------------------------------------------------------------


def make_handler(tool: Any) -> Any:
    @cb.guard
    async def on_message(message: Message) -> None:
        answer = await tool(message.content)
        await Message(content=answer).send()

    return on_message


async def test_guard_replies_name_service_and_retry(session: Any, clock: FakeClock) -> None:
    settings = Settings.model_validate(
        {"services": {"weather-api": {"label": "the weather service"}}}
    )
    use(settings)
    handler = make_handler(make_async_tool())
    await handler(user_message("fail"))
    await handler(user_message("fail"))
    await handler(user_message("paris"))
    clock.advance(10.5)
    await handler(user_message("rome"))
    replies = [s for s in summary(session) if s[1] == "assistant_message"]
    assert replies == [
        (
            "new_message",
            "assistant_message",
            "Assistant",
            # A failure that left the circuit closed: nothing to wait for, try again.
            "Sorry, the weather service did not answer this time. Please try again.",
            False,
        ),
        # The failure that opened the circuit: the reply already says it, so the
        # "opened" notice for this session is dropped.
        (
            "new_message",
            "assistant_message",
            "Assistant",
            "Sorry, the weather service is temporarily unavailable. It will be retried in 10 s.",
            False,
        ),
        (
            "new_message",
            "assistant_message",
            "Assistant",
            "Sorry, the weather service is temporarily unavailable. It will be retried in 10 s.",
            False,
        ),
        ("new_message", "assistant_message", "Assistant", "sunny in rome", False),
        # Half-open then closed within one run: one notice, after the answer.
        (
            "new_message",
            "assistant_message",
            "Service status",
            "The weather service is available again.",
            False,
        ),
    ]
    assert "hunter2" not in repr(session.emit.call_args_list)


async def test_a_trial_that_fails_in_the_handler_is_only_the_reply(
    session: Any, clock: FakeClock
) -> None:
    """The trial call and its failure both happen within one guarded run: the user reads
    that the service is unavailable, not that reply followed by "Trying ... again"."""
    use()
    handler = make_handler(make_async_tool())
    for _ in range(2):
        await handler(user_message("fail"))
    clock.advance(10.5)
    session.emit.reset_mock()
    await handler(user_message("fail"))  # the trial fails: open again
    await drain()
    assert [s[3] for s in summary(session) if s[1] == "assistant_message"] == [
        "Sorry, weather-api is temporarily unavailable. It will be retried in 10 s."
    ]


async def test_a_stream_fallback_answers_while_the_circuit_is_open(session: Any) -> None:
    use()
    chainlit_breaker.get_breaker("llm").force_open()

    async def fake_llm(prompt: str) -> Any:
        yield "never"  # the circuit is open: this never runs

    def from_tools(error: CircuitOpenError, prompt: str) -> list[str]:
        assert error.name == "llm"
        return ["No model right now. ", f"You asked: {prompt}"]

    msg = await cb.stream_message("llm", fake_llm, "hi", fallback=from_tools)
    assert msg.content == "No model right now. You asked: hi"
    tokens = [t async for t in cb.stream("llm", fake_llm, "x", fallback=lambda e, p: "plain")]
    assert tokens == ["plain"]  # a string is one token


async def test_guard_uses_fallback_answer_and_forced_open_wording(session: Any) -> None:
    settings = Settings.model_validate(
        {"services": {"weather-api": {"fallback": "No weather today, sorry."}, "llm": {}}}
    )
    use(settings)
    handler = make_handler(make_async_tool())
    chainlit_breaker.get_breaker("weather-api").force_open()
    await handler(user_message("paris"))
    assert summary(session)[-1][3] == "No weather today, sorry."

    @cb.guard
    async def ask(message: Message) -> None:
        await chainlit_breaker.get_breaker("llm").call(asyncio.sleep, 0)

    chainlit_breaker.get_breaker("llm").force_open()
    await ask(user_message("hi"))
    assert summary(session)[-1][3] == (
        "Sorry, llm is temporarily unavailable. It stays off until an operator turns it back on."
    )


async def test_guard_attributes_chained_failures_and_hides_other_errors(session: Any) -> None:
    use()
    weather = make_async_tool()

    @cb.guard
    async def wrapped(message: Message) -> None:
        try:
            await weather("fail")
        except ConnectionError as err:
            raise RuntimeError("tool chain broke") from err

    @cb.guard
    async def buggy(message: Message) -> None:
        raise KeyError("internal detail")

    await wrapped(user_message("x"))
    await buggy(user_message("y"))
    replies = [s[3] for s in summary(session) if s[1] == "assistant_message"]
    assert replies == [
        "Sorry, weather-api did not answer this time. Please try again.",
        "Sorry, something went wrong while answering. Please try again.",
    ]
    assert "internal detail" not in repr(session.emit.call_args_list)


async def test_guard_finds_the_service_in_a_task_group(session: Any) -> None:
    use(Settings.model_validate({"services": {"search": {"label": "search"}}}))

    @cb.tool("search")
    async def search(q: str) -> str:
        return q

    @cb.tool("weather-api")
    async def weather(city: str) -> str:
        return city

    @cb.guard
    async def parallel(message: Message) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(search("x"))
            tg.create_task(weather("y"))

    chainlit_breaker.get_breaker("weather-api").force_open()
    await parallel(user_message("both"))
    assert summary(session)[-1][3] == (
        "Sorry, weather-api is temporarily unavailable. "
        "It stays off until an operator turns it back on."
    )


async def test_guard_keeps_the_handler_signature_for_chainlit() -> None:
    import inspect

    async def handler(message: Message) -> None:
        return None

    guarded = cb.guard(handler)
    assert list(inspect.signature(guarded).parameters) == ["message"]
    assert inspect.iscoroutinefunction(guarded)
    with pytest.raises(TypeError):
        cb.guard(lambda message: None)


async def test_streaming_through_the_breaker(session: Any) -> None:
    use()

    async def fake_llm(prompt: str, fail_after: int | None = None) -> Any:
        for i, word in enumerate(["Hello", " there", "!"]):
            if fail_after is not None and i == fail_after:
                raise ConnectionError("stream dropped")
            yield word

    @cb.guard
    async def handler(message: Message) -> None:
        fail = 1 if message.content == "fail" else None
        await cb.stream_message("llm", fake_llm, message.content, fail_after=fail)

    await handler(user_message("hi"))
    sent = [e for e in events(session) if e[0] in ("stream_start", "stream_token", "new_message")]
    assert [e[0] for e in sent] == ["stream_start", "stream_token", "stream_token", "new_message"]
    assert sent[-1][1]["output"] == "Hello there!"

    session.emit.reset_mock()
    await handler(user_message("fail"))
    # The partial answer stays, then the guard explains; mid-stream failure counted.
    assert [s[3] for s in summary(session) if s[0] == "new_message"] == [
        "Hello …",  # cut short, and marked so
        "Sorry, llm did not answer this time. Please try again.",
    ]
    assert chainlit_breaker.get_breaker("llm").snapshot.consecutive_failures == 1
    tokens = [t async for t in cb.stream("llm", fake_llm, "x")]
    assert tokens == ["Hello", " there", "!"]


# -- notices -------------------------------------------------------------------------------


async def test_notices_from_a_worker_thread_go_only_to_sessions_that_used_it(
    clock: FakeClock,
) -> None:
    use()
    s1, s2 = make_session("s1"), make_session("s2")
    db = chainlit_breaker.breaker("db", failure_threshold=1)
    other = chainlit_breaker.breaker("other")
    seen_threads: list[int] = []

    @db
    def query() -> None:
        seen_threads.append(threading.get_ident())
        raise OSError("db down")

    async def in_session(sess: Any, fn: Any) -> None:
        context_var.set(ChainlitContext(sess))
        await asyncio.to_thread(fn)

    await asyncio.create_task(in_session(s2, lambda: other.call_sync(lambda: None)))
    assert notices.sessions_using("other") == ["s2"]
    with pytest.raises(OSError):  # noqa: PT011
        await asyncio.create_task(in_session(s1, query))
    assert seen_threads
    assert seen_threads[0] != threading.get_ident()
    await drain()
    assert summary(s1) == [
        (
            "new_message",
            "assistant_message",
            "Service status",
            "Db is temporarily unavailable. It will be retried in 30 s.",
            False,
        )
    ]
    assert summary(s2) == []


async def test_remote_change_from_a_store_thread_and_toasts(session: Any) -> None:
    use(notices="toast")

    @cb.tool("payments")
    async def pay() -> str:
        return "ok"

    await pay()
    session.emit.reset_mock()

    def store_thread() -> None:  # no Chainlit context, not the loop's thread
        half_open = StateChanged("payments", BreakerState.OPEN, BreakerState.HALF_OPEN, None, True)
        # Not told it was down (it joined mid-outage): the trial is news.
        notices._listener(half_open)
        notices._listener(
            StateChanged("payments", BreakerState.HALF_OPEN, BreakerState.OPEN, "x", True, 12.2)
        )
        notices._listener(half_open)  # told it is down: quiet until it recovers
        notices._listener(
            StateChanged("payments", BreakerState.HALF_OPEN, BreakerState.CLOSED, None, True)
        )
        forced = BreakerState.FORCED_OPEN
        notices._listener(StateChanged("payments", BreakerState.CLOSED, forced, None, True, inf))

    t = threading.Thread(target=store_thread)
    t.start()
    # The loop is blocked right here; a listener that waited for it would never return.
    t.join(10)
    assert not t.is_alive()
    await drain()
    assert summary(session) == [
        ("toast", "info", "Trying payments again."),
        ("toast", "warning", "Payments is temporarily unavailable. It will be retried in 13 s."),
        ("toast", "success", "Payments is available again."),
        (
            "toast",
            "warning",
            "Payments is temporarily unavailable. It stays off until an operator turns it back on.",
        ),
    ]


async def test_an_idle_session_hears_of_an_outage_once_and_of_the_recovery(
    clock: FakeClock,
) -> None:
    """Retry cycles during an outage (open, half-open, open, ...) must not spam a session
    that was already told: "opened", "trying again", and (that trial failed) "opened" once
    more, so the last word is not a retry that did not work; then quiet until
    "recovered"."""
    use()
    flaky = chainlit_breaker.breaker("flaky", failure_threshold=1, reset_timeout=10)
    idle, busy = make_session("idle"), make_session("busy")

    async def in_session(sess: Any, fn: Any) -> None:
        context_var.set(ChainlitContext(sess))
        await fn()

    async def ok() -> str:
        return "ok"

    async def boom() -> str:
        raise OSError("down")

    async def run(sess: Any, fn: Any) -> None:
        with contextlib.suppress(OSError):
            await asyncio.create_task(in_session(sess, lambda: flaky.call(fn)))
        await drain()

    await run(idle, ok)  # the idle session used it once, while it worked
    await run(busy, boom)  # opens
    for _ in range(3):  # three failed trials: half-open, open again
        clock.advance(10.5)
        await run(busy, boom)
    clock.advance(10.5)
    await run(busy, ok)  # recovers
    await run(busy, boom)  # a new outage is news again
    said = [p[3] for p in summary(idle)]
    assert said == [
        "Flaky is temporarily unavailable. It will be retried in 10 s.",
        "Trying flaky again.",
        "Flaky is temporarily unavailable. It will be retried in 10 s.",
        "Flaky is available again.",
        "Flaky is temporarily unavailable. It will be retried in 10 s.",
    ]
    assert [p[3] for p in summary(busy)] == said


async def test_notices_off(session: Any) -> None:
    use(notices="off")

    @cb.tool("svc", failure_threshold=1)
    async def boom() -> None:
        raise OSError("x")

    with pytest.raises(OSError):  # noqa: PT011
        await boom()
    await drain()
    assert [e[0] for e in events(session)] == ["new_message", "update_message"]


# -- /breakers and admin actions ---------------------------------------------------------


async def test_breakers_table_for_everyone(session: Any, clock: FakeClock) -> None:
    settings = Settings.model_validate(
        {
            "breakers": {"search": {"failure_rate_threshold": 0.5, "minimum_calls": 4}},
            "services": {"weather-api": {"label": "Weather"}},
        }
    )
    use(settings)
    weather = make_async_tool()
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await weather("fail")
    search = chainlit_breaker.get_breaker("search")
    await search.call(asyncio.sleep, 0)

    async def bad() -> None:
        raise OSError

    with pytest.raises(OSError):  # noqa: PT011
        await search.call(bad)
    chainlit_breaker.breaker("llm")
    session.emit.reset_mock()
    clock.advance(3.2)

    assert await cb.handle_command(user_message("/breakers"))
    assert summary(session) == [
        (
            "new_message",
            "assistant_message",
            "Service status",
            "| Breaker | State | Failure rate | Retry in |\n"
            "| --- | --- | --- | --- |\n"
            "| llm | closed | - | - |\n"
            "| search | closed | 50% (1/2), 1 in a row | - |\n"
            "| weather-api (Weather) | open | 100% (2/2) recent, "
            "opened by 2 failures in a row | 7 s |",
            False,
        )
    ]
    assert not await cb.handle_command(user_message("breakers please"))
    clock.advance(7)  # the timeout ran out; the next call will be the trial
    table = cb.breakers_table(chainlit_breaker.registry, cb.current_settings())
    assert table.endswith(
        "| weather-api (Weather) | open | 100% (2/2) recent, opened by 2 failures in a row | now |"
    )


@pytest.mark.parametrize(
    ("metadata", "allowed"),
    [
        ({}, False),
        ({"role": "user"}, False),
        ({"role": "admin"}, True),
        ({"role": ["editor", "admin"]}, True),
        ({"role": True}, False),
    ],
)
async def test_admin_actions_need_admin_metadata(
    clock: FakeClock, metadata: dict[str, Any], allowed: bool
) -> None:
    use()
    sess = make_session("admin-test", user=User(identifier="ann", metadata=metadata))
    context_var.set(ChainlitContext(sess))
    brk = chainlit_breaker.get_breaker("weather-api")
    await cb.handle_command(user_message("/breakers open weather-api"))
    reply = summary(sess)[-1][3]
    if allowed:
        assert reply == "Breaker 'weather-api' is now forced open."
        assert brk.state is BreakerState.FORCED_OPEN
        await cb.handle_command(user_message("/breakers close weather-api"))
        assert brk.state is BreakerState.CLOSED
        brk.force_open()
        await cb.handle_command(user_message("/breakers reset weather-api"))
        assert brk.state is BreakerState.CLOSED
        await cb.handle_command(user_message("/breakers reset nope"))
        assert summary(sess)[-1][3] == (
            "There is no breaker called 'nope'. Known breakers: weather-api."
        )
    else:
        assert reply == (
            "Sorry, only administrators can open circuit breakers. "
            "Your account is not marked as an admin."
        )
        assert brk.state is BreakerState.CLOSED
    await cb.handle_command(user_message("/breakers explode"))
    assert summary(sess)[-1][3].startswith("Usage: `/breakers` shows every breaker.")


async def test_anonymous_user_is_refused_and_guard_routes_commands(session: Any) -> None:
    use()
    reached: list[str] = []

    @cb.guard
    async def handler(message: Message) -> None:
        reached.append(message.content)

    await handler(user_message("/breakers reset x"))
    await handler(Message(content="", command="breakers"))
    await handler(user_message("hello"))
    assert reached == ["hello"]
    texts = [s[3] for s in summary(session)]
    assert texts[0].startswith("Sorry, only administrators can reset circuit breakers.")
    assert texts[1] == "No circuit breakers yet."


# -- hot reload ------------------------------------------------------------------------------


APP = """
import chainlit as cl
from chainlit_breaker.integrations import chainlit as cb

cb.setup(SETTINGS)

@cb.tool("weather-api", failure_threshold=1)
async def weather(city: str) -> str:
    raise ConnectionError("down")

@cl.on_message
@cb.guard
async def main(message: cl.Message) -> None:
    await cl.Message(content=await weather(message.content)).send()
"""


async def test_hot_reload_does_not_duplicate(session: Any, tmp_path: Path) -> None:
    (tmp_path / ".chainlit").mkdir()
    (tmp_path / ".chainlit" / "breakers.toml").write_text(
        "[breakers.weather-api]\nreset_timeout = 60\n"
    )
    app = tmp_path / "app.py"
    app.write_text(
        textwrap.dedent(APP).replace("SETTINGS", repr(str(tmp_path / ".chainlit/breakers.toml")))
    )
    from chainlit.config import config

    saved = config.code.on_message
    try:
        for _ in range(3):  # what `chainlit run -w` does on every change
            module = runpy.run_path(str(app))
        reg = chainlit_breaker.registry
        assert reg._listeners.count(notices._listener) == 1
        assert reg.names() == ["weather-api"]
        brk = reg.get("weather-api")
        assert brk.listeners.count(notices._listener) == 1
        other = make_session("other")
        context_var.set(ChainlitContext(other))
        await chainlit_breaker.get_breaker("weather-api").call(asyncio.sleep, 0)
        context_var.set(ChainlitContext(session))
        await module["main"](user_message("x"))
        # Reload once more while open: the state survives, nothing doubles.
        runpy.run_path(str(app))
        assert reg.get("weather-api") is brk
        assert brk.state is BreakerState.OPEN
        await drain()
        opened = [s for s in summary(other) if "unavailable" in s[3]]
        assert opened == [
            (
                "new_message",
                "assistant_message",
                "Service status",
                "Weather-api is temporarily unavailable. It will be retried in 60 s.",
                False,
            )
        ]
        replies = [s[3] for s in summary(session) if s[1] == "assistant_message"]
        assert replies == [
            "Sorry, weather-api is temporarily unavailable. It will be retried in 60 s."
        ]
    finally:
        config.code.on_message = saved


def test_a_reload_drops_what_the_code_no_longer_says(tmp_path: Path) -> None:
    """Removing a keyword from a tool, or renaming its breaker, then saving: the reload
    must not keep the old config, nor list the old name in /breakers."""
    (tmp_path / ".chainlit").mkdir()
    toml = tmp_path / ".chainlit" / "breakers.toml"
    toml.write_text("[defaults]\nreset_timeout = 45\n")
    app = tmp_path / "app.py"
    version_1 = f"""
import chainlit_breaker
from chainlit_breaker.integrations import chainlit as cb

cb.setup({str(toml)!r})

@cb.tool("weather-api", failure_threshold=1, reset_timeout=99)
async def weather(city: str) -> str:
    return city

@cb.tool("old-name", failure_threshold=2)
def legacy(city: str) -> str:
    return city

chainlit_breaker.get_breaker("old-name")  # used: built in the registry

llm = cb.llm("llm", failure_threshold=7)
"""
    version_2 = f"""
from chainlit_breaker.integrations import chainlit as cb

cb.setup({str(toml)!r})

@cb.tool("weather-api")
async def weather(city: str) -> str:
    return city

@cb.tool("new-name", failure_threshold=2)
def legacy(city: str) -> str:
    return city

llm = cb.llm("llm")

@cb.tool("late", failure_threshold=4)  # registered after setup() in the same run: kept
async def late() -> None:
    return None
"""
    reg = chainlit_breaker.registry
    app.write_text(version_1)
    runpy.run_path(str(app), run_name="app")
    weather = reg.get("weather-api")
    assert (weather.config.failure_threshold, weather.config.reset_timeout) == (1, 99.0)
    assert reg.config_for("llm").failure_threshold == 7
    app.write_text(version_2)
    runpy.run_path(str(app), run_name="app")  # what `chainlit run -w` does on a change
    assert reg.get("weather-api") is weather  # same breaker, same state ...
    assert (weather.config.failure_threshold, weather.config.reset_timeout) == (5, 45.0)
    assert reg.config_for("llm").failure_threshold == 5
    assert reg.config_for("late").failure_threshold == 4
    assert "old-name" not in reg.names()
    assert "new-name" in reg.names()
    runpy.run_path(str(app), run_name="app")  # and again: nothing changes
    assert reg.config_for("late").failure_threshold == 4
    assert reg.config_for("new-name").failure_threshold == 2


async def test_a_hung_sync_tool_does_not_starve_other_sync_tools(session: Any) -> None:
    """asyncio.to_thread shares the loop's executor (6 workers on 2 cores): hung calls
    would hold every worker, and a healthy tool would queue until its own timeout."""
    use()
    release = threading.Event()

    @cb.tool("legacy-a", timeout=0.05, failure_threshold=100)
    def hangs() -> str:
        release.wait(10)
        return "late"

    @cb.tool("legacy-b", timeout=2.0)
    def healthy() -> str:
        return "fine"

    try:
        for _ in range(12):
            with pytest.raises(TimeoutError):
                await hangs()
        assert await healthy() == "fine"
        assert chainlit_breaker.get_breaker("legacy-b").snapshot.consecutive_failures == 0
    finally:
        release.set()


async def test_a_sync_tool_sees_the_chainlit_context_in_its_thread(session: Any) -> None:
    use()
    seen: list[Any] = []

    @cb.tool("ctx")
    def peek() -> str:
        seen.append((threading.get_ident(), context_var.get().session.id))
        return "ok"

    assert await peek() == "ok"
    assert seen[0][0] != threading.get_ident()
    assert seen[0][1] == session.id


async def test_toasts_for_transitions_a_tool_causes(session: Any, clock: FakeClock) -> None:
    use(notices="toast")
    weather = make_async_tool()
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await weather("fail")
    clock.advance(10.5)
    assert await weather("rome") == "sunny in rome"
    await drain()
    toasts = [s for s in summary(session) if s[0] == "toast"]
    assert toasts == [
        ("toast", "warning", "Weather-api is temporarily unavailable. It will be retried in 10 s."),
        ("toast", "info", "Trying weather-api again."),
        ("toast", "success", "Weather-api is available again."),
    ]
    assert not [s for s in summary(session) if s[1] == "assistant_message"]


async def test_breakers_command_words_and_case(session: Any, clock: FakeClock) -> None:
    use()
    admin = make_session("boss", user=User(identifier="ann", metadata={"role": "admin"}))
    context_var.set(ChainlitContext(admin))
    chainlit_breaker.get_breaker("Weather-API").force_open()
    chainlit_breaker.get_breaker("search")
    assert await cb.handle_command(user_message("/Breakers"))
    table = summary(admin)[-1][3]
    assert "| Weather-API | forced open | - | manual |" in table
    assert await cb.handle_command(user_message("/BREAKERS Reset Weather-API"))
    assert summary(admin)[-1][3] == "Breaker 'Weather-API' reset; it is now closed."
    # A name typed in another case is the breaker meant, when only one matches.
    assert await cb.handle_command(user_message("/breakers open weather-api"))
    assert summary(admin)[-1][3] == "Breaker 'Weather-API' is now forced open."


async def test_an_admin_change_with_the_store_down_says_so(session: Any) -> None:
    from chainlit_breaker import MemoryStore

    class DownStore(MemoryStore):
        available = False

    chainlit_breaker.configure(store=DownStore())
    use()
    admin = make_session("boss", user=User(identifier="ann", metadata={"role": "admin"}))
    context_var.set(ChainlitContext(admin))
    chainlit_breaker.get_breaker("weather-api")
    await cb.handle_command(user_message("/breakers open weather-api"))
    assert summary(admin)[-1][3] == (
        "Breaker 'weather-api' is now forced open. The shared store is not "
        "answering, so this applies to this instance now and reaches the others when it "
        "answers again."
    )


@pytest.mark.parametrize(
    ("admin_value", "metadata", "allowed"),
    [
        (True, {"role": [1]}, False),  # 1 == True in Python; not an admin flag
        (True, {"role": [True]}, True),
        ("1", {"role": [1]}, False),
    ],
)
def test_admin_values_must_match_in_type_too(
    admin_value: Any, metadata: dict[str, Any], allowed: bool
) -> None:
    settings = Settings.model_validate({"ui": {"admin_value": admin_value}})
    assert notices.is_admin(User(identifier="u", metadata=metadata), settings) is allowed


def test_whole_seconds_templates() -> None:
    settings = Settings.model_validate({"ui": {"retry_in": "Back in {seconds:d}s."}})
    assert notices.retry_text(settings, 9.2) == "Back in 10s."


# -- review fixes ----------------------------------------------------------------------------


async def test_every_template_may_use_every_placeholder(session: Any) -> None:
    # Each template is validated against the full placeholder set; the retry sentences
    # and [ui] error were once formatted with fewer keys (KeyError in the guard) or not
    # at all (literal "{service}" and doubled braces in the chat).
    settings = Settings.model_validate(
        {
            "ui": {
                "retry_in": "{service} is retried in {seconds} s.",
                "retry_manual": "Ask the {name} team {{now}}.",
                "error": "Oops {{sorry}}.",
            },
            "services": {"weather-api": {"label": "Weather"}},
        }
    )
    use(settings)
    weather = make_async_tool()
    handler = make_handler(weather)
    await handler(user_message("fail"))
    await handler(user_message("fail"))  # opens: retry_in
    chainlit_breaker.get_breaker("weather-api").force_open()
    await handler(user_message("paris"))  # forced open: retry_manual

    @cb.guard
    async def buggy(message: Message) -> None:
        raise KeyError("internal detail")

    await buggy(user_message("x"))
    replies = [s[3] for s in summary(session) if s[2] == "Assistant"]
    assert replies[1:] == [
        "Sorry, Weather is temporarily unavailable. Weather is retried in 10 s.",
        "Sorry, Weather is temporarily unavailable. Ask the weather-api team {now}.",
        "Oops {sorry}.",
    ]
    steps = [s[3] for s in summary(session) if s[0] == "update_message"]
    assert (
        steps[-1]
        == "Circuit open: Weather is temporarily unavailable. Ask the weather-api team {now}."
    )


async def test_sessions_that_went_away_are_forgotten() -> None:
    import gc

    use()
    brk = chainlit_breaker.breaker("quiet")  # never changes state, so never prunes itself

    async def visit(sid: str) -> None:
        context_var.set(ChainlitContext(make_session(sid)))
        await brk.call(asyncio.sleep, 0)

    for i in range(300):
        await asyncio.create_task(visit(f"gone-{i}"))
    gc.collect()
    keep = make_session("kept")
    await asyncio.create_task(_visit_with(keep, brk))
    assert "kept" in notices.sessions_using("quiet")
    assert len(notices._sessions) < 100  # not one entry per session ever seen


async def _visit_with(sess: Any, brk: Any) -> None:
    context_var.set(ChainlitContext(sess))
    await brk.call(asyncio.sleep, 0)


async def test_sentences_start_with_a_capital_letter(session: Any, clock: FakeClock) -> None:
    # Labels are written to fit mid-sentence ("the weather service"), so a template that
    # starts with {service} must still start the sentence with a capital.
    settings = Settings.model_validate(
        {"services": {"weather-api": {"label": "the weather service"}}}
    )
    use(settings)
    weather = make_async_tool()
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await weather("fail")
    await drain()
    clock.advance(10.5)
    await weather("rome")
    await drain()
    texts = [s[3] for s in summary(session) if s[3] and s[3] != "sunny in rome"]
    assert texts == [
        "The weather service failed (ConnectionError).",
        "The weather service failed (ConnectionError).",
        "The weather service is temporarily unavailable. It will be retried in 10 s.",
        "Trying the weather service again.",
        "The weather service is available again.",
    ]


async def test_the_table_says_what_opened_a_mixed_policy_breaker(
    session: Any, clock: FakeClock
) -> None:
    """A breaker with both a consecutive-failures and a rate policy: the table names the
    one that opened it, and counts failed trials of this outage only (an admin's close
    in between starts a new one, though the backoff history is kept)."""
    use()
    both = chainlit_breaker.breaker(
        "both", failure_threshold=3, failure_rate_threshold=0.9, minimum_calls=50,
        reset_timeout=10,
    )  # fmt: skip

    async def bad() -> None:
        raise OSError

    def row() -> str:
        return cb.breakers_table(chainlit_breaker.registry, cb.current_settings()).splitlines()[-1]

    for _ in range(3):
        with pytest.raises(OSError):  # noqa: PT011
            await both.call(bad)
    assert row() == "| both | open | opened by 3 failures in a row | 10 s |"
    clock.advance(10.5)
    with pytest.raises(OSError):  # noqa: PT011
        await both.call(bad)  # a failed trial
    assert row().endswith("opened by 3 failures in a row, 1 failed trial | 10 s |")
    both.force_closed()
    for _ in range(3):
        with pytest.raises(OSError):  # noqa: PT011
            await both.call(bad)
    assert "failed trial" not in row()


async def test_breakers_table_says_why_an_open_breaker_is_open(
    session: Any, clock: FakeClock
) -> None:
    # Opening clears the counters, so under the default consecutive-failures policy the
    # table showed "-" for the one breaker people ask about.
    use()
    weather = make_async_tool()  # failure_threshold=2, reset_timeout=10
    chainlit_breaker.breaker("llm")
    flaky = chainlit_breaker.breaker("flaky", failure_threshold=3)

    async def bad() -> None:
        raise OSError

    with pytest.raises(OSError):  # noqa: PT011
        await flaky.call(bad)
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await weather("fail")

    def table() -> str:
        return cb.breakers_table(chainlit_breaker.registry, cb.current_settings())

    assert table().splitlines() == [
        "| Breaker | State | Failure rate | Retry in |",
        "| --- | --- | --- | --- |",
        "| flaky | closed | 100% (1/1) recent, 1 in a row | - |",
        "| llm | closed | - | - |",
        "| weather-api | open | 100% (2/2) recent, opened by 2 failures in a row | 10 s |",
    ]
    clock.advance(10.5)
    with pytest.raises(ConnectionError):
        await weather("fail")  # the trial fails: open again
    assert table().splitlines()[-1] == (
        "| weather-api | open | 100% (3/3) recent, opened by 2 failures in a row, "
        "1 failed trial | 10 s |"
    )


@pytest.mark.parametrize("shown", [True, False])
async def test_error_placeholder_is_the_failure_text_only_when_allowed(
    session: Any, shown: bool
) -> None:
    use(
        show_exception_text=shown,
        step_failed="{service} failed: {error}",
        failed="Sorry, {service} is down{error}. {retry}",
        error="Oops: {error}",
    )
    weather = make_async_tool()
    handler = make_handler(weather)
    await handler(user_message("fail"))

    @cb.guard
    async def buggy(message: Message) -> None:
        raise KeyError("internal detail")

    await buggy(user_message("x"))
    steps = [s[3] for s in summary(session) if s[0] == "update_message"]
    replies = [s[3] for s in summary(session) if s[2] == "Assistant"]
    if shown:
        assert steps == [f"Weather-api failed: cannot reach {SECRET}"]
        assert replies == [
            f"Sorry, weather-api is downcannot reach {SECRET}. It will be retried shortly.",
            "Oops: 'internal detail'",
        ]
    else:
        assert steps == ["Weather-api failed:"]
        assert replies == [
            "Sorry, weather-api is down. It will be retried shortly.",
            "Oops:",
        ]
        assert "hunter2" not in repr(session.emit.call_args_list)
        assert "internal detail" not in repr(session.emit.call_args_list)


async def test_show_exception_text_reaches_the_guard_reply_too(session: Any) -> None:
    # The README promises exception text "in tool steps and replies" when allowed: the
    # reply to a failed protected call carries the failure the breaker saw.
    use(show_exception_text=True)
    weather = make_async_tool()

    @cb.guard
    async def wrapped(message: Message) -> None:
        try:
            await weather("fail")
        except ConnectionError as err:
            raise RuntimeError("tool chain broke") from err

    await wrapped(user_message("x"))
    weather_breaker = chainlit_breaker.get_breaker("weather-api")
    weather_breaker.force_open()
    await wrapped(user_message("y"))  # a rejection: nothing failed, nothing to show
    replies = [s[3] for s in summary(session) if s[2] == "Assistant"]
    assert replies == [
        "Sorry, weather-api did not answer this time. Please try again.\n\n"
        f"ConnectionError: cannot reach {SECRET}",
        "Sorry, weather-api is temporarily unavailable. "
        "It stays off until an operator turns it back on.",
    ]


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_a_callable_object_is_a_tool(session: Any, kind: str) -> None:
    use()

    class Lookup:
        def __call__(self, city: str) -> str:
            return f"found {city}"

    class AsyncLookup:
        async def __call__(self, city: str) -> str:
            return f"found {city}"

    tool = cb.tool("lookup")(Lookup() if kind == "sync" else AsyncLookup())
    assert await tool("oslo") == "found oslo"
    assert summary(session) == [
        ("new_message", "tool", type(tool.__wrapped__).__name__, "", False),
        ("update_message", "tool", type(tool.__wrapped__).__name__, "found oslo", False),
    ]
