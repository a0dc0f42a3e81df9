"""The one shape every payment provider has.

A provider makes a checkout for a Payment (where to send the person), reads its own
notifications — verified the provider's way, never trusted as sent — and answers what it
says about a payment now (the periodic sweep for lost notifications asks it). What it
reports is an Observation; payments.services applies each once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, Protocol

from django.http import HttpRequest

if TYPE_CHECKING:
    from payments.models import Payment

Kind = Literal["paid", "pending", "failed", "expired", "refund", "dispute"]


class ProviderRefused(Exception):
    """A notification that is not the provider's (bad signature, unknown sender) or not
    readable: answered 400, nothing changes."""


@dataclass(frozen=True)
class Checkout:
    reference: str  # the provider's id for the payment
    redirect_url: str  # where the person pays
    expires_at: datetime | None = None


@dataclass(frozen=True)
class Observation:
    """A fact the provider vouches for: `kind` of payment `reference`, with its own
    `event_id` (so it is applied once) and the amount in the provider's currency (the
    payment's total, or what a refund or dispute takes back)."""

    kind: Kind
    reference: str
    event_id: str
    amount: Decimal | None = None
    currency: str = ""
    provider_payment: str = ""  # e.g. Stripe's PaymentIntent, which refunds name
    detail: dict[str, Any] = field(default_factory=dict)


class Provider(Protocol):
    name: str
    currency: str  # what it charges in (ISO 4217, upper case)

    def checkout(self, payment: Payment, *, return_url: str, cancel_url: str) -> Checkout: ...

    def notifications(self, request: HttpRequest) -> list[Observation]:
        """The notification in `request`, verified; raises ProviderRefused."""
        ...

    def poll(self, payment: Payment) -> list[Observation]:
        """What the provider says about `payment` now."""
        ...


def minor_units(amount: Decimal) -> int:
    """An amount in a two-decimal currency's minor units (cents, kopecks)."""
    return int((amount * 100).to_integral_value())
