"""Alerts: emitting an event (a delivery per subscribed endpoint, sent by a Celery task with
retries; mail to the account's people), delivering one signed as Standard Webhooks says, the
thresholds' sweep, and the endpoints' management."""

from __future__ import annotations

import base64
import json
import logging
import secrets
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from chat.billing.budgets import period_key_of, period_keys
from chat.models import Account, Budget
from tools.base import ToolError
from tools.fetching import SafeFetcher

from .models import EVENTS, OPERATOR_EVENTS, Crossing, Delivery, Endpoint, Settings

logger = logging.getLogger(__name__)
MAX_ATTEMPTS = 8
MAX_ENDPOINTS = 10
BUDGET_LEVELS = (50, 80, 100)
MAILED = {"balance.low", "budget.threshold", "payment.succeeded", "payment.refunded", "key.created", "key.disabled"}


class AlertError(Exception):
    def __init__(self, message: str, param: str = "url") -> None:
        super().__init__(message)
        self.message, self.param = message, param


# --- endpoints --------------------------------------------------------------------------------


def endpoint_create(*, account: Account | None, url: str, events: list[str]) -> Endpoint:
    """A webhook endpoint with a new signing secret. The URL must be one fetch-url could
    reach (http/https, no credentials, allowed ports); its addresses are checked again at
    every delivery (private and loopback ones refused), so DNS changes cannot turn it inward."""
    try:
        SafeFetcher().check(url)
    except ToolError as exc:
        raise AlertError(exc.message) from None
    known = OPERATOR_EVENTS if account is None else [e for e in EVENTS if e not in OPERATOR_EVENTS]
    unknown = [event for event in events if event not in known]
    if unknown:
        raise AlertError(f"Unknown events: {', '.join(unknown)}. Known: {', '.join(known)}.", "events")
    if Endpoint.objects.filter(account=account).count() >= MAX_ENDPOINTS:
        raise AlertError(f"An account has at most {MAX_ENDPOINTS} webhook endpoints.")
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    return Endpoint.objects.create(account=account, url=url, secret=secret, events=events)


# --- emitting and delivering -------------------------------------------------------------------


def emit(account_id: int | None, event: str, data: dict[str, Any], *, only: Endpoint | None = None) -> list[Delivery]:
    """An event for the account: a delivery for each endpoint that wants it (or just `only`),
    sent after the current transaction commits; mail to the account's people for the events
    they are mailed about."""
    from . import tasks

    payload = {"type": event, "timestamp": timezone.now().isoformat(), "data": _plain(data)}
    endpoints = [only] if only is not None else list(Endpoint.objects.filter(account_id=account_id, is_active=True))
    made = []
    for endpoint in endpoints:
        if endpoint.wants(event):
            delivery = Delivery.objects.create(
                endpoint=endpoint, message_id="msg_" + secrets.token_urlsafe(18), event=event, payload=payload
            )
            made.append(delivery)
            transaction.on_commit(lambda pk=delivery.pk: tasks.deliver.delay(pk))
    if event in MAILED and only is None and account_id is not None:
        transaction.on_commit(lambda: _mail(account_id, event, payload))
    return made


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(data, default=str))  # type: ignore[no-any-return]


def _mail(account_id: int, event: str, payload: dict[str, Any]) -> None:  # an account's people
    account = Account.objects.select_related("user").filter(pk=account_id).first()
    if account is None:
        return
    config = Settings.objects.filter(account=account).first()
    if config is not None and not config.email:
        return
    people = _addresses(account)
    if not people:
        return
    try:
        send_mail(
            f"{settings.ACCOUNT_EMAIL_SUBJECT_PREFIX}{event} on {account.name}",
            f"{event} on {account.name} (#{account.pk}):\n\n{json.dumps(payload['data'], indent=2)}\n",
            None,
            people,
        )
    except Exception:  # the mail server down must not break what emitted it
        logger.exception("alert mail for %s failed", event)


def _addresses(account: Account) -> list[str]:
    """The verified addresses of the account's person, or of an organization's owners,
    admins and billing members."""
    from allauth.account.models import EmailAddress

    if account.user_id is not None:
        users = [account.user_id]
    else:
        from people.models import Membership

        users = list(
            Membership.objects.filter(organization_id=account.pk, role__in=("owner", "admin", "billing")).values_list(
                "user_id", flat=True
            )
        )
    return sorted(set(EmailAddress.objects.filter(user_id__in=users, verified=True).values_list("email", flat=True)))


