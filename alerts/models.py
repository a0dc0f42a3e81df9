"""Alerts: endpoints an account registers for webhooks, each delivery's log, the account's
thresholds, and which crossings have fired (each fires once per crossing)."""

from __future__ import annotations

from django.db import models

from chat.models import MONEY, Account

EVENTS = (
    "balance.low",  # the balance fell below the account's threshold
    "budget.threshold",  # a budget passed 50, 80 or 100 % in its period
    "payment.succeeded",
    "payment.refunded",
    "key.created",
    "key.disabled",
    "upstream.circuit_open",  # operators: an upstream deployment's circuit opened in a web process
    "upstream.circuit_closed",  # … and closed again
    "test",  # the "send test event" button
)
OPERATOR_EVENTS = ("upstream.circuit_open", "upstream.circuit_closed")


class Endpoint(models.Model):
    # None: the operators' (registered in the ops console; upstream events).
    account = models.ForeignKey(
        Account, null=True, blank=True, on_delete=models.CASCADE, related_name="webhook_endpoints"
    )
    url = models.URLField(max_length=2000)
    secret = models.CharField(max_length=100, help_text="whsec_… (Standard Webhooks): the receiver verifies with it.")
    events = models.JSONField(default=list, blank=True, help_text="Event types; empty = all.")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.url

    def wants(self, event: str) -> bool:
        return self.is_active and (not self.events or event in self.events or event == "test")


class Delivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="deliveries")
    message_id = models.CharField(max_length=40, unique=True)  # the webhook-id header
    event = models.CharField(max_length=32)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_status = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=200, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.event} → {self.endpoint_id} ({self.status})"


class Settings(models.Model):
    """An account's alert settings: the balance threshold, and whether mail goes out."""

    account = models.OneToOneField(Account, primary_key=True, on_delete=models.CASCADE, related_name="alert_settings")
    balance_below = models.DecimalField(null=True, blank=True, **MONEY)
    email = models.BooleanField(default=True)


class Crossing(models.Model):
    """A threshold crossed and alerted: `key` names it ("balance", "budget:<id>:<period>:80");
    the row goes when the balance is back above its threshold, so it fires again next time."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=100)
    fired_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "key"], name="one_crossing")]
