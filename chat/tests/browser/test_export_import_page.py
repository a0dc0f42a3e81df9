"""Taking one's history away and back, in Debian's Chromium: a ChatGPT export imported through
the sidebar shows its chats with their branches (and says which files it did not hold); the
whole history downloaded as a ZIP and imported by another browser (another person)
reproduces the same chats, branches and branch on screen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .conftest import wait_until

CHATGPT = Path(__file__).resolve().parents[1] / "fixtures" / "imports" / "chatgpt-conversations.json"


def _import(page: Any, path: Path, chats: int) -> None:
    page.set_input_files("#import-file", str(path))
    wait_until(page, f"document.querySelectorAll('#conversations li').length === {chats}", timeout=60_000)


def _shown(page: Any, title: str) -> list[str]:
    """The chat's messages on screen, with the branch switcher where there is one."""
    page.click(f"#conversations li a:has-text('{title}')")
    page.wait_for_selector("article.msg")
    wait_until(page, f"document.getElementById('conversation-title').textContent === {title!r}", timeout=5_000)
    return page.eval_on_selector_all(
        "article.msg",
        "(all) => all.map(a => a.querySelector('.bubble').textContent + ' '"
        " + (a.querySelector('.branches')?.textContent || ''))",
    )


def test_a_chatgpt_export_imports_and_the_whole_history_moves_to_another_person(tabs: Any, tmp_path: Path) -> None:
    first = tabs()
    page = first.open("/")
    _import(page, CHATGPT, 2)
    # The files ChatGPT's export names but does not hold are said, not silently dropped.
    page.wait_for_selector("[role=alert]:has-text('notes.pdf')")
    lanterns = _shown(page, "Ghost lanterns")
    assert lanterns[0].startswith("Why do lanterns glow in this photo?")
    assert lanterns[1].startswith("A regenerated answer: phosphorescence.") and "2/2" in lanterns[1]
    first.shot("import-01-chatgpt")

    with page.expect_download() as download:
        page.click("a[href='/api/export']")
    archive = tmp_path / "export.zip"
    download.value.save_as(archive)

    second = tabs()
    other = second.open("/")
    assert other.locator("#conversations li").count() == 0  # another person: nothing yet
    _import(other, archive, 2)
    assert _shown(other, "Ghost lanterns") == lanterns
    titles = sorted(page.eval_on_selector_all("#conversations li .name", "(all) => all.map(n => n.textContent)"))
    for title in titles:
        assert _shown(other, title) == _shown(page, title)
    second.shot("import-02-from-the-zip")
