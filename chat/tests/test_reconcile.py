"""The reconciler closes exactly the reservations whose process was lost: old, unsettled;
never a settled one, never a running one (a client may reuse a request id)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from unittest import mock

import pytest
from django.utils import timezone

from chat.billing.reconcile import reservations_reconcile
from chat.billing.wallet import wallet_reserve, wallet_settle, wallet_top_up
from chat.models import Account, LedgerEntry, UsageRecord
from chat.services import account_create_with_key

pytestmark = pytest.mark.django_db


def reserve(account_id: int, request_id: str, when: object) -> object:
    detail = {"model": "m", "key_id": None, "prompt_tokens": 7, "prompt_cost": "0.07"}
    with mock.patch("django.utils.timezone.now", return_value=when):
        return wallet_reserve(account_id=account_id, amount=Decimal("1"), request_id=request_id, detail=detail)


def test_only_old_unsettled_reservations_are_closed() -> None:
    key, _ = account_create_with_key(name="orphans")
    account = key.account_id
    wallet_top_up(account_id=account, amount=Decimal(10), idempotency_key="seed")
    now = timezone.now()
    old = now - timedelta(hours=3)
    settled = reserve(account, "settled", old)
    wallet_settle(reservation=settled, cost=Decimal("0.5"), usage=None)  # type: ignore[arg-type]
    reserve(account, "lost", old)
    reused = reserve(account, "reused", old)  # settled; then the same id again, running now
    wallet_settle(reservation=reused, cost=Decimal("0.5"), usage=None)  # type: ignore[arg-type]
    reserve(account, "reused", now)
    reserve(account, "running", now)

    assert reservations_reconcile(older_than=7200, policy="prompt", now=now) == 1
    closing = LedgerEntry.objects.get(kind="reconcile")
    assert closing.request_id == "lost" and closing.amount == Decimal("0.93")
    assert closing.detail["policy"] == "prompt" and closing.detail["charged"] == "0.07"
    assert UsageRecord.objects.get(request_id="lost").prompt_tokens == 7
    assert reservations_reconcile(older_than=7200, policy="prompt", now=now) == 0  # once
    balance = Account.objects.get(pk=account).balance
    assert balance == sum(LedgerEntry.objects.filter(account_id=account).values_list("amount", flat=True))
    assert balance == Decimal(10) - Decimal("0.5") - Decimal("0.07") - Decimal("0.5") - 2  # two still running
