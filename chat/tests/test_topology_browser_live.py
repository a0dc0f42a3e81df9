"""The browser product under `make up`, through nginx as a visitor meets it: Chromium sends a
chat message and watches the answer stream, signs in to the console, creates a share and opens
it in another browser. The CSRF origin check depends on the Host nginx forwards (the port
included), so none of this works with API keys alone. TLS terminated in front of nginx
(X-Forwarded-Proto from a trusted peer) passes the same checks for https origins."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .browser.conftest import CHROMIUM, FLAGS, wait_until
from .conftest import require_service
from .topology import Topology

ANSWER = "() => document.querySelector('article.assistant .bubble')?.textContent.length || 0"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        require_service("Debian's chromium", f"{CHROMIUM} is missing (make test installs it as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield chromium
        chromium.close()


def test_chat_console_and_share_in_a_browser_through_nginx(topology: Topology, browser: Any) -> None:
    # The operator names only the public https origin as trusted: a browser on nginx's own
    # address and port passes the origin check because nginx forwards the Host it was sent.
    assert f"127.0.0.1:{topology.port}" not in topology.settings["GHOSTGPT_CSRF_TRUSTED_ORIGINS"]
    errors: list[str] = []
    author = browser.new_context(base_url=topology.url)
    page = author.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto("/")
    page.wait_for_selector("body[data-ready=true]", timeout=30_000)
    page.click("#settings-toggle")
    page.fill("#opt-seed", "1")
    page.fill("#opt-max_tokens", "400")
    page.evaluate(
        """() => { window.__lengths = [];
        new MutationObserver(() => { const b = document.querySelector('article.assistant .bubble');
          if (b) window.__lengths.push(b.textContent.length); })
        .observe(document.getElementById('messages'), {subtree: true, childList: true, characterData: true}); }"""
    )
    page.fill("#input", "Write a long essay about the history of the sea.")
    page.keyboard.press("Enter")
    page.wait_for_selector("article.assistant:not(.streaming) .bubble, [role=alert]", timeout=120_000)
    assert page.locator("[role=alert]").count() == 0, page.inner_text("[role=alert]")  # e.g. a 403 csrf_failed
    assert len(set(page.evaluate("window.__lengths"))) >= 3, "the answer streamed in pieces"
    assert page.evaluate(ANSWER) > 20

    page.click("#share")  # a cookie-authenticated POST through nginx
    page.wait_for_selector("#share-dialog[open]")
    url = page.input_value("#share-url")
    assert url.startswith(topology.url + "/share/"), url
    visitor = browser.new_context()
    shared = visitor.new_page()
    shared.goto(url)
    shared.wait_for_selector("article.user .bubble")
    assert "history of the sea" in shared.inner_text("article.user .bubble")
    visitor.close()

    console = author.new_page()
    console.goto("/console")
    console.fill("#signin-key", topology.api_key)
    console.click("#signin-form button[type=submit]")  # the console's sign-in POST
    console.wait_for_selector("#tabs:not([hidden])", timeout=15_000)
    wait_until(console, "document.getElementById('ov-balance').textContent.trim().length > 0", 15_000)
    author.close()
    assert not errors, errors


def _session(base: str, headers: dict[str, str]) -> dict[str, str]:
    """An anonymous session's cookies, read from Set-Cookie (they are Secure under https, so a
    client's cookie jar would not send them back over this plain-http hop)."""
    response = httpx.post(base + "/api/session/bootstrap", headers=headers, timeout=30)
    assert response.status_code == 201, response.text
    return {name: value for name, value in response.cookies.items()}


def test_tls_in_front_of_nginx_passes_the_https_origin_check(topology: Topology) -> None:
    # A TLS terminator on a trusted address (loopback here) says the client used https.
    origin = f"https://127.0.0.1:{topology.port}"
    tls = {"X-Forwarded-Proto": "https"}
    cookies = _session(topology.url, tls)
    cookie = "; ".join(f"{name}={value}" for name, value in cookies.items())
    created = httpx.post(
        topology.url + "/api/conversations",
        json={"title": "Over TLS"},
        headers={**tls, "Cookie": cookie, "X-CSRFToken": cookies["csrftoken"], "Origin": origin},
        timeout=30,
    )
    assert created.status_code in (200, 201), created.text
    # The same https origin without the forwarded scheme is a cross-origin POST: refused.
    refused = httpx.post(
        topology.url + "/api/conversations",
        json={"title": "Not TLS"},
        headers={"Cookie": cookie, "X-CSRFToken": cookies["csrftoken"], "Origin": origin},
        timeout=30,
    )
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed", refused.text
