"""Browser tests: Playwright's Python driver steering Debian's Chromium (no browser download)
against a live GhostGPT server. Screenshots of the main states go to test-artifacts/."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chat.tests.conftest import require_service
from chat.tests.live import ROOT, LiveServer

CHROMIUM = os.environ.get("GHOSTGPT_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]


def wait_until(page: Any, expression: str, timeout: int) -> None:
    """`page.wait_for_function` for pages with a CSP: Playwright compiles a string predicate
    with `new Function` inside the page, which a policy without 'unsafe-eval' refuses (as it
    should); `evaluate` runs through DevTools instead."""
    deadline = time.monotonic() + timeout / 1000
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} ms waiting for {expression}")
        page.wait_for_timeout(50)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    """Module-scoped: Playwright's sync API keeps an event loop running on this thread while
    it is open, which later tests' asyncio.run() would trip over."""
    if not Path(CHROMIUM).exists():
        require_service("Debian's chromium", f"{CHROMIUM} is missing (make test installs it as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Any) -> Iterator[Any]:
    chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
    yield chromium
    chromium.close()


@pytest.fixture(scope="module")
def site() -> Iterator[LiveServer]:
    server = LiveServer()
    yield server
    server.stop()


class Tab:
    """One browser context (its own cookies) and page, with console errors collected."""

    def __init__(self, browser: Any, base_url: str, locale: str = "en-US") -> None:
        self.context = browser.new_context(locale=locale, base_url=base_url, viewport={"width": 1280, "height": 800})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on(
            "console",
            lambda m: self.errors.append(m.text) if m.type == "error" and "status of 4" not in m.text else None,
        )

    def open(self, path: str = "/") -> Any:
        self.page.goto(path)
        self.page.wait_for_selector("body[data-ready=true]", timeout=30_000)
        return self.page

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=False)

    def close(self) -> None:
        """Stops an answer the test left running, so it cannot hold the model up for the next test."""
        try:
            if self.page.is_visible("#stop"):
                self.page.click("#stop", timeout=2000)
                self.page.wait_for_selector("#stop", state="hidden", timeout=10_000)
        except Exception:  # the page may be gone or elsewhere; closing is what matters
            pass
        self.context.close()


@pytest.fixture
def tabs(browser: Any, site: LiveServer) -> Iterator[Any]:
    opened: list[Tab] = []

    def open_tab(locale: str = "en-US") -> Tab:
        tab = Tab(browser, site.base_url, locale)
        opened.append(tab)
        return tab

    yield open_tab
    errors = [e for tab in opened for e in tab.errors]
    for tab in opened:
        tab.close()
    assert not errors, f"errors in the page: {errors}"
