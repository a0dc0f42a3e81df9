"""Payments: money a person pays a provider to fill a wallet.

A Payment is made before the person is sent to the provider; the provider's own id for it
(`reference`: a Stripe Checkout Session id, a YooKassa payment id) is the ledger's
idempotency key, so however many times, in whatever order and from however many processes
the provider says "paid", the wallet is credited once. Every provider event is kept once
(ProviderEvent), refunds and disputes debit the wallet once each, by their own ids.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models

from chat.models import MONEY, Account


class Payment(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"  # made here, the person at the provider
        SUCCEEDED = "succeeded", "Paid"  # the wallet credited
        FAILED = "failed", "Failed"
        EXPIRED = "expired", "Expired"  # the provider's session ended unpaid
        REFUNDED = "refunded", "Refunded"  # all of it given back (partly: refunded_amount)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="payments")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    provider = models.CharField(max_length=16)
    reference = models.CharField(max_length=100, blank=True, help_text="The provider's id for it.")
    # What the wallet gets (its currency), and what the provider charges (its currency, at
    # the operator's rate: wallet units per unit charged).
    amount = models.DecimalField(**MONEY)
    charged_amount = models.DecimalField(**MONEY)
    charged_currency = models.CharField(max_length=3)
    rate = models.DecimalField(default=Decimal(1), **MONEY)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    redirect_url = models.URLField(max_length=2000, blank=True)
    provider_payment = models.CharField(max_length=100, blank=True, help_text="Stripe's PaymentIntent id.")
    refunded_amount = models.DecimalField(default=Decimal(0), **MONEY)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    polled_at = models.DateTimeField(null=True, blank=True, help_text="When the provider was last asked.")
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "reference"], condition=~models.Q(reference=""), name="one_payment_per_reference"
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.reference or self.pk} ({self.status})"


class ProviderEvent(models.Model):
    """A provider's event (webhook or what polling found), handled once."""

    provider = models.CharField(max_length=16)
    event_id = models.CharField(max_length=200)
    kind = models.CharField(max_length=64)
    payment = models.ForeignKey(Payment, null=True, blank=True, on_delete=models.SET_NULL, related_name="events")
    outcome = models.CharField(max_length=200, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at"]
        constraints = [models.UniqueConstraint(fields=["provider", "event_id"], name="one_event_per_id")]

    def __str__(self) -> str:
        return f"{self.provider} {self.kind} {self.event_id}"
