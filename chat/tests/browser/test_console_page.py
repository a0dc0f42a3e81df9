"""The console and the operators' page in Chromium against a live server: sign in with a
key, create a key and call the API with it (the official SDK), see that request in the
requests list and in the usage chart's table at the right cost, the CSV equal to the
ledger, an operator's top-up reaching the holder's balance, every page in light and dark
(screenshots in test-artifacts/), Russian, and the phone layout."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from openai import OpenAI
from pysqlite3 import dbapi2 as sqlite3

from chat.tests.live import LiveServer, funded_account, manage

from .conftest import Tab, wait_until

ADMIN_KEY = "adm-console-" + "k" * 30
PROMPT_PRICE, COMPLETION_PRICE = Decimal(40), Decimal(80)  # per million tokens
PAGES = {
    "console": ["overview", "usage", "keys", "requests", "rates", "alerts"],
    "console/ops": ["accounts", "models", "traffic", "audit", "webhooks"],
}


@pytest.fixture(scope="module")
def console_site() -> Iterator[LiveServer]:
    env = {
        "GHOSTGPT_ADMIN_KEY": ADMIN_KEY,
        "GHOSTGPT_TRAFFIC_SAMPLE_SECONDS": "1",
        "GHOSTGPT_CONSOLE_REQUEST_TEXT": "40",
    }
    server = LiveServer(env=env)
    manage(server, "set_price", "ghostgpt", "--prompt", str(PROMPT_PRICE), "--completion", str(COMPLETION_PRICE))
    yield server
    server.stop()


@pytest.fixture
def open_tab(browser: Any, console_site: LiveServer) -> Iterator[Any]:
    opened: list[Tab] = []

    def make(locale: str = "en-US", viewport: dict[str, int] | None = None) -> Tab:
        tab = Tab(browser, console_site.base_url, locale)
        if viewport:
            tab.page.set_viewport_size(viewport)
        opened.append(tab)
        return tab

    yield make
    errors = [e for tab in opened for e in tab.errors]
    for tab in opened:
        tab.context.close()
    assert not errors, f"errors in the page: {errors}"


def ledger_charges(server: LiveServer, account_id: int) -> Decimal:
    """What requests took from the account, straight from the server's database."""
    sql = "SELECT amount FROM chat_ledgerentry WHERE account_id = {} AND kind <> 'topup'"
    url = server.env.get("DATABASE_URL", "")
    if url.startswith("postgres"):
        import psycopg

        with psycopg.connect(url) as conn:
            rows = conn.execute(sql.format("%s"), [account_id]).fetchall()
    else:
        path = Path(server.env["GHOSTGPT_DATA_DIR"]) / "ghostgpt.sqlite3"
        with sqlite3.connect(path) as conn:
            rows = conn.execute(sql.format("?"), [account_id]).fetchall()
    return -sum((Decimal(str(amount)) for (amount,) in rows), Decimal(0))


def shown_money(page: Any, value: str) -> str:
    """How the page formats a money string (console-kit.js `money`)."""
    return page.evaluate(
        """(value) => { const n = Number(value), size = Math.abs(n);
            const digits = size >= 1 || n === 0 ? 2 : size >= 0.01 ? 4 : 6;
            return n.toLocaleString(document.documentElement.lang || undefined,
              {minimumFractionDigits: 2, maximumFractionDigits: digits}); }""",
        value,
    )


def show(page: Any, tab: str) -> None:
    page.click(f"[data-tab={tab}]")
    page.wait_for_selector(f"section#{tab}:not([hidden])")


def sign_in(page: Any, secret: str) -> None:
    page.fill("#signin-key", secret)
    page.click("#signin-form button[type=submit]")
    page.wait_for_selector("#tabs:not([hidden])", timeout=10_000)


