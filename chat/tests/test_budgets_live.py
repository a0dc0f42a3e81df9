"""Budgets on a key, a member and an account, against a real server and a loopback upstream.

The worst case of a request is held against every budget on its path in the same
transaction as the wallet's reservation: 200 concurrent requests against a budget of 100
worst cases let through 100. Over budget: 402 `budget_exceeded`, naming the budget and when
it resets, before the upstream is contacted, in every dialect. Settlement counts the real
cost; a new period starts from zero; the management API takes ours and LiteLLM's names.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from chat.tests.browser.conftest import Tab, browser, playwright, wait_until  # noqa: F401  (fixtures)
from chat.tests.fake_upstream import FakeUpstream
from chat.tests.live import LiveServer, funded_account, manage

ADMIN_KEY = "adm-budgets-" + "k" * 30
WORST = re.compile(r"may cost up to ([0-9.e-]+) USD")


@pytest.fixture(scope="module")
def site(fake: FakeUpstream) -> Iterator[LiveServer]:  # (chat/tests/conftest.py's loopback upstream)
    def via(mode: str) -> dict[str, str]:
        return {"base_url": f"{fake.url}/{mode}/v1", "api_key": "sk-upstream-for-budgets"}

    routes = {
        "upstreams": {"ok": via("ok"), "stall": via("stall")},
        "models": {
            "paid": {"deployments": [{"upstream": "ok"}]},
            "paid-slow": {"deployments": [{"upstream": "stall"}]},
        },
    }
    server = LiveServer(routes=routes, env={"GHOSTGPT_ADMIN_KEY": ADMIN_KEY})
    for model in ("paid", "paid-slow"):
        manage(server, "set_price", model, "--prompt", "3", "--completion", "7")
    yield server
    server.stop()


def _key(site: LiveServer, name: str) -> str:
    _, secret = funded_account(site.base_url, ADMIN_KEY, name, Decimal(1000))
    return secret


def _api(site: LiveServer, secret: str, method: str, path: str, body: Any = None) -> httpx.Response:
    return httpx.request(
        method, site.base_url + path, json=body, headers={"Authorization": f"Bearer {secret}"}, timeout=60
    )


def _ask(site: LiveServer, secret: str, model: str = "paid", **extra: Any) -> httpx.Response:
    body = {"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": "hello"}], **extra}
    return _api(site, secret, "POST", "/v1/chat/completions", body)


def _worst_case(site: LiveServer, secret: str, model: str) -> Decimal:
    """One request's worst case, as the 402 of a zero budget states it."""
    assert _api(site, secret, "PUT", "/api/v1/budget", {"budget": {"amount": "0", "period": None}}).status_code == 200
    refused = _ask(site, secret, model, stream=True)
    assert refused.status_code == 402, refused.text
    found = WORST.search(refused.json()["error"]["message"])
    assert found, refused.text
    return Decimal(found.group(1))


def test_concurrent_requests_never_pass_a_budget(site: LiveServer, fake: FakeUpstream) -> None:
    secret = _key(site, "concurrent-budget")
    worst = _worst_case(site, secret, "paid-slow")
    budget = {"budget": {"amount": str(worst * 100), "period": "day"}}
    assert _api(site, secret, "PUT", "/api/v1/budget", budget).status_code == 200

    async def one(client: httpx.AsyncClient, answered: list[int], everyone: asyncio.Event) -> int:
        body = {
            "model": "paid-slow",
            "stream": True,
            "max_tokens": 50,
            "messages": [{"role": "user", "content": "hello"}],
        }
        async with client.stream("POST", "/v1/chat/completions", json=body) as response:
            answered.append(response.status_code)
            if len(answered) == 200:
                everyone.set()
            # The answer streams for a minute; each stays open until all 200 have their status,
            # so all are in flight at once. Closed at its status, a request ended early and its
            # settlement gave back what it held beyond its cost, room that a late request may
            # rightly take: on a loaded machine a full PostgreSQL run admitted 101.
            await asyncio.wait_for(everyone.wait(), 120)
            return response.status_code

    async def all_at_once() -> list[int]:
        limits = httpx.Limits(max_connections=250, max_keepalive_connections=0)
        headers = {"Authorization": f"Bearer {secret}"}
        answered: list[int] = []
        everyone = asyncio.Event()
        async with httpx.AsyncClient(base_url=site.base_url, headers=headers, limits=limits, timeout=120) as client:
            return await asyncio.gather(*(one(client, answered, everyone) for _ in range(200)))

    statuses = asyncio.run(all_at_once())
    assert statuses.count(200) == 100 and statuses.count(402) == 100, sorted(set(statuses))