def headers_for(delivery: Delivery, body: str, *, at: datetime | None = None) -> dict[str, str]:
    """The Standard Webhooks headers: webhook-id, webhook-timestamp, webhook-signature."""
    at = at or datetime.now(UTC)
    signature = Webhook(delivery.endpoint.secret).sign(delivery.message_id, at, body)
    return {
        "webhook-id": delivery.message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
        "Content-Type": "application/json",
    }


def deliver_once(delivery: Delivery) -> bool:
    """One attempt: POSTed by fetch-url's rules (public addresses only, the connection to the
    checked address, a deadline); True when the receiver answered 2xx. The log keeps status,
    attempts and latency."""
    body = json.dumps(delivery.payload, separators=(",", ":"))
    started = time.monotonic()
    status, error = None, ""
    try:
        status = SafeFetcher().post(delivery.endpoint.url, body.encode(), headers_for(delivery, body))
    except ToolError as exc:
        error = exc.message[:200]
    delivery.attempts += 1
    delivery.last_status, delivery.last_error = status, error
    delivery.latency_ms = int((time.monotonic() - started) * 1000)
    ok = status is not None and 200 <= status < 300
    if ok or delivery.attempts >= MAX_ATTEMPTS:
        delivery.status = Delivery.Status.DELIVERED if ok else Delivery.Status.FAILED
        delivery.finished_at = timezone.now()
    delivery.save()
    return ok


def backoff_seconds(attempts: int) -> int:
    """Exponential: 10 s, 20 s, 40 s … at most an hour."""
    return int(min(10 * 2 ** max(attempts - 1, 0), 3600))


# --- thresholds --------------------------------------------------------------------------------


def _cross(account_id: int, key: str) -> bool:
    """Mark a crossing; False when it had fired already."""
    try:
        with transaction.atomic():
            Crossing.objects.create(account_id=account_id, key=key)
        return True
    except IntegrityError:
        return False


def thresholds_sweep(now: datetime | None = None) -> int:
    """Fire what crossed since the last sweep: a balance below its threshold (again only after
    it has been back above), a budget past 50/80/100 % of its period (once per period)."""
    now = now or timezone.now()
    fired = 0
    for config in Settings.objects.select_related("account").exclude(balance_below=None):
        account = config.account
        if account.balance < config.balance_below:  # type: ignore[operator]
            if _cross(account.pk, "balance"):
                emit(account.pk, "balance.low", {"balance": account.balance, "threshold": config.balance_below})
                fired += 1
        else:
            Crossing.objects.filter(account=account, key="balance").delete()  # re-armed
    for budget in Budget.objects.select_related("account").filter(amount__gt=0):
        keys = period_keys(now, budget.account.time_zone)
        current = period_key_of(budget.period, keys)
        if budget.period_key != current:
            continue
        used = budget.spent * 100 / budget.amount
        for level in BUDGET_LEVELS:
            if used >= level and _cross(budget.account_id, f"budget:{budget.pk}:{current}:{level}"):
                emit(
                    budget.account_id,
                    "budget.threshold",
                    {
                        "budget": {"scope": budget.scope, "key": budget.key_id, "user": budget.user_id},
                        "level": level,
                        "spent": budget.spent,
                        "amount": budget.amount,
                        "period": current,
                    },
                )
                fired += 1
    return fired


def settings_set(*, account: Account, balance_below: Decimal | None, email: bool | None) -> Settings:
    config, _ = Settings.objects.get_or_create(account=account)
    config.balance_below = balance_below
    if email is not None:
        config.email = email
    config.save()
    Crossing.objects.filter(account=account, key="balance").delete()
    return config


def deliveries_purge(older_than: timedelta = timedelta(days=30)) -> int:
    return int(Delivery.objects.filter(created_at__lt=timezone.now() - older_than).delete()[0])


def circuit_changed(*, deployment: str, opened: bool) -> None:
    """The operators' webhooks hear an upstream's circuit open or close (each web process
    reports its own circuits)."""
    event = "upstream.circuit_open" if opened else "upstream.circuit_closed"
    with transaction.atomic():
        emit(None, event, {"deployment": deployment})
