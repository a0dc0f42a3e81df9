"""Choosing a project's embeddings model in Debian's Chromium, against a live server that
routes an embeddings model to a loopback upstream: the dialog offers it beside the built-in
one, the project's file is embedded by it, and choosing the built-in one again embeds the
file again (announced on the page)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from chat.tests.browser.conftest import Tab, browser, playwright, wait_until  # noqa: F401  (fixtures)
from chat.tests.live import LiveServer, wait_for

from .test_documents_routed_live import SECTIONS, Upstream, _routes


@pytest.fixture(scope="module")
def site() -> Iterator[tuple[LiveServer, Upstream]]:
    upstream = Upstream()
    server = LiveServer(routes=_routes(upstream))  # unpriced: the browser's own account pays nothing
    yield server, upstream
    server.stop()
    upstream.close()


def _project(page: Any) -> dict[str, Any]:
    projects = page.evaluate("fetch('/api/projects').then(r => r.json())")["data"]
    return page.evaluate(f"fetch('/api/projects/{projects[0]['id']}').then(r => r.json())")  # type: ignore[no-any-return]


def test_a_project_s_files_are_read_by_the_embeddings_model_chosen_in_its_dialog(browser: Any, site: Any) -> None:  # noqa: F811
    server, upstream = site
    tab = Tab(browser, server.base_url)
    try:
        page = tab.open("/")
        page.click("#new-project")
        page.wait_for_selector("#project-form-embedding-label:not([hidden])")
        options = page.eval_on_selector_all("#project-form-embedding option", "os => os.map(o => o.value)")
        assert options == ["all-MiniLM-L6-v2", "text-embedding-3-small"]
        page.fill("#project-form-name", "Harbour")
        page.select_option("#project-form-embedding", "text-embedding-3-small")
        page.click("#project-save")
        page.wait_for_selector("#project-bar:not([hidden])")
        assert _project(page)["embedding_model"] == "text-embedding-3-small"

        page.click("#project-edit")
        assert page.input_value("#project-form-embedding") == "text-embedding-3-small"
        text = "\n\n".join(SECTIONS[:20]).encode()
        page.set_input_files("#project-file-input", [{"name": "harbour.txt", "mimeType": "text/plain", "buffer": text}])
        wait_until(page, "document.querySelector('#project-files-list li[data-status=ready]')", timeout=60_000)
        embedded = [t for batch in upstream.embedded for t in batch]
        assert embedded and "Section 0." in embedded[0], "the file's passages went to the routed model"
        tab.shot("documents-routed-01-dialog")

        calls = len(upstream.embedded)
        page.select_option("#project-form-embedding", "all-MiniLM-L6-v2")
        page.click("#project-save")
        page.wait_for_selector("#project-dialog", state="hidden")
        # Announced unless the job was quicker than the answer to the save.
        announced = page.text_content("#announcer") or ""
        assert announced in ("", "1 file is being read again by all-MiniLM-L6-v2."), announced
        wait_for(lambda: _project(page)["embedding_pending"] == 0, "the file embedded again", within=60)
        project = _project(page)
        assert project["embedding_model"] == "all-MiniLM-L6-v2"
        files = page.evaluate(f"fetch('/api/documents?project={project['id']}').then(r => r.json())")["data"]
        assert [f["embedding_model"] for f in files] == ["all-MiniLM-L6-v2"]
        assert len(upstream.embedded) == calls, "the built-in model runs here, nothing goes upstream"
        assert not tab.errors, tab.errors
    finally:
        tab.close()
