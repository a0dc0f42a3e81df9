"""Reads about payments: an account's history, one payment, the operators' list."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import QuerySet

from chat.console.selectors import money

from .models import Payment
from .providers.registry import providers


def payment_body(payment: Payment) -> dict[str, Any]:
    return {
        "id": str(payment.pk),
        "object": "payment",
        "provider": payment.provider,
        "reference": payment.reference,
        "status": payment.status,
        "amount": money(payment.amount),
        "currency": settings.GHOSTGPT["CURRENCY"],
        "charged": {"amount": money(payment.charged_amount), "currency": payment.charged_currency},
        "rate": money(payment.rate),
        "refunded": money(payment.refunded_amount),
        "created_at": payment.created_at,
        "paid_at": payment.paid_at,
        "redirect_url": payment.redirect_url if payment.status == Payment.Status.PENDING else None,
        "receipt_url": f"/console/payments/{payment.pk}",
    }


def payments_of(*, account_id: int, limit: int = 50) -> QuerySet[Payment]:
    return Payment.objects.filter(account_id=account_id).order_by("-created_at")[:limit]


def payment_of(*, account_id: int, payment_id: Any) -> Payment | None:
    return Payment.objects.filter(account_id=account_id, pk=payment_id).first()


def payment_options() -> dict[str, Any]:
    """What "Add funds" offers: the providers, each with what it charges in, and the amounts."""
    config = settings.PAYMENTS
    return {
        "providers": [
            {
                "name": name,
                "currency": provider.currency,
                "rate": money(config[name.upper()]["RATE"]),
                # A fiscal receipt needs an address (the signed-in person's, else asked for).
                "receipt": bool(config[name.upper()].get("RECEIPT")),
            }
            for name, provider in providers().items()
        ],
        "min": money(config["MIN_AMOUNT"]),
        "max": money(config["MAX_AMOUNT"]),
        "presets": [money(amount) for amount in config["PRESETS"]],
    }


def payments_all(*, status: str = "", limit: int = 100) -> QuerySet[Payment]:
    rows = Payment.objects.select_related("account").order_by("-created_at")
    if status:
        rows = rows.filter(status=status)
    return rows[:limit]