def test_over_budget_is_402_in_every_dialect_before_the_upstream(site: LiveServer, fake: FakeUpstream) -> None:
    secret = _key(site, "dialects")
    assert _api(site, secret, "PUT", "/api/v1/budget", {"max_budget": 0, "budget_duration": "1d"}).status_code == 200
    before = len(fake.requests)
    message = {"role": "user", "content": "hello"}
    calls = [
        ("/v1/chat/completions", {"model": "paid", "max_tokens": 20, "messages": [message]}),
        ("/v1/messages", {"model": "paid", "max_tokens": 20, "messages": [message]}),
        ("/v1/responses", {"model": "paid", "max_output_tokens": 20, "input": "hello"}),
        ("/v1beta/models/paid:generateContent", {"contents": [{"role": "user", "parts": [{"text": "hello"}]}]}),
    ]
    for path, body in calls:
        response = _api(site, secret, "POST", path, body)
        assert response.status_code == 402, (path, response.text)
        text = response.text  # each dialect's error shape; OpenAI's and the Responses API's carry the code
        assert "Budget exceeded: the account's daily budget of 0" in text and "resets at" in text, text
        if path in ("/v1/chat/completions", "/v1/responses"):
            assert response.json()["error"]["code"] == "budget_exceeded"
    assert len(fake.requests) == before  # no upstream was contacted


def test_settlement_counts_the_real_cost_and_a_new_period_starts_from_zero(site: LiveServer) -> None:
    secret = _key(site, "settles")
    assert (
        _api(site, secret, "PUT", "/api/v1/budget", {"budget": {"amount": "1", "period": "month"}}).status_code == 200
    )
    assert _ask(site, secret).status_code == 200
    state = _api(site, secret, "GET", "/api/v1/budget").json()["budget"]
    assert Decimal(state["held"]) == 0 and 0 < Decimal(state["spent"]) < Decimal("0.01")
    usage = _api(site, secret, "GET", "/api/v1/usage?group_by=model").json()
    assert Decimal(state["spent"]) == Decimal(str(usage["data"][0]["cost"]))  # the real cost, not the worst case
    # Last month's counters do not count this month.
    manage(site, "shell", "-c", "from chat.models import Budget; Budget.objects.update(period_key='1999-01', spent=5)")
    assert _ask(site, secret).status_code == 200
    assert Decimal(_api(site, secret, "GET", "/api/v1/budget").json()["budget"]["spent"]) < 1


def test_key_budgets_through_the_management_api(site: LiveServer) -> None:
    owner = _key(site, "key-budgets")
    made = _api(site, owner, "POST", "/api/v1/keys", {"name": "capped", "max_budget": 2, "budget_duration": "30d"})
    assert made.status_code == 201, made.text
    capped = made.json()
    assert (
        capped["max_budget"] == 2.0 and capped["budget_duration"] == "month" and capped["budget"]["period"] == "month"
    )
    assert (
        _api(site, owner, "POST", "/api/v1/keys", {"name": "odd", "max_budget": 2, "budget_duration": "3d"}).status_code
        == 400
    )
    assert _api(site, owner, "POST", "/api/v1/keys", {"name": "neg", "max_budget": -1}).status_code == 400
    # A key grants no budget larger than its own, nor lifts its own or the account's.
    wider = _api(
        site, capped["key"], "POST", "/api/v1/keys", {"name": "wider", "budget": {"amount": "3", "period": "day"}}
    )
    assert wider.status_code == 403, wider.text
    inherited = _api(site, capped["key"], "POST", "/api/v1/keys", {"name": "child"}).json()
    assert inherited["budget"]["amount"] == "2"
    assert _api(site, capped["key"], "PATCH", f"/api/v1/keys/{capped['id']}", {"max_budget": 100}).status_code == 403
    assert _api(site, capped["key"], "PUT", "/api/v1/budget", {"max_budget": None}).status_code == 403
    # The key's budget refuses once spent.
    assert (
        _api(
            site, owner, "PATCH", f"/api/v1/keys/{capped['id']}", {"budget": {"amount": "0", "period": "day"}}
        ).status_code
        == 200
    )
    refused = _ask(site, capped["key"])
    assert refused.status_code == 402 and "this key's daily budget" in refused.json()["error"]["message"]
    assert _api(site, owner, "PATCH", f"/api/v1/keys/{capped['id']}", {"budget": None}).status_code == 200
    assert _ask(site, capped["key"]).status_code == 200
    # The account's time zone decides when days begin.
    zone = _api(
        site, owner, "PUT", "/api/v1/budget", {"time_zone": "Asia/Tokyo", "budget": {"amount": "5", "period": "day"}}
    )
    assert zone.json()["budget"]["resets_at"].endswith("+09:00")
    assert _api(site, owner, "PUT", "/api/v1/budget", {"time_zone": "Mars/Olympus"}).status_code == 400


def test_a_lost_requests_budget_hold_is_released(site: LiveServer) -> None:
    secret = _key(site, "lost")
    assert _api(site, secret, "PUT", "/api/v1/budget", {"budget": {"amount": "1", "period": None}}).status_code == 200
    script = (
        "from decimal import Decimal; from chat.models import Account, Budget; "
        "from chat.billing.wallet import wallet_reserve; from chat.billing.reconcile import reservations_reconcile; "
        "b = Budget.objects.get(account__name='lost', scope='account'); "
        "wallet_reserve(account_id=b.account_id, amount=Decimal('0.4'), request_id='lost-1', budgets=(b.pk,)); "
        "b.refresh_from_db(); print('held', b.held); "
        "print(reservations_reconcile(older_than=-1, policy='refund')); "
        "b.refresh_from_db(); print('after', b.held, b.spent)"
    )
    out = manage(site, "shell", "-c", script)
    assert "held 0.4" in out and re.search(r"after 0E-10 0E-10|after 0 0|after 0\.0+ 0\.0+", out), out


