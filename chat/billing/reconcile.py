"""Reservations whose process was lost between reserve and settle (SIGKILL, OOM, a node gone)
are closed here, so no money stays held forever.

A reservation is open while its account has fewer closing entries (settle, overage, refund,
reconcile) than reservations under its request id. One older than
GHOSTGPT_RESERVATION_TIMEOUT_SECONDS — longer than any request may run (a stream may last an
hour) — can have no live process left to settle it. What was delivered cannot be known after
a SIGKILL, so by GHOSTGPT_ORPHAN_POLICY either the prompt's counted size is charged (its cost
was kept on the reservation's ledger entry) and the rest refunded (`prompt`, the default), or
all of it is refunded (`refund`). Either way one `reconcile` ledger entry says which, and a
charge has its usage row (flagged estimated and failed). TPM holds need nothing: they live in
one rate window (GHOSTGPT_RATE_WINDOW_SECONDS) and are gone with it.

Every web process runs this at startup and every GHOSTGPT_RECONCILE_SECONDS (a thread, so
`make run` needs no worker); Celery beat runs it too. Each reservation is closed under its
account's row lock, re-checked there, so several runners never close one twice.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from chat.models import Account, LedgerEntry, UsageRecord

from .budgets import period_keys, settle_statements
from .wallet import ZERO, usage_record

logger = logging.getLogger(__name__)
CLOSING = (
    LedgerEntry.Kind.SETTLE,
    LedgerEntry.Kind.OVERAGE,
    LedgerEntry.Kind.REFUND,
    LedgerEntry.Kind.RECONCILE,
)
# How far back past the timeout a run looks (a reservation older than this was closed by an
# earlier run, or the deployment was down for a week: `manage.py` shell can close it).
LOOKBACK = timedelta(days=7)


def reservations_reconcile(*, older_than: float, policy: str, now: datetime | None = None) -> int:
    """Close the open reservations older than `older_than` seconds; how many were closed."""
    cutoff = (now or timezone.now()) - timedelta(seconds=older_than)
    closed = 0
    for account_id, request_id in _open_groups(cutoff):
        with transaction.atomic():  # re-checked under the account's lock: one runner closes it
            Account.objects.select_for_update().filter(pk=account_id).values_list("pk", flat=True).first()
            still_open = _open_old(account_id, request_id, cutoff)
            reserves = LedgerEntry.objects.filter(
                account_id=account_id, request_id=request_id, kind=LedgerEntry.Kind.RESERVE, created_at__lt=cutoff
            ).order_by("id")
            for entry in reserves[: max(still_open, 0)]:
                _close(entry, policy)
                closed += 1
    if closed:
        logger.warning("closed %s reservation(s) older than %ss (policy %s)", closed, int(older_than), policy)
    return closed


def _open_groups(cutoff: datetime) -> list[tuple[int, str]]:
    """(account, request id) of the groups with an open reservation older than `cutoff`: one
    grouped query over the window's ledger, which returns only those (nearly always none)."""
    rows = (
        LedgerEntry.objects.filter(created_at__gte=cutoff - LOOKBACK, kind__in=(LedgerEntry.Kind.RESERVE, *CLOSING))
        .values("account_id", "request_id")
        .annotate(
            old=Count("id", filter=Q(kind=LedgerEntry.Kind.RESERVE, created_at__lt=cutoff)),
            closings=Count("id", filter=Q(kind__in=CLOSING)),
        )
        .filter(old__gt=F("closings"))  # what _open_old counts: closings go to the old ones first
        .order_by()
    )
    return [(row["account_id"], row["request_id"]) for row in rows]


def _open_old(account_id: int, request_id: str, cutoff: datetime) -> int:
    """Old reservations of this request id with no closing entry (a client may reuse a request
    id: its closings are counted against the old ones first, and the recent ones may be
    running now)."""
    entries = LedgerEntry.objects.filter(account_id=account_id, request_id=request_id)
    old = entries.filter(kind=LedgerEntry.Kind.RESERVE, created_at__lt=cutoff).count()
    return old - entries.filter(kind__in=CLOSING).count()


def _close(reservation: LedgerEntry, policy: str) -> None:
    held = -reservation.amount
    detail = reservation.detail or {}
    charge = ZERO
    if policy == "prompt":
        try:
            charge = min(max(Decimal(str(detail.get("prompt_cost", "0"))), ZERO), held)
        except ArithmeticError:  # (decimal's InvalidOperation) a malformed detail charges nothing
            charge = ZERO
    refund = held - charge
    account_id = reservation.account_id
    Account.objects.filter(pk=account_id).update(balance=F("balance") + refund)
    _release_budgets(reservation, held=held, charge=charge)
    balance = Account.objects.filter(pk=account_id).values_list("balance", flat=True).get()
    LedgerEntry.objects.create(
        account_id=account_id,
        kind=LedgerEntry.Kind.RECONCILE,
        amount=refund,
        balance_after=balance,
        request_id=reservation.request_id,
        detail={
            "policy": policy,
            "charged": str(charge),
            "refunded": str(refund),
            "reason": "its process was lost before it settled",
            "reservation": reservation.pk,
        },
    )
    if charge > 0:
        usage = UsageRecord(
            account_id=account_id,
            key_id=detail.get("key_id") if isinstance(detail.get("key_id"), int) else None,
            model=str(detail.get("model", ""))[:200],
            request_id=reservation.request_id,
            prompt_tokens=max(int(detail.get("prompt_tokens") or 0), 0),
            completion_tokens=0,
            prompt_cost=charge,
            completion_cost=ZERO,
            estimated=True,
            failed=True,
        )
        usage_record(usage=usage)


def _release_budgets(reservation: LedgerEntry, *, held: Decimal, charge: Decimal) -> None:
    """The lost request's budget holds go back; what it is charged counts as spent."""
    detail = reservation.detail or {}
    budgets, held_in = detail.get("budgets"), detail.get("held_in")
    if not isinstance(budgets, list) or not isinstance(held_in, list) or len(held_in) != 3:
        return
    ids = tuple(b for b in budgets if isinstance(b, int))
    zone = Account.objects.filter(pk=reservation.account_id).values_list("time_zone", flat=True).first() or "UTC"
    vendor = connection.vendor
    keys = (str(held_in[0]), str(held_in[1]), str(held_in[2]))
    statements = settle_statements(
        vendor, ids, held=held, cost=charge, held_in=keys, now=period_keys(timezone.now(), zone)
    )
    with connection.cursor() as cursor:
        for sql, params in statements:
            cursor.execute(sql, params)


def reconcile_now() -> int:
    config = settings.GHOSTGPT
    return reservations_reconcile(older_than=config["RESERVATION_TIMEOUT_SECONDS"], policy=config["ORPHAN_POLICY"])


def start_reconciler() -> None:
    """A daemon thread: reconcile now, then every GHOSTGPT_RECONCILE_SECONDS (0 = only now)."""
    interval = settings.GHOSTGPT["RECONCILE_SECONDS"]

    def run() -> None:
        stop = threading.Event()
        while True:
            try:
                reconcile_now()
            except Exception:  # a database that blinked: the next round tries again
                logger.exception("reconciling reservations failed")
            finally:
                close_old_connections()
            if not interval or stop.wait(interval):
                return

    threading.Thread(target=run, name="reconcile-reservations", daemon=True).start()
