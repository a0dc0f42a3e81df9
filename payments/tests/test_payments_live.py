"""Top-ups through Stripe and YooKassa, exactly once, against a real GhostGPT server whose
provider SDKs talk to loopback doubles of the providers' APIs (payments/tests/doubles.py),
which notify it as the providers do.

Exactly once: replays, concurrent duplicate deliveries, a webhook and a poll for the same
payment, out-of-order events, a notification for an unknown payment or for an amount or
currency other than the one made, a payment that succeeds after its session expired; refunds
and disputes take money back once each, and may leave the balance below zero.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from chat.tests.live import LiveServer, manage

from .doubles import StripeDouble, YooKassaDouble

STRIPE_KEY, STRIPE_WEBHOOK_SECRET = "sk_test_ghostgpt_double", "whsec_test_ghostgpt_double"
SHOP_ID, SHOP_SECRET = "100500", "test_shop_secret"
RUB_RATE = Decimal("0.011")  # USD per rouble


@pytest.fixture(scope="module")
def doubles() -> Iterator[tuple[StripeDouble, YooKassaDouble]]:
    stripe = StripeDouble(secret_key=STRIPE_KEY, webhook_secret=STRIPE_WEBHOOK_SECRET)
    yookassa = YooKassaDouble(shop_id=SHOP_ID, secret_key=SHOP_SECRET)
    yield stripe, yookassa
    stripe.close()
    yookassa.close()


def payment_env(stripe: StripeDouble, yookassa: YooKassaDouble) -> dict[str, str]:
    return {
        "GHOSTGPT_CURRENCY": "USD",
        "GHOSTGPT_STRIPE_SECRET_KEY": STRIPE_KEY,
        "GHOSTGPT_STRIPE_WEBHOOK_SECRET": STRIPE_WEBHOOK_SECRET,
        "GHOSTGPT_STRIPE_API_BASE": stripe.base_url,
        "GHOSTGPT_YOOKASSA_SHOP_ID": SHOP_ID,
        "GHOSTGPT_YOOKASSA_SECRET_KEY": SHOP_SECRET,
        "GHOSTGPT_YOOKASSA_API_URL": yookassa.base_url + "/v3",
        "GHOSTGPT_YOOKASSA_RATE": str(RUB_RATE),
        "GHOSTGPT_YOOKASSA_NOTIFY_FROM": "127.0.0.1/32",  # the double notifies from loopback
        "GHOSTGPT_YOOKASSA_RECEIPT": "true",
    }


@pytest.fixture(scope="module")
def site(doubles: tuple[StripeDouble, YooKassaDouble]) -> Iterator[LiveServer]:
    stripe, yookassa = doubles
    server = LiveServer(env=payment_env(stripe, yookassa))
    stripe.webhook_url = server.base_url + "/payments/webhooks/stripe"
    yookassa.webhook_url = server.base_url + "/payments/webhooks/yookassa"
    yield server
    server.stop()


class Console:
    """The console's JSON as its page uses it: a session cookie, the CSRF header."""

    def __init__(self, site: LiveServer, secret: str) -> None:
        self.secret = secret
        self.client = httpx.Client(base_url=site.base_url, timeout=30)
        self.client.get("/console")
        response = self.send("POST", "/console/api/session", {"key": secret})
        assert response.status_code == 201, response.text

    def send(self, method: str, path: str, body: Any = None) -> httpx.Response:
        headers = {"X-CSRFToken": self.client.cookies["csrftoken"]}
        return self.client.request(method, path, json=body, headers=headers)

    def pay_status(self, amount: str) -> int:
        body = {"amount": amount, "provider": "stripe"}
        return self.send("POST", "/console/api/payments", body).status_code

    def balance(self) -> Decimal:
        return Decimal(self.client.get("/console/api/overview").json()["balance"])

    def pay(self, amount: str, provider: str) -> dict[str, Any]:
        body = {"amount": amount, "provider": provider, "email": "payer@example.com"}
        response = self.send("POST", "/console/api/payments", body)
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]


