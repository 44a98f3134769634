"""A Chainlit app that shows chainlit_breaker with no Redis and no API key: a fake
streaming LLM, an async tool and a legacy sync tool you can break from the chat.

Run it from this folder:  chainlit run app.py -w
Chat commands: /weather fail|hang|ok, /stocks fail|hang|ok, /llm fail|ok, /breakers.
Set DEMO_AUTH=1 to log in as admin/admin (may run /breakers reset|open|close) or user/user.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import time
from collections.abc import AsyncIterator

import chainlit as cl

from chainlit_breaker.integrations import chainlit as cb

# Re-read on every hot reload; breakers, their state and the notices are not duplicated.
cb.setup()

# What each fake backend does next: "ok", "fail" or "hang". Plain module state is fine
# for a demo switch; breaker state itself lives in the breaker's store.
MODES: dict[str, str] = {"weather": "ok", "stocks": "ok", "llm": "ok"}


@cb.tool("weather-api", name="weather lookup", timeout=2.0)
async def get_weather(city: str) -> str:
    """An async tool (think httpx). Its breaker opens after repeated failures."""
    mode = MODES["weather"]
    if mode == "fail":
        raise ConnectionError("weather.internal:8443 refused the connection (token=abc123)")
    await asyncio.sleep(30 if mode == "hang" else 0.2)
    return f"{city}: 21 °C, light wind"


@cb.tool("stock-quotes", name="stock quote", timeout=2.0)
def get_quote(symbol: str) -> str:
    """A legacy blocking client: runs in a worker thread, its step still shows."""
    mode = MODES["stocks"]
    if mode == "fail":
        raise TimeoutError("quotes backend did not answer")
    time.sleep(8 if mode == "hang" else 0.2)  # a hung thread; the breaker stops new ones
    return f"{symbol.upper()}: 123.45 USD"


async def fake_llm(prompt: str, facts: list[str]) -> AsyncIterator[str]:
    """Streams an answer word by word; in "fail" mode the stream breaks half-way."""
    answer = "Here is what I found. " + " ".join(facts) if facts else f"You said: {prompt}"
    words = answer.split(" ")
    for i, word in enumerate(words):
        if MODES["llm"] == "fail" and i == len(words) // 2:
            raise ConnectionError("LLM stream reset by peer")
        await asyncio.sleep(0.02)
        yield word + (" " if i < len(words) - 1 else "")


def plain_answer(error: Exception, prompt: str, facts: list[str]) -> list[str]:
    """The language model's circuit is open: answer with what the tools found, if
    anything (else the guard says the model is unavailable)."""
    if not facts:
        raise error
    return ["The language model is not answering right now; here is what I found. ",
            " ".join(facts)]  # fmt: skip


HELP = """**chainlit_breaker demo.** Ask about the *weather in Paris* or a *stock quote for ACME*.

Break things and watch the breakers (3 failures open a circuit; it tries again after
15 s, the language model after 10 s):
- `/weather fail`, `/weather hang`, `/weather ok` (async tool)
- `/stocks fail`, `/stocks hang`, `/stocks ok` (legacy sync tool, runs in a thread)
- `/llm fail`, `/llm ok` (the streaming LLM breaks mid-answer)
- `/breakers` shows every breaker; admins can `/breakers reset|open|close <name>`.
- `/help` shows this again.
"""


@cl.on_chat_start
async def start() -> None:
    await cl.context.emitter.set_commands(
        [{"id": "breakers", "description": "Show circuit breakers", "icon": "activity",
          "button": False}]
    )  # fmt: skip
    await cl.Message(content=HELP).send()


_SWITCH = re.compile(r"^/(weather|stocks|llm)\s+(ok|fail|hang)\s*$", re.IGNORECASE)
# "weather in Paris", "What's the weather for new york?": up to three words of a place.
_NOT_A_PLACE = r"(?!(?:and|please|today|tomorrow|now|right|like|is|this|then)\b)"
_WORD = _NOT_A_PLACE + r"[^\W\d_][\w'-]*"
_CITY = re.compile(rf"weather (?:in|for|at) ({_WORD}(?: {_WORD}){{0,2}})", re.IGNORECASE)
_SYMBOL = re.compile(
    r"(?:stock|quote)s? (?:for|of) ([A-Za-z](?:[A-Za-z.]*[A-Za-z])?)", re.IGNORECASE
)


@cl.on_message
@cb.guard
async def main(message: cl.Message) -> None:
    text = message.content.strip()
    if switch := _SWITCH.match(text):
        backend, mode = (part.lower() for part in switch.groups())
        MODES[backend] = mode
        await cl.Message(content=f"The {backend} backend will now `{mode}`.").send()
        return
    if text.lower() == "/help":
        await cl.Message(content=HELP).send()
        return
    if text.startswith("/"):
        await cl.Message(content=f"I don't know `{text.split()[0]}`. Type `/help`.").send()
        return
    facts: list[str] = []
    if city := _CITY.search(text):
        facts.append(await get_weather(city.group(1).strip().title()))
    if symbol := _SYMBOL.search(text):
        try:
            facts.append(await get_quote(symbol.group(1)))
        except Exception:
            if not facts:
                raise  # nothing else to tell: the guard explains what is down
            facts.append("(Stock quotes are not available right now.)")
    await cb.stream_message("llm", fake_llm, text, facts, fallback=plain_answer)


if os.environ.get("DEMO_AUTH"):
    # Chainlit refuses to start with auth and no secret; a throwaway one is fine here.
    os.environ.setdefault("CHAINLIT_AUTH_SECRET", secrets.token_urlsafe(32))

    @cl.password_auth_callback
    def login(username: str, password: str) -> cl.User | None:
        if (username, password) == ("admin", "admin"):
            return cl.User(identifier="admin", metadata={"role": "admin"})
        if (username, password) == ("user", "user"):
            return cl.User(identifier="user", metadata={"role": "user"})
        return None
