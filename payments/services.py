"""Writes about payments: starting one, and applying what a provider reports — exactly once.

Exactly once, whatever arrives:
- every provider event is stored once by (provider, event id): a replayed or concurrently
  duplicated notification finds its row taken and changes nothing;
- the wallet is credited through the ledger with the provider's payment id as the idempotency
  key, under the payment's row lock: a webhook and the sweep's poll, or two webhooks for the
  same payment (completed, then async_payment_succeeded), credit once;
- a "paid" whose amount or currency differ from what was made here, or for a payment this
  GhostGPT never made, credits nothing (recorded, left for the operator);
- out of order: a failure or expiry after success changes nothing; success after expiry
  credits (the money was taken);
- refunds and disputes take back what they name (a cumulative refund: the part not yet taken
  back), by their own ids; the balance may go below zero (then 402 until topped up again).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from decimal import ROUND_UP, Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit import services as audit
from chat.billing.wallet import wallet_adjust, wallet_top_up
from chat.models import Account, LedgerEntry

from .models import Payment, ProviderEvent
from .providers.base import Observation
from .providers.registry import provider as provider_named

logger = logging.getLogger(__name__)
CENT = Decimal("0.01")
GIVE_UP_AFTER = timedelta(days=1)


class PaymentError(Exception):
    def __init__(self, message: str, status: int = 400, code: str = "invalid_payment") -> None:
        super().__init__(message)
        self.message, self.status, self.code = message, status, code


def _config(name: str) -> dict[str, Any]:
    return settings.PAYMENTS[name.upper()]  # type: ignore[no-any-return]


def payment_start(
    *,
    account: Account,
    user: AbstractBaseUser | None,
    provider: str,
    amount: Decimal,
    return_url: str,
    cancel_url: str,
    email: str = "",
    admit: Callable[[], None] | None = None,
) -> Payment:
    """A payment of `amount` (the wallet's currency) through `provider`, and where the person
    goes to pay. `return_url`/`cancel_url` may hold "{payment}" for the payment's id. `email`:
    where a fiscal receipt goes (default: the signed-in person's address). `admit`: called
    once the request is valid, before the provider is (a rate limit raises there)."""
    chosen = provider_named(provider)
    if chosen is None:
        raise PaymentError(f"No payment provider {provider!r} here.", 404, "unknown_provider")
    low, high = settings.PAYMENTS["MIN_AMOUNT"], settings.PAYMENTS["MAX_AMOUNT"]
    # In range first: quantizing a number as large as 1e400 raises instead of answering.
    if not amount.is_finite() or not low <= amount <= high or amount != amount.quantize(CENT):
        raise PaymentError(f"Add between {low} and {high} {settings.GHOSTGPT['CURRENCY']}, in cents at most.")
    rate = _config(provider)["RATE"]
    email = email or (getattr(user, "email", "") if user is not None else "")
    if provider == "yookassa" and _config(provider)["RECEIPT"] and not email:
        raise PaymentError("A receipt (Russian fiscal law) needs an email address: give one.", 400, "email_required")
    if admit is not None:
        admit()
    payment = Payment.objects.create(
        account=account,
        user=user,
        provider=provider,
        amount=amount,
        charged_amount=(amount / rate).quantize(CENT, rounding=ROUND_UP),
        charged_currency=chosen.currency,
        rate=rate,
        detail={"receipt_email": email} if email else {},
    )
    try:
        checkout = chosen.checkout(
            payment,
            return_url=return_url.format(payment=payment.pk),
            cancel_url=cancel_url.format(payment=payment.pk),
        )
    except Exception as exc:  # the provider down, or refusing: the person is told, nothing is owed
        logger.exception("%s refused or failed a checkout", provider)
        payment.status = Payment.Status.FAILED
        payment.detail = {**payment.detail, "error": type(exc).__name__}
        payment.save(update_fields=["status", "detail", "updated_at"])
        raise PaymentError(
            f"The payment provider ({provider}) did not take the payment: try again later.", 502, "provider_error"
        ) from None
    payment.reference, payment.redirect_url, payment.expires_at = (
        checkout.reference,
        checkout.redirect_url,
        checkout.expires_at,
    )
    payment.save(update_fields=["reference", "redirect_url", "expires_at", "updated_at"])
    audit.record(
        "payment.create",
        account_id=account.pk,
        target=f"payment:{provider}:{payment.reference}",
        after={"amount": amount, "charged": payment.charged_amount, "currency": payment.charged_currency},
    )
    return payment


def observations_apply(provider: str, observations: list[Observation]) -> list[str]:
    """Apply what `provider` vouched for; what became of each (for its log and the tests)."""
    return [observation_apply(provider, observation) for observation in observations]


def observation_apply(provider: str, observation: Observation) -> str:
    try:
        with transaction.atomic():
            event = ProviderEvent.objects.create(
                provider=provider, event_id=observation.event_id, kind=observation.kind
            )
            outcome = _apply(provider, observation, event)
            event.outcome = outcome[:200]
            event.save(update_fields=["outcome", "payment"])
            return outcome
    except IntegrityError:
        return "duplicate event"


def _find(provider: str, observation: Observation) -> Payment | None:
    payments = Payment.objects.select_for_update().filter(provider=provider)
    if observation.reference:
        return payments.filter(reference=observation.reference).first()
    if observation.provider_payment:
        return payments.filter(provider_payment=observation.provider_payment).first()
    return None


def _apply(provider: str, observation: Observation, event: ProviderEvent) -> str:
    payment = _find(provider, observation)
    if payment is None:
        logger.warning("%s reported %s for a payment this server never made", provider, observation.kind)
        return "unknown payment"
    event.payment = payment
    if observation.provider_payment and not payment.provider_payment:
        payment.provider_payment = observation.provider_payment
        payment.save(update_fields=["provider_payment", "updated_at"])
    if observation.kind == "paid":
        return _paid(payment, observation)
    if observation.kind in ("failed", "expired"):
        if payment.status != Payment.Status.PENDING:
            return f"ignored: already {payment.status}"
        payment.status = observation.kind
        payment.save(update_fields=["status", "updated_at"])
        audit.record(f"payment.{observation.kind}", account_id=payment.account_id, target=_target(payment))
        return observation.kind
    if observation.kind in ("refund", "dispute"):
        return _taken_back(payment, observation)
    return "pending"


def _target(payment: Payment) -> str:
    return f"payment:{payment.provider}:{payment.reference}"


def _paid(payment: Payment, observation: Observation) -> str:
    if observation.amount != payment.charged_amount or observation.currency != payment.charged_currency:
        logger.error(
            "%s says %s paid %s %s; it was made for %s %s: not credited",
            payment.provider,
            payment.reference,
            observation.amount,
            observation.currency,
            payment.charged_amount,
            payment.charged_currency,
        )
        payment.detail = {**payment.detail, "mismatch": f"{observation.amount} {observation.currency}"}
        payment.save(update_fields=["detail", "updated_at"])
        return "mismatch: not credited"
    _, created = wallet_top_up(
        account_id=payment.account_id,
        amount=payment.amount,
        idempotency_key=_target(payment),
        detail={
            "payment": str(payment.pk),
            "provider": payment.provider,
            "paid": str(payment.charged_amount),
            "currency": payment.charged_currency,
            "rate": str(payment.rate),
        },
    )
    if payment.status != Payment.Status.SUCCEEDED and payment.status != Payment.Status.REFUNDED:
        late = payment.status in (Payment.Status.EXPIRED, Payment.Status.FAILED)
        payment.status, payment.paid_at = Payment.Status.SUCCEEDED, timezone.now()
        payment.detail = {**payment.detail, **({"late": True} if late else {})}
        payment.save(update_fields=["status", "paid_at", "detail", "updated_at"])
    if created:
        from alerts.services import emit

        emit(payment.account_id, "payment.succeeded", {"payment": str(payment.pk), "amount": payment.amount})
    return "credited" if created else "already credited"


def _taken_back(payment: Payment, observation: Observation) -> str:
    if payment.status not in (Payment.Status.SUCCEEDED, Payment.Status.REFUNDED) or observation.amount is None:
        return f"ignored: {observation.kind} of a payment never credited"
    if observation.currency and observation.currency != payment.charged_currency:
        return "mismatch: currency"
    in_wallet = (observation.amount * payment.rate).quantize(CENT)
    take = in_wallet - payment.refunded_amount if observation.detail.get("cumulative") else in_wallet
    take = min(take, payment.amount - payment.refunded_amount)
    if take <= 0:
        return "nothing more to take back"
    entry, created = wallet_adjust(
        account_id=payment.account_id,
        kind=LedgerEntry.Kind.REVERSAL,
        amount=-take,
        idempotency_key=f"{observation.kind}:{payment.provider}:{observation.event_id}",
        detail={"payment": str(payment.pk), "reference": payment.reference, "why": observation.kind},
    )
    if not created:
        return "already taken back"
    payment.refunded_amount += take
    if payment.refunded_amount >= payment.amount:
        payment.status = Payment.Status.REFUNDED
    payment.save(update_fields=["refunded_amount", "status", "updated_at"])
    from alerts.services import emit

    emit(
        payment.account_id,
        "payment.refunded",
        {"payment": str(payment.pk), "taken_back": take, "why": observation.kind},
    )
    audit.record(
        f"payment.{observation.kind}",
        account_id=payment.account_id,
        target=_target(payment),
        after={"taken_back": take, "balance_after": entry.balance_after},
    )
    return f"taken back {take}"


POLL_EVERY = timedelta(seconds=3)


def payment_refresh(payment: Payment) -> Payment:
    """Ask the provider about a payment still pending (the person is back before the
    notification, or it was lost) and apply what it says — at most once every POLL_EVERY per
    payment, however often the page asks."""
    chosen = provider_named(payment.provider)
    if chosen is None or payment.status != Payment.Status.PENDING or not payment.reference:
        return payment
    due = timezone.now() - POLL_EVERY
    if not Payment.objects.filter(pk=payment.pk, polled_at__lt=due).update(polled_at=timezone.now()) and not (
        Payment.objects.filter(pk=payment.pk, polled_at__isnull=True).update(polled_at=timezone.now())
    ):
        return payment
    observations_apply(payment.provider, chosen.poll(payment))
    payment.refresh_from_db()
    return payment


def payments_sweep(*, now: Any = None) -> int:
    """The periodic cure for "paid but not credited": every payment pending longer than
    SWEEP_AFTER_SECONDS is asked about; one pending past a day is given up as expired."""
    now = now or timezone.now()
    swept = 0
    cutoff = now - timedelta(seconds=settings.PAYMENTS["SWEEP_AFTER_SECONDS"])
    for payment in Payment.objects.filter(status=Payment.Status.PENDING, created_at__lte=cutoff).exclude(reference=""):
        try:
            payment = payment_refresh(payment)
        except Exception:  # one provider's outage must not stop the sweep
            logger.exception("asking %s about payment %s failed", payment.provider, payment.pk)
            continue
        swept += 1
        if payment.status == Payment.Status.PENDING and payment.created_at <= now - GIVE_UP_AFTER:
            observation_apply(
                payment.provider,
                Observation(kind="expired", reference=payment.reference, event_id=f"sweep:{payment.pk}:expired"),
            )
    return swept
