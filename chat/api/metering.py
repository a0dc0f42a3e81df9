"""The money side of one generation request: reserve, report costs, settle.

Order: the backend measures the prompt (its `Accepted` event), then the worst case
(prompt + max_tokens for every choice, at the model's price) is reserved atomically; a
short balance is HTTP 402 before any byte of the answer. When the response ends,
normally or by disconnect, the reservation settles to the real usage — or, if the client
left early, to what was delivered — and the unused part returns to the balance.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from django.conf import settings

from chat import db
from chat.backends.base import Usage
from chat.billing.pricing import Price
from chat.billing.ratelimit import limiter
from chat.billing.wallet import InsufficientBalance, Reservation, usage_record, wallet_reserve, wallet_settle
from chat.models import UsageRecord

from .auth import Principal
from .errors import ApiError

logger = logging.getLogger(__name__)
COST_PLACES = Decimal("0.0000000001")


def _money(value: Decimal) -> float:
    return float(value.quantize(COST_PLACES))


class Meter:
    def __init__(self, *, principal: Principal, model: str, price: Price, request_id: str, max_completion_tokens: int):
        self.principal = principal
        self.model = model
        self.price = price
        self.request_id = request_id
        self.max_completion_tokens = max_completion_tokens
        self.prompt_tokens = 0
        self.reservation: Reservation | None = None
        self._settled = False

    async def reserve(self, prompt_tokens: int) -> None:
        self.prompt_tokens = prompt_tokens
        if self.price.is_free:
            return
        amount = self.price.cost(prompt_tokens, self.max_completion_tokens)
        try:
            self.reservation = await db.run(
                wallet_reserve, account_id=self.principal.account_id, amount=amount, request_id=self.request_id
            )
        except InsufficientBalance:
            currency = settings.GHOSTGPT["CURRENCY"]
            raise ApiError(
                402,
                f"Your balance is too low for this request: it may cost up to {_money(amount)} {currency} "
                f"({prompt_tokens} prompt tokens + max_tokens {self.max_completion_tokens} at the price of "
                f"'{self.model}'). Top up, or lower max_tokens.",
                error_type="insufficient_balance_error",
                code="insufficient_balance",
            ) from None

    def cost_fields(self, usage: Usage) -> dict[str, Any]:
        """GPTunnel-style cost fields for a `usage` object."""
        prompt = self.price.prompt_cost(usage.prompt_tokens)
        completion = self.price.completion_cost(usage.completion_tokens)
        return {
            "prompt_cost": _money(prompt),
            "completion_cost": _money(completion),
            "total_cost": _money(prompt + completion),
        }

    async def settle(self, *, reported: Usage | None, delivered_tokens: int, failed: bool = False) -> None:
        """Bill the real usage, or what was delivered when the backend never reported it.
        Runs once; never raises (the client's response is already on its way)."""
        if self._settled:
            return
        self._settled = True
        usage = reported or Usage(self.prompt_tokens, delivered_tokens)
        record = UsageRecord(
            account_id=self.principal.account_id,
            key_id=self.principal.key_id,
            model=self.model,
            request_id=self.request_id,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            prompt_cost=self.price.prompt_cost(usage.prompt_tokens),
            completion_cost=self.price.completion_cost(usage.completion_tokens),
            estimated=reported is None or reported.estimated,
        )
        try:
            if self.reservation is not None:
                cost = record.prompt_cost + record.completion_cost
                await db.run(wallet_settle, reservation=self.reservation, cost=cost, usage=record, failed=failed)
            elif usage.total_tokens:
                await db.run(usage_record, usage=record)
            await limiter().add_tokens(self.principal.limits, usage.total_tokens)
        except Exception:
            logger.exception("settling request %s failed", self.request_id)
