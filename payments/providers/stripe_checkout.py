"""Stripe, on its official SDK: a Checkout Session per payment; the wallet is credited on
`checkout.session.completed` only when `payment_status` is `paid` (a delayed method is
credited on `checkout.session.async_payment_succeeded`), verified with the SDK's signature
check of the `Stripe-Signature` header. Refunds (`charge.refunded`, cumulative) and disputes
(`charge.dispute.created`) take money back.

Settings: GHOSTGPT_STRIPE_SECRET_KEY, GHOSTGPT_STRIPE_WEBHOOK_SECRET, GHOSTGPT_STRIPE_CURRENCY
(default the wallet's), GHOSTGPT_STRIPE_API_BASE (tests point the SDK at a loopback double).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import stripe
from django.conf import settings
from django.http import HttpRequest

from .base import Checkout, Observation, ProviderRefused, minor_units

if TYPE_CHECKING:
    from payments.models import Payment

# Stripe lets a Checkout Session live 30 minutes to 24 hours.
SESSION_MINUTES = 60


class StripeProvider:
    name = "stripe"

    def __init__(self, config: dict[str, Any]) -> None:
        self.currency = config["CURRENCY"]
        self._webhook_secret = config["WEBHOOK_SECRET"]
        base = {"api": config["API_BASE"]} if config["API_BASE"] else None
        self._client = stripe.StripeClient(config["SECRET_KEY"], base_addresses=base, max_network_retries=2)  # type: ignore[arg-type]

    def checkout(self, payment: Payment, *, return_url: str, cancel_url: str) -> Checkout:
        expires = datetime.now(UTC) + timedelta(minutes=SESSION_MINUTES)
        session = self._client.v1.checkout.sessions.create(
            params={
                "mode": "payment",
                "line_items": [
                    {
                        "quantity": 1,
                        "price_data": {
                            "currency": self.currency.lower(),
                            "unit_amount": minor_units(payment.charged_amount),
                            "product_data": {
                                "name": f"GhostGPT credit: {payment.amount} {settings.GHOSTGPT['CURRENCY']}"
                            },
                        },
                    }
                ],
                "client_reference_id": str(payment.pk),
                "metadata": {"payment": str(payment.pk), "account": str(payment.account_id)},
                "success_url": return_url,
                "cancel_url": cancel_url,
                "expires_at": int(expires.timestamp()),
            },
            options={"idempotency_key": f"checkout-{payment.pk}"},
        )
        return Checkout(reference=session.id, redirect_url=session.url or "", expires_at=expires)

    def notifications(self, request: HttpRequest) -> list[Observation]:
        try:
            event = self._client.construct_event(
                request.body, request.headers.get("Stripe-Signature", ""), self._webhook_secret
            )
        except (stripe.SignatureVerificationError, ValueError) as exc:
            raise ProviderRefused(f"not a Stripe event: {exc}") from None
        return _observe(event.id, event.type, event.data.object.to_dict())

    def poll(self, payment: Payment) -> list[Observation]:
        session = self._client.v1.checkout.sessions.retrieve(payment.reference)
        return _observe(f"poll:{session.id}:{session.status}:{session.payment_status}", "poll", session.to_dict())


def _money(minor: int | None) -> Decimal | None:
    return None if minor is None else Decimal(minor) / 100


def _session(event_id: str, kind: str, session: Any) -> list[Observation]:
    """A Checkout Session as an observation: paid only when `payment_status` says so (a
    completed session of a delayed method is pending until async_payment_succeeded)."""
    paid = session.get("payment_status") == "paid"
    if kind in ("checkout.session.completed", "checkout.session.async_payment_succeeded"):
        status: str | None = "paid" if paid else "pending"
    elif kind == "poll":
        status = "paid" if paid else ("expired" if session.get("status") == "expired" else "pending")
    else:
        status = {"checkout.session.async_payment_failed": "failed", "checkout.session.expired": "expired"}.get(kind)
    if status is None:
        return []
    return [
        Observation(
            kind=status,  # type: ignore[arg-type]
            reference=session["id"],
            event_id=event_id,
            amount=_money(session.get("amount_total")),
            currency=(session.get("currency") or "").upper(),
            provider_payment=session.get("payment_intent") or "",
        )
    ]


def _observe(event_id: str, kind: str, data: Any) -> list[Observation]:
    if kind.startswith("checkout.session.") or kind == "poll":
        return _session(event_id, kind, data)
    if kind == "charge.refunded":
        # Cumulative: what has been refunded of this charge so far (payments.services takes
        # the difference from what it already took back, so every refund counts once).
        return [
            Observation(
                kind="refund",
                reference="",
                event_id=f"{data['id']}:refunded:{data.get('amount_refunded')}",
                amount=_money(data.get("amount_refunded")),
                currency=(data.get("currency") or "").upper(),
                provider_payment=data.get("payment_intent") or "",
                detail={"cumulative": True},
            )
        ]
    if kind == "charge.dispute.created":
        return [
            Observation(
                kind="dispute",
                reference="",
                event_id=data["id"],
                amount=_money(data.get("amount")),
                currency=(data.get("currency") or "").upper(),
                provider_payment=data.get("payment_intent") or "",
            )
        ]
    return []
