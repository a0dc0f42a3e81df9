"""Projects in Debian's Chromium against a real server whose routed model is a loopback
upstream (it records what the model is sent): a project made with instructions, two turns
in it that both carry them, the sidebar's projects, pinned and recent chats, a search that
jumps to the matching message, moving a chat in, and deleting the project with its chats."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from chat.tests.browser.conftest import Tab, browser, playwright, wait_until  # noqa: F401  (fixtures)
from chat.tests.live import LiveServer
from chat.tests.loopback import Answer, Loopback, openai_stream

INSTRUCTIONS = "Always answer in French."
USAGE = {"prompt_tokens": 20, "completion_tokens": 3, "total_tokens": 23}


class Upstream(Loopback):
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        super().__init__(self.answer)

    def answer(self, path: str, headers: Mapping[str, str], raw: bytes) -> Answer:
        body = json.loads(raw)
        with self.lock:
            self.bodies.append(body)
            number = len(self.bodies)
        return openai_stream(body["model"], {"role": "assistant", "content": f"Réponse {number}."}, "stop", USAGE)


@pytest.fixture(scope="module")
def site() -> Iterator[tuple[LiveServer, Upstream]]:
    upstream = Upstream()
    routes = {
        "upstreams": {"up": {"base_url": f"{upstream.url}/v1", "api_key": "sk-up"}},
        "models": {"gpt-projects": {"deployments": [{"upstream": "up"}], "context_length": 128000}},
    }
    server = LiveServer(routes=routes)
    yield server, upstream
    server.stop()
    upstream.close()


def _send(page: Any, text: str, answers: int) -> None:
    page.fill("#input", text)
    page.keyboard.press("Enter")
    wait_until(
        page,
        f"document.querySelectorAll('article.assistant:not(.streaming) .bubble').length === {answers} && "
        "[...document.querySelectorAll('article.assistant .bubble')].every(b => b.textContent.startsWith('Réponse'))",
        timeout=30_000,
    )


def _row_button(page: Any, list_id: str, title: str, label: str) -> None:
    row = page.locator(f"#{list_id} li", has_text=title)
    row.hover()
    row.get_by_role("button", name=label, exact=True).click()


def test_a_project_with_instructions_pins_search_move_and_delete(browser: Any, site: Any) -> None:  # noqa: F811
    server, upstream = site
    tab = Tab(browser, server.base_url)
    try:
        page = tab.open("/")
        page.click("#new-project")
        page.fill("#project-form-name", "Lanterns")
        page.fill("#project-form-instructions", INSTRUCTIONS)
        page.click("#project-save")
        page.wait_for_selector("#project-bar:not([hidden])")
        assert page.inner_text("#project-name") == "Lanterns"
        page.select_option("#model", "gpt-projects")

        _send(page, "What is a lantern?", 1)
        _send(page, "And a candle?", 2)
        # Both turns carry the instructions (after the server's own persona prompt).
        firsts = [b["messages"][0] for b in upstream.bodies]
        assert [(m["role"], m["content"].endswith("\n\n" + INSTRUCTIONS)) for m in firsts] == [("system", True)] * 2
        assert [m["role"] for m in upstream.bodies[1]["messages"]] == ["system", "user", "assistant", "user"]
        assert page.inner_text("#conversation-title") == "Lanterns / What is a lantern?"
        wait_until(page, "document.querySelectorAll('#conversations li').length === 1", timeout=5_000)
        tab.shot("projects-01-in-a-project")

        page.click("#project-back")
        page.wait_for_selector("#project-bar", state="hidden")
        wait_until(page, "document.querySelector('#projects li .count')?.textContent === '1'", timeout=5_000)
        page.wait_for_load_state("networkidle")
        assert page.locator("#conversations li").count() == 0  # a project's chats are in the project
        page.click("#new-chat")
        _send(page, "Tell me about rivers.", 1)
        wait_until(page, "document.querySelectorAll('#conversations li').length === 1", timeout=5_000)
        _row_button(page, "conversations", "Tell me about rivers.", "Pin")
        page.wait_for_selector("#pinned li:has-text('Tell me about rivers.')")
        assert page.is_hidden("#conversations li") or page.locator("#conversations li").count() == 0
        tab.shot("projects-02-pinned")

        # Search everywhere: the project's chat, with the line that matched; a click shows it.
        page.fill("#search", "candle")
        page.wait_for_selector("#conversations li .excerpt")
        assert "And a candle?" in page.inner_text("#conversations li .excerpt")
        page.click("#conversations li a")
        page.wait_for_selector("article.user.found")
        assert page.inner_text("article.found .bubble") == "And a candle?"
        tab.shot("projects-03-found")

        # Move the pinned chat into the project.
        page.fill("#search", "")
        page.wait_for_selector("#pinned li")
        _row_button(page, "pinned", "Tell me about rivers.", "Move to a project")
        page.select_option("#move-project", label="Lanterns")
        page.click("#move-form button[type=submit]")
        wait_until(page, "document.querySelector('#projects li .count')?.textContent === '2'", timeout=5_000)

        # Delete the project, confirming: its two chats go with it.
        page.click("#projects li a")
        page.wait_for_selector("#project-bar:not([hidden])")
        page.click("#project-edit")
        page.once("dialog", lambda dialog: dialog.accept())
        page.click("#project-delete")
        page.wait_for_selector("#project-bar", state="hidden")
        wait_until(page, "document.querySelectorAll('#projects li').length === 0", timeout=5_000)
        left = page.evaluate("fetch('/api/conversations').then(r => r.json())")
        assert left["data"] == []
        assert not tab.errors, tab.errors
    finally:
        tab.close()
