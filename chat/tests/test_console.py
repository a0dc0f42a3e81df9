"""The console's API (/console/api/…) through Django's test client with CSRF enforced: sign-in
by key and by admin key, what each may see and do, usage from the hourly rollups equal to the
ledger, the CSV, the requests list, the operators' views."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from unittest import mock

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from prometheus_client import CollectorRegistry, Counter, start_http_server

from chat.billing.wallet import usage_record, wallet_reserve, wallet_settle, wallet_top_up
from chat.metrics import REQUESTS
from chat.models import Account, ApiKey, LedgerEntry, TrafficSample, UsageHour, UsageRecord
from chat.services import account_create_with_key, api_key_create
from chat.traffic import TrafficSampler

from .live import free_port

pytestmark = pytest.mark.django_db
ADMIN_KEY = "adm-" + "y" * 40


class Browser:
    """A browser-like client: cookies, and the CSRF token sent back as the page's JS does."""

    def __init__(self) -> None:
        self.client = Client(enforce_csrf_checks=True)
        self.client.get("/console")  # sets the csrftoken cookie

    @property
    def csrf(self) -> str:
        return self.client.cookies["csrftoken"].value

    def get(self, path: str, **params: Any) -> Any:
        return self.client.get(path, params)

    def send(self, method: str, path: str, body: Any = None, *, csrf: bool = True) -> Any:
        headers = {"X-CSRFToken": self.csrf} if csrf else {}
        call = getattr(self.client, method.lower())
        return call(path, body or {}, content_type="application/json", headers=headers)

    def sign_in(self, secret: str) -> Any:
        return self.send("POST", "/console/api/session", {"key": secret})


def error_code(response: Any, status: int) -> str:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return str(error["code"])


def charge(account: Account, key: ApiKey, *, model: str, prompt: int, completion: int, when: datetime) -> Decimal:
    """One paid request at `when`: reserve, then settle with its usage row (as the Meter does)."""
    cost = Decimal(prompt) * Decimal("0.000002") + Decimal(completion) * Decimal("0.000008")
    with mock.patch("django.utils.timezone.now", return_value=when):
        reservation = wallet_reserve(account_id=account.pk, amount=cost * 2, request_id=f"req-{when.timestamp()}")
        usage = UsageRecord(
            account_id=account.pk,
            key_id=key.pk,
            model=model,
            request_id=reservation.request_id,
            prompt_tokens=prompt,
            completion_tokens=completion,
            prompt_cost=Decimal(prompt) * Decimal("0.000002"),
            completion_cost=Decimal(completion) * Decimal("0.000008"),
            dialect="chat",
            ttft_ms=120,
            duration_ms=900,
        )
        wallet_settle(reservation=reservation, cost=cost, usage=usage)
    return cost


@pytest.fixture
def holder() -> tuple[Account, ApiKey, str]:
    key, secret = account_create_with_key(name="alice")
    wallet_top_up(account_id=key.account_id, amount=Decimal(10), idempotency_key="seed")
    return key.account, key, secret


@pytest.fixture
def operator_settings(settings: Any) -> None:
    settings.GHOSTGPT = {**settings.GHOSTGPT, "ADMIN_KEY": ADMIN_KEY}


