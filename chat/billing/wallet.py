"""Money moves here only: reserve, settle, top up. Each is one transaction whose
balance change is a conditional UPDATE, so concurrent requests can never overspend, and
whose ledger entry records the change (the entries of an account sum to its balance).

Overage policy: a request is admitted only when the balance covers its worst case, so the
real cost is almost always within the reservation. When it is not (a model reported more
than its bound allowed, or a price changed mid-request), settlement still charges every
reported token: an `overage` entry takes the excess, which may take the balance below zero
by at most that excess. An account below zero gets 402 on every priced request until a
top-up makes it positive again."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import F

from chat.models import Account, LedgerEntry, UsageRecord

ZERO = Decimal(0)


class InsufficientBalance(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Reservation:
    account_id: int
    amount: Decimal
    request_id: str


def _record(
    account_id: int, kind: str, amount: Decimal, *, request_id: str = "", idempotency_key: str | None = None
) -> LedgerEntry:
    balance = Account.objects.filter(pk=account_id).values_list("balance", flat=True).get()
    return LedgerEntry.objects.create(
        account_id=account_id,
        kind=kind,
        amount=amount,
        balance_after=balance,
        request_id=request_id,
        idempotency_key=idempotency_key,
    )


@transaction.atomic
def wallet_reserve(*, account_id: int, amount: Decimal, request_id: str) -> Reservation:
    """Take the worst-case cost now; raises InsufficientBalance when the balance is short
    (always when it is below zero). A reservation is never a credit: amounts <= 0 raise."""
    if amount <= 0:
        raise ValueError("a reservation must be positive")
    taken = Account.objects.filter(pk=account_id, balance__gte=amount).update(balance=F("balance") - amount)
    if not taken:
        raise InsufficientBalance
    _record(account_id, LedgerEntry.Kind.RESERVE, -amount, request_id=request_id)
    return Reservation(account_id=account_id, amount=amount, request_id=request_id)


@transaction.atomic
def wallet_settle(*, reservation: Reservation, cost: Decimal, usage: UsageRecord, failed: bool = False) -> None:
    """Charge the real cost and store the usage row: what the reservation took beyond it
    returns to the balance; a cost beyond the reservation is taken as an overage (see the
    module's policy). A request that failed before producing anything refunds all of it."""
    cost = max(cost, ZERO)
    account = Account.objects.filter(pk=reservation.account_id)
    if cost <= reservation.amount:
        unused = reservation.amount - cost
        if unused:
            account.update(balance=F("balance") + unused)
        kind = LedgerEntry.Kind.REFUND if failed and not cost else LedgerEntry.Kind.SETTLE
        _record(reservation.account_id, kind, unused, request_id=reservation.request_id)
    else:
        excess = cost - reservation.amount
        account.update(balance=F("balance") - excess)
        _record(reservation.account_id, LedgerEntry.Kind.OVERAGE, -excess, request_id=reservation.request_id)
    usage.save()


def usage_record(*, usage: UsageRecord) -> None:
    usage.save()


def wallet_top_up(*, account_id: int, amount: Decimal, idempotency_key: str | None) -> tuple[LedgerEntry, bool]:
    """Add money. The same idempotency key twice adds it once: returns (entry, created)."""
    if idempotency_key:
        existing = LedgerEntry.objects.filter(
            account_id=account_id, kind=LedgerEntry.Kind.TOPUP, idempotency_key=idempotency_key
        ).first()
        if existing:
            return existing, False
    try:
        with transaction.atomic():
            Account.objects.filter(pk=account_id).update(balance=F("balance") + amount)
            return _record(account_id, LedgerEntry.Kind.TOPUP, amount, idempotency_key=idempotency_key or None), True
    except IntegrityError:  # a concurrent top-up with the same key won the race
        return LedgerEntry.objects.get(
            account_id=account_id, kind=LedgerEntry.Kind.TOPUP, idempotency_key=idempotency_key
        ), False