def test_the_console_shows_the_budgets_on_the_keys_path(site: LiveServer) -> None:
    owner = _key(site, "console-budgets")
    assert _api(site, owner, "PUT", "/api/v1/budget", {"budget": {"amount": "9", "period": "week"}}).status_code == 200
    capped = _api(
        site, owner, "POST", "/api/v1/keys", {"name": "capped", "budget": {"amount": "1", "period": "day"}}
    ).json()
    assert _ask(site, capped["key"]).status_code == 200
    with httpx.Client(base_url=site.base_url, timeout=30) as console:
        console.get("/console")
        signed = console.post(
            "/console/api/session", json={"key": capped["key"]}, headers={"X-CSRFToken": console.cookies["csrftoken"]}
        )
        assert signed.status_code == 201
        budgets = console.get("/console/api/overview").json()["budgets"]
    assert [(b["scope"], b["amount"], b["period"]) for b in budgets] == [("key", "1", "day"), ("account", "9", "week")]
    assert all(0 < Decimal(b["spent"]) < Decimal("0.01") and b["resets_at"] for b in budgets)


def test_usage_grouped_by_member(site: LiveServer) -> None:
    owner = _key(site, "by-member")
    made = _api(site, owner, "POST", "/api/v1/keys", {"name": "someone's"}).json()
    manage(
        site,
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model; from chat.models import ApiKey; "
        "u = get_user_model().objects.create_user('ann', 'ann@example.com'); "
        f"ApiKey.objects.filter(pk={made['id']}).update(user=u)",
    )
    assert _ask(site, made["key"]).status_code == 200
    assert _ask(site, owner).status_code == 200
    rows = _api(site, owner, "GET", "/api/v1/usage?group_by=member").json()["data"]
    assert sorted(row["member"] for row in rows) == ["(no member)", "ann@example.com"]


def test_the_browser_chat_is_refused_over_budget_too(site: LiveServer, fake: FakeUpstream) -> None:
    with httpx.Client(base_url=site.base_url, timeout=60) as chat:
        chat.get("/")
        assert chat.post("/api/session/bootstrap").status_code in (200, 201)
        csrf = {"X-CSRFToken": chat.cookies["csrftoken"]}
        account = chat.post("/api/session/bootstrap", headers=csrf).json()["account"]["id"]
        manage(
            site,
            "shell",
            "-c",
            "from chat.models import Account, Budget; "
            f"Account.objects.filter(pk={account}).update(balance=100); "
            f"Budget.objects.create(account_id={account}, scope='account', amount=0, period='day')",
        )
        before = len(fake.requests)
        turn = chat.post("/api/conversations/new/messages", json={"content": "hello", "model": "paid"}, headers=csrf)
        assert turn.status_code == 201, turn.text  # the turn is accepted; its answer says why it has none
        conversation = turn.json()["conversation"]["id"]
        for _ in range(100):
            answer = chat.get(f"/api/conversations/{conversation}").json()["messages"][-1]
            if answer["status"] != "streaming":
                break
            time.sleep(0.1)
        assert answer["status"] == "failed" and "Budget exceeded" in json.dumps(answer["error"]), answer
        assert len(fake.requests) == before


def test_budgets_are_set_in_the_console(browser: Any, site: LiveServer) -> None:  # noqa: F811
    owner = _key(site, "console-setter")
    tab = Tab(browser, site.base_url)
    page = tab.open("/console")
    page.fill("#signin-key", owner)
    page.click("#signin button[type=submit]")
    page.wait_for_selector("#account-budget-form:not([hidden])")
    page.fill("#account-budget", "25")
    page.select_option("#account-budget-period", "week")
    page.fill("#account-time-zone", "Europe/Berlin")
    page.click("#account-budget-form button[type=submit]")
    page.wait_for_selector("#budget-cards [data-budget=account]")
    assert "25.00" in page.inner_text("#budget-cards [data-budget=account]")

    page.click("#tabs a[data-tab=keys]")
    page.wait_for_selector("#key-form:not([hidden])")
    page.fill("#key-name", "budgeted")
    page.fill("#key-budget", "3")
    page.select_option("#key-budget-period", "day")
    page.click("#key-form button[type=submit]")
    page.wait_for_selector("#secret-dialog[open]")
    page.click("#secret-dialog [data-close]")
    row = page.locator("#keys-table tr:has-text('budgeted')")
    row.wait_for()
    assert "3.00" in row.inner_text()
    page.once("dialog", lambda dialog: dialog.accept("7 month"))
    row.locator("button.set-budget").click()
    wait_until(page, "document.querySelector('#keys-table').textContent.includes('7.00')", 10_000)
    state = _api(site, owner, "GET", "/api/v1/budget").json()
    assert state["budget"]["amount"] == "25" and state["time_zone"] == "Europe/Berlin"
    tab.close()
    assert tab.errors == []
