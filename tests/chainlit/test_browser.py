"""In a real browser: Debian's headless Chromium driven by Playwright against the demo app,
so what the user sees (the rejection reply, the red tool step, the /breakers table) is
checked in the rendered page."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from .test_e2e import BREAKERS_TOML, DEMO, chainlit_server

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.timeout(180)]


@pytest.fixture
def chromium() -> Path:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("CI must have Debian's chromium (scripts/test.sh installs it)")
        pytest.skip("/usr/bin/chromium is not installed (apt-get install chromium)")
    return CHROMIUM


async def test_user_sees_the_open_circuit_in_the_browser(chromium: Path, tmp_path: Path) -> None:
    from playwright.async_api import async_playwright, expect

    (tmp_path / ".chainlit").mkdir()
    (tmp_path / ".chainlit" / "breakers.toml").write_text(BREAKERS_TOML)
    with (
        chainlit_server(DEMO, tmp_path) as url,
        tempfile.TemporaryDirectory(prefix="cb-chromium-") as profile,
    ):
        async with async_playwright() as pw:
            browser = await pw.chromium.launch_persistent_context(
                profile,
                executable_path=str(chromium),
                args=[
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                ],
            )  # fmt: skip
            try:
                page = await browser.new_page()
                await page.goto(url)
                answers = page.locator('[data-step-type="assistant_message"]')
                await expect(answers.first).to_contain_text("chainlit_breaker demo", timeout=30_000)

                async def say(text: str, expected: str) -> None:
                    before = await answers.count()
                    box = page.locator("#chat-input")
                    await box.fill(text)
                    await box.press("Enter")
                    await expect(answers.nth(before)).to_contain_text(expected, timeout=15_000)

                await say("/weather fail", "The weather backend will now")
                await say("weather in Paris", "did not answer this time")
                await say("weather in Paris", "It will be retried in 3 s.")
                await say("weather in Paris", "Sorry, the weather service is temporarily")
                # Each failed or rejected call is a "Used weather lookup" step marked with
                # Chainlit's red error icon; the rejected one, opened, says the circuit is
                # open instead of showing a stack trace.
                steps = page.locator('button[id="step-weather lookup"]')
                assert await steps.count() == 3
                errors = page.locator("svg.lucide-circle-alert.fill-destructive")
                assert await errors.count() == 3  # two failures and one rejection
                await steps.last.click()
                await expect(
                    page.get_by_text("Circuit open: the weather service").first
                ).to_be_visible()
                body = await page.locator("body").inner_text()
                assert "Traceback" not in body
                assert "weather.internal" not in body
                assert "abc123" not in body
                # Typing "/" opens Chainlit's command menu (the demo registers "breakers"):
                # Enter picks the command, a second Enter sends it.
                before = await answers.count()
                box = page.locator("#chat-input")
                await box.fill("/breakers")
                await box.press("Enter")
                await box.press("Enter")
                await expect(answers.nth(before)).to_contain_text(
                    "weather-api (the weather service)"
                )
                table = page.locator("table").last
                await expect(table).to_contain_text("open")
                await expect(table).to_contain_text("Failure rate")
            finally:
                await browser.close()
