"""Alerts: webhook endpoints signed as Standard Webhooks say — a receiver on loopback verifying
with the reference library (`standardwebhooks`) accepts them — delivered with retries and a
log, refused toward private addresses; thresholds that fire once per crossing; keys' events;
mail to the account's person."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from allauth.account.models import EmailAddress
from celery.exceptions import Retry
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from alerts import services, tasks
from alerts.models import Crossing, Delivery, Endpoint
from chat.models import Account, Budget
from chat.services import account_create_with_key, api_key_create

pytestmark = pytest.mark.django_db


class Receiver:
    """A webhook receiver on 127.0.0.1 that verifies each delivery with the reference library
    and answers the statuses queued in `answers` (then 200)."""

    def __init__(self) -> None:
        self.secret = ""
        self.received: list[dict[str, Any]] = []
        self.refused: list[str] = []
        self.answers: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    receiver.received.append(Webhook(receiver.secret).verify(body, dict(self.headers)))
                    status = receiver.answers.pop(0) if receiver.answers else 200
                except WebhookVerificationError as exc:
                    receiver.refused.append(str(exc))
                    status = 400
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/ghostgpt"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver(settings: Any) -> Iterator[Receiver]:
    hook = Receiver()
    # fetch-url's rules refuse loopback; the tests allow exactly this receiver (FETCH_ALLOW).
    settings.TOOLS = {**settings.TOOLS, "FETCH_ALLOW": [f"127.0.0.1:{hook.server.server_port}"]}
    yield hook
    hook.server.shutdown()


def _api(secret: str) -> Client:
    return Client(headers={"Authorization": f"Bearer {secret}"})


def _endpoint(client: Client, receiver: Receiver, events: list[str] | None = None) -> dict[str, Any]:
    made = client.post(
        "/api/v1/webhooks", {"url": receiver.url, "events": events or []}, content_type="application/json"
    )
    assert made.status_code == 201, made.content
    body: dict[str, Any] = made.json()
    receiver.secret = body["secret"]
    assert body["secret"].startswith("whsec_")
    return body


def test_the_reference_library_accepts_a_test_event(
    receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    key, secret = account_create_with_key(name="hooks")
    client = _api(secret)
    endpoint = _endpoint(client, receiver)
    with django_capture_on_commit_callbacks(execute=True):
        sent = client.post(f"/api/v1/webhooks/{endpoint['id']}/test")
    assert sent.status_code == 202
    assert [event["type"] for event in receiver.received] == ["test"]
    log = client.get(f"/api/v1/webhooks/{endpoint['id']}/deliveries").json()["data"]
    assert log[0]["status"] == "delivered" and log[0]["attempts"] == 1 and log[0]["last_status"] == 200
    assert log[0]["latency_ms"] is not None
    # A wrong secret does not verify: the signature is over id, timestamp and body.
    receiver.secret = "whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB"
    delivery = services.emit(key.account_id, "test", {}, only=Endpoint.objects.get(pk=endpoint["id"]))[0]
    assert services.deliver_once(delivery) is False
    assert receiver.refused and Delivery.objects.filter(last_status=400).exists()


def test_failures_retry_with_backoff_until_delivered_or_given_up(receiver: Receiver) -> None:
    key, secret = account_create_with_key(name="retries")
    endpoint = Endpoint.objects.get(pk=_endpoint(_api(secret), receiver)["id"])
    receiver.answers = [500, 503]
    delivery = services.emit(key.account_id, "test", {"n": 1}, only=endpoint)[0]
    assert [services.deliver_once(delivery), services.deliver_once(delivery), services.deliver_once(delivery)] == [
        False,
        False,
        True,
    ]
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status) == ("delivered", 3, 200)
    assert [services.backoff_seconds(n) for n in (1, 2, 3, 12)] == [10, 20, 40, 3600]
    # The task retries a failure (Celery's retry, with the backoff as its countdown).
    receiver.answers = [500]
    again = services.emit(key.account_id, "test", {"n": 2}, only=endpoint)[0]
    with pytest.raises(Retry) as retried:  # eager here; a worker schedules it
        tasks.deliver.apply(args=[again.pk])
    assert retried.value.when == services.backoff_seconds(1)
    receiver.answers = [500] * services.MAX_ATTEMPTS
    last = services.emit(key.account_id, "test", {"n": 3}, only=endpoint)[0]
    for _ in range(services.MAX_ATTEMPTS):
        services.deliver_once(last)
    last.refresh_from_db()
    assert (last.status, last.attempts) == ("failed", services.MAX_ATTEMPTS)


def test_endpoints_cannot_reach_inward(settings: Any) -> None:
    key, secret = account_create_with_key(name="ssrf")
    client = _api(secret)
    for url in ("ftp://example.com/hook", "http://user:pw@example.com/hook", "http://example.com:8080/hook", "hook"):
        refused = client.post("/api/v1/webhooks", {"url": url}, content_type="application/json")
        assert refused.status_code == 400, url
    assert (
        client.post(
            "/api/v1/webhooks", {"url": "https://example.com/h", "events": ["nope"]}, content_type="application/json"
        ).status_code
        == 400
    )
    # An address that is not public is refused at delivery, however the name resolves then.
    for url in ("http://169.254.169.254/latest/meta-data", "http://10.0.0.7/hook", "http://127.0.0.1/hook"):
        endpoint = Endpoint.objects.create(
            account=key.account, url=url, secret="whsec_QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB"
        )
        delivery = services.emit(key.account_id, "test", {}, only=endpoint)[0]
        assert services.deliver_once(delivery) is False
        delivery.refresh_from_db()
        assert delivery.last_status is None and "public internet" in delivery.last_error


def test_thresholds_fire_once_per_crossing_and_mail_the_person(
    receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    person = get_user_model().objects.create_user("ann", "ann@example.com")
    EmailAddress.objects.create(user=person, email="ann@example.com", verified=True, primary=True)
    key, secret = account_create_with_key(name="thresholds")
    Account.objects.filter(pk=key.account_id).update(user=person, balance=Decimal(10))
    client = _api(secret)
    _endpoint(client, receiver, ["balance.low", "budget.threshold"])
    assert client.put("/api/v1/alerts", {"balance_below": "5"}, content_type="application/json").status_code == 200

    def sweep() -> list[str]:
        before = len(receiver.received)
        with django_capture_on_commit_callbacks(execute=True):
            services.thresholds_sweep()
        return [event["type"] for event in receiver.received[before:]]

    assert sweep() == []
    Account.objects.filter(pk=key.account_id).update(balance=Decimal(3))
    assert sweep() == ["balance.low"]
    assert sweep() == []  # once per crossing
    assert any("balance.low" in m.subject and "ann@example.com" in m.to for m in mail.outbox)
    Account.objects.filter(pk=key.account_id).update(balance=Decimal(6))
    assert sweep() == []  # back above: re-armed
    Account.objects.filter(pk=key.account_id).update(balance=Decimal(2))
    assert sweep() == ["balance.low"]

    from django.utils import timezone

    from chat.billing.budgets import period_key_of, period_keys

    current = period_key_of("month", period_keys(timezone.now(), "UTC"))
    budget = Budget.objects.create(
        account=key.account, scope="account", amount=10, period="month", period_key=current, spent=6
    )
    assert sweep() == ["budget.threshold"]  # past 50 %
    Budget.objects.filter(pk=budget.pk).update(spent=10)
    fired = [e for e in receiver.received if e["type"] == "budget.threshold"]
    assert sweep() == ["budget.threshold", "budget.threshold"]  # 80 and 100 %, each once
    assert sweep() == []
    levels = sorted(e["data"]["level"] for e in receiver.received if e["type"] == "budget.threshold")
    assert levels == [50, 80, 100] and len(fired) == 1
    assert Crossing.objects.filter(account_id=key.account_id).count() == 4  # balance + three levels


def test_keys_made_and_disabled_are_events(receiver: Receiver, django_capture_on_commit_callbacks: Any) -> None:
    key, secret = account_create_with_key(name="key-events")
    _endpoint(_api(secret), receiver, ["key.created", "key.disabled"])
    with django_capture_on_commit_callbacks(execute=True):
        made, _ = api_key_create(account=key.account, name="ci")
    with django_capture_on_commit_callbacks(execute=True):
        made.is_active = False
        made.save()
    assert [(e["type"], e["data"]["key"]["name"]) for e in receiver.received] == [
        ("key.created", "ci"),
        ("key.disabled", "ci"),
    ]
    assert json.dumps(receiver.received).count(made.key_hash) == 0  # no secret in the payload


@pytest.mark.django_db(transaction=True)  # the alert is written by a thread of its own
def test_operators_hear_an_upstream_circuit_open_and_close(receiver: Receiver, settings: Any) -> None:
    from types import SimpleNamespace

    from chat.backends.upstream import CIRCUIT_FAILURES, Deployment
    from chat.signals import circuit_changed

    settings.GHOSTGPT = {**settings.GHOSTGPT, "ADMIN_KEY": "adm-alerts-" + "k" * 30}
    operator = Client()
    assert (
        operator.post(
            "/console/api/ops/session", {"admin_key": settings.GHOSTGPT["ADMIN_KEY"]}, content_type="application/json"
        ).status_code
        == 201
    )
    accounts_only = operator.post(
        "/console/api/ops/webhooks", {"url": receiver.url, "events": ["balance.low"]}, content_type="application/json"
    )
    assert accounts_only.status_code == 400  # operators' endpoints take upstream events
    made = operator.post(
        "/console/api/ops/webhooks",
        {"url": receiver.url, "events": ["upstream.circuit_open", "upstream.circuit_closed"]},
        content_type="application/json",
    )
    assert made.status_code == 201, made.content
    receiver.secret = made.json()["secret"]

    sent: list[bool] = []
    circuit_changed.connect(lambda sender, opened, **kw: sent.append(opened), weak=False, dispatch_uid="test-circuit")
    try:
        deployment = Deployment(upstream=SimpleNamespace(name="openai"), model="gpt-4o")  # type: ignore[arg-type]
        for _ in range(CIRCUIT_FAILURES + 2):
            deployment.failed()
        deployment.succeeded(0.1)
        deployment.succeeded(0.1)
    finally:
        circuit_changed.disconnect(dispatch_uid="test-circuit")
    assert sent == [True, False]  # one opening, one closing
    for _ in range(100):
        if len(receiver.received) >= 2:
            break
        time.sleep(0.05)
    assert sorted(event["type"] for event in receiver.received) == ["upstream.circuit_closed", "upstream.circuit_open"]
    assert {event["data"]["deployment"] for event in receiver.received} == {"openai/gpt-4o"}
    log = operator.get(f"/console/api/ops/webhooks/{made.json()['id']}/deliveries").json()["data"]
    assert {d["status"] for d in log} == {"delivered"}
