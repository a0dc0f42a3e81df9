"""Documents in Debian's Chromium against a real server (`make run`'s SQLite with sqlite-vec,
or PostgreSQL with pgvector) whose routed models are a loopback upstream that answers from
the sources it is sent, citing the one that holds the answer — as a model does.

A project with instructions and two PDFs answers with a citation that opens the viewer at
the right page; a follow-up question retrieves again; on a model whose context cannot hold
the files the line under the answer says what was cut; a file attached in the composer of a
new chat is read by its turns."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from chat.tests.browser.conftest import Tab, browser, playwright, wait_until  # noqa: F401  (fixtures)
from chat.tests.live import LiveServer
from chat.tests.loopback import Answer, Loopback, openai_stream
from tools.tests.fixtures import text_pdf

INSTRUCTIONS = "Answer briefly."
USAGE = {"prompt_tokens": 200, "completion_tokens": 8, "total_tokens": 208}
ISLAND = [
    "The lighthouse of Varnholm was built in 1871 from grey granite quarried on the island.",
    "Fishing boats leave the harbour at dawn; the catch is mostly cod and herring in winter.",
    "The annual lantern festival is held on the first Saturday of August by the old pier.",
]
TOWN = [
    "Eskeby has a market square paved with cobbles from the river bed.",
    "The Eskeby choir sings in the wooden church every Sunday at noon.",
    "The Eskeby bakery is famous for cardamom buns baked before sunrise.",
]
# Each page padded with parish records, so that the two files (about 1,300 tokens) fit
# gpt-docs whole and gpt-small only in part.
FILLER = " ".join(
    f"Parish record {n} notes the weather, the tides and the ships that called that week." for n in range(8)
)
LABEL = re.compile(r"^\[(\d+)\] (.+?)(?:, page (\d+))?:$", re.MULTILINE)


class Upstream(Loopback):
    """Cites the first source whose text holds the question's keyword (after "about ")."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        super().__init__(self.answer)

    def answer(self, path: str, headers: Mapping[str, str], raw: bytes) -> Answer:
        body = json.loads(raw)
        with self.lock:
            self.bodies.append(body)
        prompt = body["messages"][-1]["content"]
        keyword = prompt.split("about ", 1)[-1].split("?", 1)[0].strip().lower()
        cited = "no source"
        for found in LABEL.finditer(prompt):
            text = prompt[found.end() :].split("\n\n[", 1)[0]
            if keyword in text.lower():
                cited = f"[{found.group(1)}]"
                break
        return openai_stream(body["model"], {"role": "assistant", "content": f"It says so {cited}."}, "stop", USAGE)


@pytest.fixture(scope="module")
def site() -> Iterator[tuple[LiveServer, Upstream]]:
    upstream = Upstream()
    routes = {
        "upstreams": {"up": {"base_url": f"{upstream.url}/v1", "api_key": "sk-up"}},
        "models": {
            "gpt-docs": {"deployments": [{"upstream": "up"}], "context_length": 128000},
            # Room for the question, the answer and one page or two: the files do not fit.
            "gpt-small": {"deployments": [{"upstream": "up"}], "context_length": 1400},
        },
    }
    server = LiveServer(routes=routes, env={"GHOSTGPT_DOCUMENT_ANSWER_TOKENS": "256"})
    yield server, upstream
    server.stop()
    upstream.close()


def _pdf(name: str, pages: list[str]) -> dict[str, Any]:
    return {"name": name, "mimeType": "application/pdf", "buffer": text_pdf([f"{text} {FILLER}" for text in pages])}


def _ask(page: Any, text: str, answers: int) -> str:
    page.fill("#input", text)
    page.keyboard.press("Enter")
    wait_until(
        page,
        f"document.querySelectorAll('article.assistant:not(.streaming) .bubble').length === {answers} && "
        "[...document.querySelectorAll('article.assistant .bubble')].every(b => b.textContent.startsWith('It says'))",
        timeout=60_000,
    )
    return page.locator("article.assistant").nth(answers - 1).inner_text()


def _open_citation(tab: Tab, answer: int, expected_page: int, shot: str = "") -> None:
    page = tab.page
    page.locator("article.assistant").nth(answer - 1).locator("button.cite").first.click()
    wait_until(page, "document.querySelector('dialog.gg-viewer')?.dataset.rendered === 'true'", timeout=30_000)
    assert page.get_attribute("dialog.gg-viewer", "data-page") == str(expected_page)
    cited = page.locator("dialog.gg-viewer canvas.cited")
    assert cited.get_attribute("aria-label") == f"Page {expected_page}"
    if shot:
        tab.shot(shot)
    page.click("dialog.gg-viewer header button")