def test_sign_in_by_key_is_an_http_only_session_checked_on_every_request(holder: Any) -> None:
    _, key, secret = holder
    browser = Browser()
    assert error_code(browser.get("/console/api/overview"), 401) == "missing_api_key"
    assert error_code(browser.sign_in("sk-wrong"), 401) == "invalid_api_key"
    assert error_code(browser.send("POST", "/console/api/session", {"key": secret}, csrf=False), 403) == "csrf_failed"

    before = browser.client.cookies.get("sessionid")
    signed = browser.sign_in(secret)
    assert signed.status_code == 201, signed.content
    assert signed.json()["key"]["id"] == key.pk and signed.json()["account"]["name"] == "alice"
    cookie = browser.client.cookies["sessionid"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax"
    assert before is None or before.value != cookie.value
    assert secret not in str(browser.client.session.items()), "the session holds no secret"
    assert browser.get("/console/api/overview").status_code == 200

    ApiKey.objects.filter(pk=key.pk).update(is_active=False)  # disabled elsewhere: signed out at once
    assert browser.get("/console/api/overview").status_code == 401
    assert browser.get("/console/api/session").json()["key"] is None


def test_overview_shows_balance_limits_and_spend(holder: Any) -> None:
    account, key, secret = holder
    now = timezone.now()
    spent = charge(account, key, model="fast", prompt=1000, completion=500, when=now)
    browser = Browser()
    browser.sign_in(secret)
    body = browser.get("/console/api/overview", tz="UTC").json()
    assert Decimal(body["balance"]) == Decimal(10) - spent
    assert Decimal(body["spend"]["today"]) == spent == Decimal(body["spend"]["month"])
    assert body["tier"] == account.tier.name and body["rate"]["rpm"] == account.tier.rpm
    assert [row["model"] for row in body["trend"]["data"]] == ["fast"]


def test_usage_from_rollups_equals_the_ledger_and_the_csv(holder: Any) -> None:
    account, key, secret = holder
    other = key
    second = ApiKey.objects.create(account=account, name="ci", prefix="sk-ci", key_hash="h" * 64)
    day = datetime(2026, 11, 10, 9, 30, tzinfo=UTC)
    total = Decimal(0)
    total += charge(account, other, model="fast", prompt=1000, completion=10, when=day)
    total += charge(account, other, model="fast", prompt=3000, completion=20, when=day + timedelta(minutes=20))
    total += charge(account, second, model="smart", prompt=500, completion=700, when=day + timedelta(hours=1))
    total += charge(account, second, model="smart", prompt=7, completion=9, when=day + timedelta(days=1))
    # A free model's request (no money moves) is counted too.
    with mock.patch("django.utils.timezone.now", return_value=day):
        usage_record(
            usage=UsageRecord(
                account=account,
                key=key,
                model="free",
                prompt_tokens=5,
                completion_tokens=5,
                prompt_cost=Decimal(0),
                completion_cost=Decimal(0),
            )
        )
    assert UsageHour.objects.filter(account=account).count() == 4  # fast 09h, smart 10h, smart next day, free
    assert UsageHour.objects.get(account=account, model="fast").requests == 2

    browser = Browser()
    browser.sign_in(secret)
    params = {"from": "2026-11-01", "to": "2026-11-30", "tz": "UTC"}
    body = browser.get("/console/api/usage", **params).json()
    assert Decimal(body["totals"]["cost"]) == total
    assert body["totals"]["requests"] == 5
    since, until = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
    ledger = -sum(
        LedgerEntry.objects.filter(account=account, created_at__gte=since, created_at__lt=until)
        .exclude(kind="topup")
        .values_list("amount", flat=True)
    )
    assert ledger == total, "the figures equal the ledger's"
    by_day = {(row["bucket"], row["model"]): row for row in body["data"]}
    assert by_day[("2026-11-10", "fast")]["requests"] == 2
    assert by_day[("2026-11-10", "fast")]["prompt_tokens"] == 4000
    assert set(body["models"]) == {"fast", "smart", "free"}
    assert {k["id"] for k in body["keys"]} >= {key.pk, second.pk}

    hourly = browser.get("/console/api/usage", **{**params, "from": "2026-11-10", "bucket": "hour", "key": second.pk})
    hourly = hourly.json()
    assert [(row["bucket"], row["model"]) for row in hourly["data"]] == [
        ("2026-11-10T10:00", "smart"),
        ("2026-11-11T09:00", "smart"),
    ]
    # The same day seen from Moscow (UTC+3): 09:30 and 10:30 UTC are still the 10th.
    moscow = browser.get("/console/api/usage", **{**params, "tz": "Europe/Moscow"}).json()
    assert {row["bucket"] for row in moscow["data"]} == {"2026-11-10", "2026-11-11"}

    exported = browser.get("/console/api/usage.csv", **params)
    assert exported["Content-Type"].startswith("text/csv") and "attachment" in exported["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.content.decode())))
    assert sum(Decimal(row["cost"]) for row in rows) == ledger
    assert sum(int(row["requests"]) for row in rows) == 5

    assert error_code(browser.get("/console/api/usage", tz="Mars/Olympus"), 400) is not None
    assert error_code(
        browser.get("/console/api/usage", bucket="hour", **{"from": "2026-01-01", "to": "2026-11-30"}), 400
    )
    assert error_code(browser.get("/console/api/usage", **{"from": "2026-11-30", "to": "2026-11-01"}), 400)


@pytest.mark.parametrize("path", ["/console/api/usage", "/console/api/usage.csv"])
@pytest.mark.parametrize(
    ("query", "param"),
    [
        ({"to": "9999-12-31"}, {"to"}),
        ({"from": "0001-01-01", "to": "0001-01-02", "tz": "Pacific/Kiritimati"}, {"from", "to"}),
    ],
)
def test_far_usage_dates_are_a_400_naming_the_parameter(
    holder: Any, path: str, query: dict[str, str], param: set[str]
) -> None:
    _, _, secret = holder
    browser = Browser()
    browser.sign_in(secret)
    response = browser.get(path, **query)
    assert error_code(response, 400) and response.json()["error"]["param"] in param


def test_requests_list_pages_and_shows_only_the_account(holder: Any) -> None:
    account, key, secret = holder
    now = timezone.now()
    for minute in range(5):
        charge(account, key, model="fast", prompt=10 + minute, completion=1, when=now + timedelta(seconds=minute))
    stranger_key, _ = account_create_with_key(name="mallory")
    wallet_top_up(account_id=stranger_key.account_id, amount=Decimal(1), idempotency_key="m")
    charge(stranger_key.account, stranger_key, model="secret-model", prompt=1, completion=1, when=now)

    browser = Browser()
    browser.sign_in(secret)
    first = browser.get("/console/api/requests", limit=3).json()
    assert [row["prompt_tokens"] for row in first["data"]] == [14, 13, 12] and first["has_more"]
    row = first["data"][0]
    assert row["dialect"] == "chat" and row["ttft_ms"] == 120 and row["duration_ms"] == 900
    assert row["status"] == "ok" and row["key"]["id"] == key.pk and row["request_id"].startswith("req-")
    assert "prompt" not in row and "content" not in row
    rest = browser.get("/console/api/requests", limit=3, before=first["data"][-1]["id"]).json()
    assert [row["prompt_tokens"] for row in rest["data"]] == [11, 10]
    assert error_code(browser.get("/console/api/requests", limit=100000), 400)


def test_keys_through_the_console_follow_the_key_scope(holder: Any) -> None:
    _, key, secret = holder
    browser = Browser()
    browser.sign_in(secret)
    created = browser.send("POST", "/console/api/keys", {"name": "ci", "scope": "inference", "rpm": 5})
    assert created.status_code == 201, created.content
    new = created.json()
    assert new["key"].startswith(new["prefix"]) and new["scope"] == "inference"
    listed = browser.get("/console/api/keys").json()["data"]
    assert all("key" not in k for k in listed) and {k["id"] for k in listed} == {key.pk, new["id"]}
    assert (
        browser.send("PATCH", f"/console/api/keys/{new['id']}", {"name": "renamed", "active": False}).json()["name"]
        == "renamed"
    )
    assert error_code(browser.send("PATCH", f"/console/api/keys/{new['id']}", {"active": True}, csrf=False), 403)

    readonly = Browser()  # signed in with the inference key: sees usage, manages nothing
    ApiKey.objects.filter(pk=new["id"]).update(is_active=True)
    assert readonly.sign_in(new["key"]).json()["key"]["manage"] is False
    assert readonly.get("/console/api/overview").status_code == 200
    assert error_code(readonly.get("/console/api/keys"), 403) == "scope_exceeded"
    assert error_code(readonly.send("POST", "/console/api/keys", {"name": "x"}), 403) == "scope_exceeded"
    assert error_code(readonly.send("DELETE", f"/console/api/keys/{key.pk}"), 403) == "scope_exceeded"

    assert browser.send("DELETE", f"/console/api/keys/{new['id']}").status_code == 200
    assert readonly.get("/console/api/overview").status_code == 401  # its key is gone
    assert browser.send("DELETE", "/console/api/session").status_code == 204
    assert browser.get("/console/api/overview").status_code == 401


def test_quote_prices_a_request(holder: Any) -> None:
    from chat.services import model_price_set

    model_price_set(model="fast", prompt_per_million=Decimal("2.5"), completion_per_million=Decimal(10))
    body = Browser().get("/console/api/quote", prompt_tokens=1000, completion_tokens=500, requests=4).json()
    fast = next(row for row in body["data"] if row["model"] == "fast")
    assert Decimal(fast["cost"]) == Decimal("0.0075") and Decimal(fast["total"]) == Decimal("0.03")
    assert error_code(Browser().get("/console/api/quote", prompt_tokens=-1, completion_tokens=1), 400)


def test_operator_signs_in_tops_up_once_and_disables(holder: Any, operator_settings: None) -> None:
    account, _, secret = holder
    ops = Browser()
    assert ops.get("/console/api/ops/accounts").status_code == 401
    assert error_code(ops.send("POST", "/console/api/ops/session", {"admin_key": "nope"}), 401) == "invalid_admin_key"
    holder_browser = Browser()
    holder_browser.sign_in(secret)
    assert holder_browser.get("/console/api/ops/accounts").status_code == 401, "a key holder is not an operator"

    assert ops.send("POST", "/console/api/ops/session", {"admin_key": ADMIN_KEY}).status_code == 201
    found = ops.get("/console/api/ops/accounts", q="ali").json()
    assert found["total"] == 1 and found["data"][0]["id"] == account.pk and found["data"][0]["keys"] == 1
    assert ops.get("/console/api/ops/accounts", q=f"#{account.pk}").json()["data"][0]["name"] == "alice"

    body = {"user_id": account.pk, "amount": "2.5", "idempotency_key": "console-1"}
    first = ops.send("POST", "/console/api/ops/topup", body).json()
    again = ops.send("POST", "/console/api/ops/topup", body).json()
    assert first["applied"] and not again["applied"] and again["balance"] == first["balance"] == 12.5
    assert error_code(ops.send("POST", "/console/api/ops/topup", {**body, "amount": "-1"}), 400)
    history = ops.get("/console/api/ops/topups").json()["data"]
    assert history[0]["idempotency_key"] == "console-1" and Decimal(history[0]["amount"]) == Decimal("2.5")

    assert ops.send("PATCH", f"/console/api/ops/accounts/{account.pk}", {"active": False}).json()["active"] is False
    assert Client(headers={"Authorization": f"Bearer {secret}"}).get("/api/v1/balance").status_code == 401
    assert holder_browser.get("/console/api/overview").status_code == 401
    ops.send("PATCH", f"/console/api/ops/accounts/{account.pk}", {"active": True})
    assert Client(headers={"Authorization": f"Bearer {secret}"}).get("/api/v1/balance").status_code == 200


def test_staff_users_are_operators_and_changing_the_admin_key_signs_out(
    holder: Any, operator_settings: None, settings: Any
) -> None:
    staff = User.objects.create_user("root", password="pw-" + "z" * 20, is_staff=True)
    browser = Browser()
    browser.client.force_login(staff)
    # Signed in without a second factor: not an operator while operators require one
    # (people/tests/test_mfa.py signs in with TOTP and gets in).
    assert browser.get("/console/api/ops/models").status_code in (401, 403)
    settings.PEOPLE = {**settings.PEOPLE, "MFA_REQUIRED_FOR_STAFF": False}
    assert browser.get("/console/api/ops/models").status_code == 200

    ops = Browser()
    ops.send("POST", "/console/api/ops/session", {"admin_key": ADMIN_KEY})
    assert ops.get("/console/api/ops/topups").status_code == 200
    settings.GHOSTGPT = {**settings.GHOSTGPT, "ADMIN_KEY": "adm-rotated-" + "q" * 30}
    assert ops.get("/console/api/ops/topups").status_code == 401


def test_model_health_and_traffic_come_from_the_metrics(operator_settings: None) -> None:
    old = TrafficSample.objects.create(at=timezone.now() - timedelta(hours=3), process="gone", seconds=5)
    sampler = TrafficSampler(interval=5)
    for _ in range(7):
        REQUESTS.labels("/v1/chat/completions", "POST", "200", "ghostgpt").inc()
    sample = sampler.sample()
    assert sample.requests == 7 and sample.seconds > 0
    assert not TrafficSample.objects.filter(pk=old.pk).exists(), "samples older than two hours are deleted"

    ops = Browser()
    ops.send("POST", "/console/api/ops/session", {"admin_key": ADMIN_KEY})
    traffic = ops.get("/console/api/ops/traffic").json()
    assert sum(row["requests_per_second"] for row in traffic["data"]) > 0
    models = ops.get("/console/api/ops/models").json()["data"]
    ghost = next(row for row in models if row["model"] == "ghostgpt")
    assert ghost["requests"] >= 7 and set(ghost) >= {"ttft_p50", "ttft_p95", "error_rate", "tokens_per_second"}


def test_the_model_page_sums_the_samples_of_every_node(operator_settings: None, settings: Any) -> None:
    # Another node: a real /metrics on loopback (prometheus_client's own HTTP server).
    other = CollectorRegistry()
    Counter("ghostgpt_requests", "x", ["route", "method", "status", "model"], registry=other).labels(
        "/v1/chat/completions", "POST", "200", "ghostgpt"
    ).inc(1000)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=other)
    try:
        ops = Browser()
        ops.send("POST", "/console/api/ops/session", {"admin_key": ADMIN_KEY})
        alone = next(r for r in ops.get("/console/api/ops/models").json()["data"] if r["model"] == "ghostgpt")
        nodes = [f"http://127.0.0.1:{server.server_port}/metrics", f"http://127.0.0.1:{free_port()}/metrics"]
        settings.GHOSTGPT = {**settings.GHOSTGPT, "METRICS_NODES": nodes}  # the second one is down
        summed = next(r for r in ops.get("/console/api/ops/models").json()["data"] if r["model"] == "ghostgpt")
        assert summed["requests"] == alone["requests"] + 1000
    finally:
        server.shutdown()
        thread.join()


def test_pages_render_in_both_languages() -> None:
    for path in ("/console", "/console/ops"):
        english = Client().get(path)
        assert english.status_code == 200 and "Content-Security-Policy" in english
        russian = Client(headers={"Accept-Language": "ru"}).get(path)
        assert russian.status_code == 200
    assert "Консоль" in Client(headers={"Accept-Language": "ru"}).get("/console").content.decode()


def test_an_inference_key_sees_only_its_own_requests_and_usage(holder: Any) -> None:
    account, full_key, full_secret = holder
    narrow, narrow_secret = api_key_create(account=account, name="ci", scope=ApiKey.Scope.INFERENCE)
    now = timezone.now()
    mine = charge(account, narrow, model="fast", prompt=100, completion=10, when=now)
    theirs = charge(account, full_key, model="smart", prompt=5000, completion=900, when=now + timedelta(seconds=1))
    scoped = Browser()
    scoped.sign_in(narrow_secret)
    requests = scoped.get("/console/api/requests").json()["data"]
    assert [row["model"] for row in requests] == ["fast"]
    usage = scoped.get("/console/api/usage", tz="UTC").json()
    assert Decimal(usage["totals"]["cost"]) == mine and usage["models"] == ["fast"]
    assert [k["id"] for k in usage["keys"]] == [narrow.pk]
    # Asking for another key's usage shows nothing of it.
    assert scoped.get("/console/api/usage", tz="UTC", key=full_key.pk).json()["totals"]["requests"] == 0
    assert scoped.get("/console/api/requests", key=full_key.pk).json()["data"] == []
    overview = scoped.get("/console/api/overview", tz="UTC").json()
    assert Decimal(overview["spend"]["today"]) == mine and [r["model"] for r in overview["trend"]["data"]] == ["fast"]
    exported = scoped.get("/console/api/usage.csv", tz="UTC").content.decode()
    assert "smart" not in exported and "fast" in exported
    api = Client(headers={"Authorization": f"Bearer {narrow_secret}"}).get("/api/v1/usage", {"group_by": "model"})
    assert [row["model"] for row in api.json()["data"]] == ["fast"]
    # A full key sees the account's.
    full = Browser()
    full.sign_in(full_secret)
    assert Decimal(full.get("/console/api/usage", tz="UTC").json()["totals"]["cost"]) == mine + theirs
    assert len(full.get("/console/api/requests").json()["data"]) == 2
