"""YooKassa, on its official SDK: a payment with a redirect confirmation, captured at once.
A notification is believed only after two checks: it came from one of YooKassa's documented
addresses (GHOSTGPT_YOOKASSA_NOTIFY_FROM; the SDK's list by default, the client address as
chat.network resolves it behind the trusted proxies), and the payment or refund it names,
fetched from the API, says the same — its status, amount and currency (payments.services
compares them with what was created). Receipts for Russian fiscal law (54-FZ) when
GHOSTGPT_YOOKASSA_RECEIPT is on.

Settings: GHOSTGPT_YOOKASSA_SHOP_ID, GHOSTGPT_YOOKASSA_SECRET_KEY, GHOSTGPT_YOOKASSA_CURRENCY
(RUB), GHOSTGPT_YOOKASSA_API_URL (tests point the SDK at a loopback double).
"""

from __future__ import annotations

import ipaddress
import json
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.http import HttpRequest
from yookassa import Configuration, Refund
from yookassa import Payment as YooPayment

from chat.network import client_address

from .base import Checkout, Observation, ProviderRefused

if TYPE_CHECKING:
    from payments.models import Payment

STATUS = {"succeeded": "paid", "pending": "pending", "waiting_for_capture": "pending", "canceled": "failed"}


class YooKassaProvider:
    name = "yookassa"

    def __init__(self, config: dict[str, Any]) -> None:
        self.currency = config["CURRENCY"]
        self._receipt = config["RECEIPT"]
        self._vat_code = config["VAT_CODE"]
        self._networks = [ipaddress.ip_network(net, strict=False) for net in config["NOTIFY_FROM"]]
        Configuration.configure(
            config["SHOP_ID"], config["SECRET_KEY"], api_url=config["API_URL"], timeout=15, max_attempts=2
        )

    def checkout(self, payment: Payment, *, return_url: str, cancel_url: str) -> Checkout:
        params: dict[str, Any] = {
            "amount": {"value": f"{payment.charged_amount:.2f}", "currency": self.currency},
            "confirmation": {"type": "redirect", "return_url": return_url},
            "capture": True,
            "description": f"GhostGPT credit #{payment.account_id}",
            "metadata": {"payment": str(payment.pk), "account": str(payment.account_id)},
        }
        if self._receipt:
            params["receipt"] = {
                "customer": {"email": payment.detail["receipt_email"]},
                "items": [
                    {
                        "description": "GhostGPT credit",
                        "quantity": "1.00",
                        "amount": params["amount"],
                        "vat_code": self._vat_code,
                        "payment_mode": "full_prepayment",
                        "payment_subject": "service",
                    }
                ],
            }
        made = YooPayment.create(params, idempotency_key=str(payment.pk))
        return Checkout(reference=made.id, redirect_url=made.confirmation.confirmation_url)

    def notifications(self, request: HttpRequest) -> list[Observation]:
        sender = client_address(request.META)
        if sender is None or not any(sender in net for net in self._networks):
            raise ProviderRefused(f"a notification from {sender}, not one of YooKassa's addresses")
        try:
            body = json.loads(request.body)
            event, thing = str(body["event"]), body["object"]
            object_id = str(thing["id"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ProviderRefused(f"not a YooKassa notification: {exc}") from None
        if event.startswith("payment."):
            return self._payment(YooPayment.find_one(object_id), source=event)
        if event == "refund.succeeded":
            refund = Refund.find_one(object_id)
            if refund.status != "succeeded":
                return []
            return [
                Observation(
                    kind="refund",
                    reference=refund.payment_id,
                    event_id=f"refund:{refund.id}",
                    amount=Decimal(str(refund.amount.value)),
                    currency=refund.amount.currency,
                )
            ]
        return []

    def poll(self, payment: Payment) -> list[Observation]:
        return self._payment(YooPayment.find_one(payment.reference), source="poll")

    def _payment(self, found: Any, *, source: str) -> list[Observation]:
        """What the API says of a payment. Its id names the state found, not the notification:
        a notification that claimed more than the API said must not use up the real one's."""
        event_id = f"{source}:{found.id}:{found.status}"
        kind = STATUS.get(found.status)
        if kind is None:
            return []
        details = getattr(found, "cancellation_details", None)
        if kind == "failed" and details is not None and getattr(details, "reason", "") == "expired_on_confirmation":
            kind = "expired"
        return [
            Observation(
                kind=kind,  # type: ignore[arg-type]
                reference=found.id,
                event_id=event_id,
                amount=Decimal(str(found.amount.value)),
                currency=found.amount.currency,
            )
        ]