def test_holder_and_operator_flow(open_tab: Any, console_site: LiveServer) -> None:
    account_id, secret = funded_account(console_site.base_url, ADMIN_KEY, "console-holder", Decimal(5))
    holder = open_tab()
    page = holder.open("/console")
    assert page.is_visible("#signin") and not page.is_visible("#overview")
    holder.shot("console-signin-light")
    page.fill("#signin-key", "gg-not-a-key")
    page.click("#signin-form button[type=submit]")
    page.wait_for_selector("#failure:not([hidden])")
    sign_in(page, secret)
    wait_until(page, "document.getElementById('ov-balance').textContent.includes('5')", 10_000)
    assert page.evaluate("document.cookie").find("sessionid") == -1, "the session cookie is HttpOnly"

    # Create a key in the console; it is shown once; use it with the official SDK.
    show(page, "keys")
    page.fill("#key-name", "from-the-console")
    page.select_option("#key-scope", "inference")
    page.click("#key-form button[type=submit]")
    page.wait_for_selector("#secret-dialog[open]")
    new_key = page.input_value("#secret-value")
    assert new_key.startswith("gg-")
    page.click("#secret-dialog [data-close]")
    page.wait_for_selector("#keys-table tbody tr:has-text('from-the-console')")

    sdk = OpenAI(base_url=console_site.base_url + "/v1", api_key=new_key, max_retries=0)
    raw = sdk.chat.completions.with_raw_response.create(
        model="ghostgpt", messages=[{"role": "user", "content": "Say hi"}], max_tokens=12, seed=1
    )
    request_id = raw.headers["x-request-id"]
    answer = raw.parse().choices[0].message.content
    usage = raw.parse().usage
    expected = (PROMPT_PRICE * usage.prompt_tokens + COMPLETION_PRICE * usage.completion_tokens) / 1_000_000

    show(page, "requests")
    row = page.wait_for_selector(f"#requests-table tr[data-request='{request_id}']", timeout=10_000)
    cells = row.query_selector_all("td")
    assert cells[1].inner_text() == "ghostgpt" and cells[2].inner_text() == "chat"
    assert "from-the-console" in cells[3].inner_text()
    assert cells[4].inner_text() == str(usage.prompt_tokens) and cells[5].inner_text() == str(usage.completion_tokens)
    assert cells[6].inner_text() == shown_money(page, str(expected))
    assert cells[7].inner_text() == "OK"
    assert cells[8].inner_text().endswith((" ms", " s")) and cells[9].inner_text().endswith((" ms", " s"))
    cells[10].query_selector("summary").click()  # the operator keeps 40 characters of each side
    text = " ".join(cells[10].inner_text().split())
    assert "Prompt: Say hi" in text and "Answer: " + " ".join(answer[:40].split()) in text

    show(page, "usage")
    page.wait_for_selector("#chart-cost canvas")
    page.wait_for_selector("#table-cost thead th:has-text('ghostgpt')")
    total_cell = page.inner_text("#table-cost tfoot td:last-child")
    assert total_cell == shown_money(page, str(expected)), (total_cell, expected)
    holder.shot("console-usage-light")

    # The CSV behind the link equals the ledger.
    href = page.get_attribute("#usage-csv", "href")
    exported = page.evaluate("async (href) => (await fetch(href)).text()", href)
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert sum(Decimal(r["cost"]) for r in rows) == ledger_charges(console_site, account_id) == expected

    # The operator tops the account up; the holder sees it.
    ops_tab = open_tab()
    ops = ops_tab.open("/console/ops")
    sign_in(ops, ADMIN_KEY)
    ops.fill("#accounts-q", "console-holder")
    ops.click("#accounts-form button[type=submit]")
    account_row = f"#accounts-table tr[data-account='{account_id}']"
    ops.wait_for_selector(account_row)
    ops.click(f"{account_row} button.primary")
    ops.wait_for_selector("#topup-dialog[open]")
    ops.fill("#topup-amount", "7.5")
    ops.click("#topup-form button[type=submit]")
    wait_until(ops, "document.getElementById('topup-result').textContent.length > 0", 10_000)
    ops.click("#topup-dialog [data-close]")
    balance = Decimal(5) + Decimal("7.5") - expected
    wait_until(
        ops,
        f'document.querySelector("{account_row} [data-balance]").textContent === {shown_money(ops, str(balance))!r}',
        10_000,
    )
    ops.wait_for_selector("#topups-table tbody tr:has-text('console-holder')")
    show(page, "overview")
    wait_until(
        page, f"document.getElementById('ov-balance').textContent === {shown_money(page, str(balance))!r}", 10_000
    )

    # The operator's top-up is in the audit trail, filtered by action.
    show(ops, "audit")
    ops.fill("#audit-action", "topup")
    ops.click("#audit-form button[type=submit]")
    ops.wait_for_selector(f"#audit-table tbody tr:has-text('#{account_id}')")
    assert "topup" in ops.inner_text("#audit-table tbody")
    assert "action=topup" in (ops.get_attribute("#audit-csv", "href") or "")

    show(ops, "models")
    ops.wait_for_selector("#models-table tr[data-model='ghostgpt']")
    show(ops, "traffic")
    wait_until(ops, "document.querySelectorAll('#traffic-table tbody tr td.num').length > 0", 15_000)
    ops.wait_for_selector("#chart-rps canvas")

    # Signing out ends the session: the API answers 401 and the page asks for a key again.
    page.click("#sign-out")
    page.wait_for_selector("#signin:not([hidden])")
    status = page.evaluate("async () => (await fetch('/console/api/overview')).status")
    assert status == 401


def test_screenshots_light_dark_russian_and_phone(open_tab: Any, console_site: LiveServer) -> None:
    _, secret = funded_account(console_site.base_url, ADMIN_KEY, "console-screens", Decimal(3))
    sdk = OpenAI(base_url=console_site.base_url + "/v1", api_key=secret, max_retries=0)
    for _ in range(2):
        sdk.chat.completions.create(model="ghostgpt", messages=[{"role": "user", "content": "Hi"}], max_tokens=8)
    for path, tabs in PAGES.items():
        for scheme in ("light", "dark"):
            tab = open_tab()
            tab.page.emulate_media(color_scheme=scheme)
            page = tab.open(f"/{path}")
            sign_in(page, ADMIN_KEY if path.endswith("ops") else secret)
            for name in tabs:
                show(page, name)
                page.wait_for_load_state("networkidle")
                tab.shot(f"{path.replace('/', '-')}-{name}-{scheme}")
            background = page.evaluate("getComputedStyle(document.body).backgroundColor")
            assert (background == "rgb(21, 23, 26)") == (scheme == "dark"), background

    russian = open_tab(locale="ru-RU")
    page = russian.open("/console")
    assert "Войти" in page.inner_text("#signin")
    sign_in(page, secret)
    assert "Баланс" in page.inner_text("#overview")
    russian.shot("console-overview-ru")

    phone = open_tab(viewport={"width": 390, "height": 844})
    page = phone.open("/console")
    sign_in(page, secret)
    show(page, "usage")
    page.wait_for_selector("#chart-cost canvas")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways on a phone ({width}px)"
    phone.shot("console-usage-phone")


@pytest.fixture(autouse=True)
def _artifacts_dir() -> None:
    os.makedirs(Path(__file__).resolve().parents[3] / "test-artifacts", exist_ok=True)