def _holder(site: LiveServer, name: str) -> Console:
    secret = manage(site, "create_api_key", "--name", name, "--tier", "unlimited").strip().splitlines()[-1]
    return Console(site, secret)


def _ledger(site: LiveServer, reference: str) -> str:
    """The ledger entries a payment made, as printed: [(kind, amount), …]."""
    out = manage(
        site,
        "shell",
        "-c",
        "from django.db.models import Q; from chat.models import LedgerEntry; "
        f"q = Q(idempotency_key__contains={reference!r}) | Q(detail__reference={reference!r}); "
        "print([(e.kind, str(e.amount)) for e in LedgerEntry.objects.filter(q).order_by('id')])",
    )
    return out.strip().splitlines()[-1]


def test_stripe_credits_once_however_often_and_however_it_is_told(
    site: LiveServer, doubles: tuple[StripeDouble, YooKassaDouble]
) -> None:
    stripe, _ = doubles
    holder = _holder(site, "stripe-once")
    start = holder.balance()
    payment = holder.pay("10.00", "stripe")
    assert payment["redirect_url"].startswith(stripe.base_url + "/c/pay/cs_test_")
    assert payment["charged"] == {"amount": "10.0000000000", "currency": "USD"}
    reference = payment["reference"]
    assert stripe.sessions[reference]["amount_total"] == 1000

    # The console asking again and again about a pending payment asks Stripe once.
    for _ in range(5):
        assert holder.client.get(f"/console/api/payments/{payment['id']}").json()["status"] == "pending"
    assert stripe.requests.count(("GET", f"/v1/checkout/sessions/{reference}")) == 1

    session = stripe.complete(reference, notify=False)
    completed = stripe.event("checkout.session.completed", session)
    assert stripe.deliver(completed).status_code == 200
    assert holder.balance() == start + 10
    # The same event again, and eight deliveries at once of it and of another event saying the same.
    again = stripe.event("checkout.session.async_payment_succeeded", session)
    statuses: list[int] = []
    threads = [
        threading.Thread(target=lambda e=e: statuses.append(stripe.deliver(e).status_code))
        for e in [completed, again] * 4
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 8
    # And the person back on the console, which asks Stripe itself.
    assert holder.client.get(f"/console/api/payments/{payment['id']}").json()["status"] == "succeeded"
    assert holder.balance() == start + 10
    assert _ledger(site, reference) == "[('topup', '10.0000000000')]"
    history = holder.client.get("/console/api/payments").json()
    assert history["data"][0]["status"] == "succeeded" and history["data"][0]["reference"] == reference
    assert {p["name"] for p in history["providers"]} == {"stripe", "yookassa"}


def test_stripe_refuses_forgeries_mismatches_and_strangers(
    site: LiveServer, doubles: tuple[StripeDouble, YooKassaDouble]
) -> None:
    stripe, _ = doubles
    holder = _holder(site, "stripe-refusals")
    start = holder.balance()
    payment = holder.pay("20.00", "stripe")
    reference = payment["reference"]
    paid = {**stripe.complete(reference, notify=False)}

    forged = stripe.deliver(stripe.event("checkout.session.completed", paid), secret="whsec_someone_else")
    assert forged.status_code == 400
    unsigned = httpx.post(stripe.webhook_url, content=b'{"type": "checkout.session.completed"}')
    assert unsigned.status_code == 400
    assert (
        stripe.deliver(stripe.event("checkout.session.completed", {**paid, "amount_total": 200000})).status_code == 200
    )
    assert stripe.deliver(stripe.event("checkout.session.completed", {**paid, "currency": "eur"})).status_code == 200
    stranger = {**paid, "id": "cs_test_never_made_here"}
    assert stripe.deliver(stripe.event("checkout.session.completed", stranger)).status_code == 200
    assert holder.balance() == start  # none of it credited

    # A delayed method: completed unpaid (pending), then failed; a failure after success changes nothing.
    assert (
        stripe.deliver(stripe.event("checkout.session.completed", {**paid, "payment_status": "unpaid"})).status_code
        == 200
    )
    assert holder.client.get("/console/api/payments").json()["data"][0]["status"] == "pending"
    stripe.deliver(stripe.event("checkout.session.async_payment_failed", {**paid, "payment_status": "unpaid"}))
    assert holder.client.get("/console/api/payments").json()["data"][0]["status"] == "failed"
    assert holder.balance() == start

    # A session that expired, then was paid after all (the money was taken): credited.
    late = holder.pay("7.00", "stripe")
    expired = {**stripe.sessions[late["reference"]], "status": "expired"}
    stripe.deliver(stripe.event("checkout.session.expired", expired))
    assert holder.client.get(f"/console/api/payments/{late['id']}").json()["status"] == "expired"
    stripe.complete(late["reference"])
    assert holder.client.get(f"/console/api/payments/{late['id']}").json()["status"] == "succeeded"
    assert holder.balance() == start + 7


def test_stripe_refunds_and_disputes_take_money_back_once(
    site: LiveServer, doubles: tuple[StripeDouble, YooKassaDouble]
) -> None:
    stripe, _ = doubles
    holder = _holder(site, "stripe-refunds")
    start = holder.balance()
    payment = holder.pay("10.00", "stripe")
    stripe.complete(payment["reference"])
    assert holder.balance() == start + 10

    first = stripe.event("charge.refunded", stripe.charge(payment["reference"], refunded=300))
    assert stripe.deliver(first).status_code == 200
    stripe.deliver(first)  # a replay
    assert holder.balance() == start + 7
    stripe.deliver(stripe.event("charge.refunded", stripe.charge(payment["reference"], refunded=500)))  # cumulative
    assert holder.balance() == start + 5
    stripe.deliver(stripe.event("charge.dispute.created", stripe.dispute(payment["reference"], amount=1000)))
    assert holder.balance() == start  # at most what is left of the payment
    body = holder.client.get(f"/console/api/payments/{payment['id']}").json()
    assert body["status"] == "refunded" and Decimal(body["refunded"]) == 10

    # Spent before it was taken back: the balance goes below zero, and then even a free
    # request is refused until the wallet is topped up again.
    spender = _holder(site, "spent-then-refunded")
    paid = spender.pay("5.00", "stripe")
    stripe.complete(paid["reference"])
    secret = spender.secret
    manage(
        site,
        "shell",
        "-c",
        "from chat.models import Account; Account.objects.filter(name='spent-then-refunded').update(balance=1)",
    )
    stripe.deliver(stripe.event("charge.refunded", stripe.charge(paid["reference"], refunded=500)))
    assert spender.balance() == -4
    ask = {"model": "ghostgpt", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}
    refused = httpx.post(
        site.base_url + "/v1/chat/completions", json=ask, headers={"Authorization": f"Bearer {secret}"}
    )
    assert refused.status_code == 402 and refused.json()["error"]["code"] == "insufficient_balance"
    stripe.complete(spender.pay("5.00", "stripe")["reference"])
    assert spender.balance() == 1
    again = httpx.post(
        site.base_url + "/v1/chat/completions", json=ask, headers={"Authorization": f"Bearer {secret}"}, timeout=120
    )
    assert again.status_code == 200, again.text
    assert _ledger(site, payment["reference"]) == (
        "[('topup', '10.0000000000'), ('reversal', '-3.0000000000'), ('reversal', '-2.0000000000'), "
        "('reversal', '-5.0000000000')]"
    )


def test_yookassa_in_roubles_at_the_operators_rate(
    site: LiveServer, doubles: tuple[StripeDouble, YooKassaDouble]
) -> None:
    _, yookassa = doubles
    holder = _holder(site, "yookassa")
    start = holder.balance()
    payment = holder.pay("10.00", "yookassa")
    assert payment["charged"] == {"amount": "909.1000000000", "currency": "RUB"}  # 10 / 0.011, up to the kopeck
    created = yookassa.payments[payment["reference"]]
    assert created["amount"] == {"value": "909.10", "currency": "RUB"}
    assert yookassa.created_with["receipt"]["items"][0]["amount"] == {"value": "909.10", "currency": "RUB"}
    assert yookassa.created_with["receipt"]["customer"] == {"email": "payer@example.com"}

    # A notification that claims success for a payment the API says is still pending: nothing.
    claimed = {**created, "status": "succeeded", "paid": True}
    assert yookassa.deliver("payment.succeeded", claimed).status_code == 200
    assert holder.balance() == start
    yookassa.succeed(payment["reference"])
    yookassa.succeed(payment["reference"])  # notified twice
    assert holder.balance() == start + 10
    assert _ledger(site, payment["reference"]) == "[('topup', '10.0000000000')]"

    refund = yookassa.refund(payment["reference"], "454.55")
    yookassa.deliver("refund.succeeded", refund)
    yookassa.deliver("refund.succeeded", refund)
    assert holder.balance() == start + 10 - Decimal("5.00")  # 454.55 RUB x 0.011, to the cent


def test_a_lost_notification_is_found_by_the_sweep(
    site: LiveServer, doubles: tuple[StripeDouble, YooKassaDouble]
) -> None:
    stripe, yookassa = doubles
    holder = _holder(site, "sweep")
    start = holder.balance()
    by_stripe, by_yookassa = holder.pay("5.00", "stripe"), holder.pay("6.00", "yookassa")
    stripe.complete(by_stripe["reference"], notify=False)
    yookassa.succeed(by_yookassa["reference"], notify=False)
    expired = holder.pay("8.00", "yookassa")
    yookassa.cancel(expired["reference"])
    swept = manage(
        site,
        "shell",
        "-c",
        "from datetime import timedelta; from django.utils import timezone; "
        "from payments.services import payments_sweep; "
        "print(payments_sweep(now=timezone.now() + timedelta(minutes=10)))",
    )
    assert int(swept.strip().splitlines()[-1]) >= 3
    assert holder.balance() == start + 11
    statuses = {p["reference"]: p["status"] for p in holder.client.get("/console/api/payments").json()["data"]}
    assert statuses[expired["reference"]] == "expired"


def test_bad_requests_to_add_funds_are_refused(site: LiveServer) -> None:
    holder = _holder(site, "bad-amounts")
    no_email = holder.send("POST", "/console/api/payments", {"amount": "10", "provider": "yookassa"})
    assert no_email.status_code == 400 and no_email.json()["error"]["code"] == "email_required"
    for amount in ("0", "-5", "4.99", "1000.01", "10.001", "NaN", "Infinity", "1e400", "ten"):
        response = holder.send("POST", "/console/api/payments", {"amount": amount, "provider": "stripe"})
        assert response.status_code == 400, (amount, response.text)
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert holder.send("POST", "/console/api/payments", {"amount": "10", "provider": "paypal"}).status_code == 404
    # A few payments a minute per wallet: each is a call to the provider.
    eager = _holder(site, "eager-payer")
    made = [eager.pay_status("5.00") for _ in range(12)]
    assert made[:10] == [201] * 10 and made[10:] == [429, 429]
    no_email = holder.send("POST", "/console/api/payments", {"amount": "10", "provider": "yookassa"})
    assert no_email.status_code == 400 and no_email.json()["error"]["code"] == "email_required"
    assert holder.client.get("/console/api/payments").json()["data"] == []
    assert httpx.post(site.base_url + "/payments/webhooks/paypal", content=b"{}").status_code == 404