def test_a_project_s_pdfs_are_cited_to_the_page_on_every_turn(browser: Any, site: Any) -> None:  # noqa: F811
    server, upstream = site
    tab = Tab(browser, server.base_url)
    try:
        page = tab.open("/")
        page.click("#new-project")
        page.fill("#project-form-name", "Islands")
        page.fill("#project-form-instructions", INSTRUCTIONS)
        page.click("#project-save")
        page.wait_for_selector("#project-bar:not([hidden])")
        page.click("#project-edit")
        page.set_input_files("#project-file-input", [_pdf("varnholm.pdf", ISLAND), _pdf("eskeby.pdf", TOWN)])
        wait_until(
            page, "document.querySelectorAll('#project-files-list li[data-status=ready]').length === 2", timeout=90_000
        )
        assert "3 pages" in page.inner_text("#project-files-list")
        tab.shot("documents-01-project-files")
        page.click("#project-dialog header button")
        page.select_option("#model", "gpt-docs")

        # The files fit: they go whole, page by page, each page a source to cite.
        answer = _ask(page, "What do they say about lantern festival?", 1)
        assert "Whole documents: 2 files" in answer, answer
        sent = upstream.bodies[-1]["messages"]
        assert sent[0]["role"] == "system" and sent[0]["content"].endswith(INSTRUCTIONS)
        assert "[3] varnholm.pdf, page 3:" in sent[-1]["content"]
        _open_citation(tab, 1, 3, "documents-02-cited-page")

        # A follow-up on a model whose context cannot hold both files: retrieved again, the
        # best passages only, and the line says what did not fit.
        page.select_option("#model", "gpt-small")
        answer = _ask(page, "And what about cardamom?", 2)
        last = upstream.bodies[-1]["messages"][-1]["content"]
        assert "eskeby.pdf, page 3:\nThe Eskeby bakery" in last, last
        assert re.search(r"\d+ passages? from \d files? · cut: \d of 6 pages did not fit", answer), answer
        _open_citation(tab, 2, 3)
        tab.shot("documents-03-cut")
        assert not tab.errors, tab.errors
    finally:
        tab.close()


def test_a_file_attached_in_a_new_chat_is_read_by_its_turns(browser: Any, site: Any) -> None:  # noqa: F811
    server, upstream = site
    tab = Tab(browser, server.base_url)
    try:
        page = tab.open("/")
        page.select_option("#model", "gpt-docs")
        page.set_input_files("#file", [_pdf("varnholm.pdf", ISLAND)])
        wait_until(
            page,
            "!document.querySelector('#chips progress') && document.querySelectorAll('#chips .chip').length === 1",
            timeout=90_000,
        )
        answer = _ask(page, "What do they say about herring?", 1)
        assert "Whole document" in answer and "[2]" in answer, answer
        answer = _ask(page, "And about granite?", 2)
        assert "[1]" in answer, answer
        assert "[1] varnholm.pdf, page 1:" in upstream.bodies[-1]["messages"][-1]["content"]
        _open_citation(tab, 2, 1)
        assert not tab.errors, tab.errors
    finally:
        tab.close()


def test_a_file_past_the_json_body_limit_uploads_through_the_server(site: Any) -> None:
    """The ASGI body limit (and nginx's) lets a document through up to its own limit, not the
    JSON APIs' 10 MB."""
    import io

    import httpx
    from pypdf import PdfReader, PdfWriter
    from pypdf.generic import StreamObject

    server, _ = site
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(text_pdf(ISLAND))))
    padding = StreamObject()
    padding.set_data(b"\0" * (11 * 1024 * 1024))  # an unreferenced object: pages read as before
    writer._add_object(padding)
    buffer = io.BytesIO()
    writer.write(buffer)
    assert buffer.tell() > 11 * 1024 * 1024
    headers = {"Authorization": f"Bearer {server.api_key}"}
    response = httpx.post(
        server.base_url + "/api/documents",
        files={"file": ("big.pdf", buffer.getvalue(), "application/pdf")},
        headers=headers,
        timeout=60,
    )
    assert response.status_code == 202, response.text
    document = response.json()
    for _ in range(300):
        document = httpx.get(f"{server.base_url}/api/documents/{document['id']}", headers=headers).json()
        if document["status"] not in ("queued", "indexing"):
            break
        time.sleep(0.2)
    assert document["status"] == "ready" and document["pages"] == 3, document
