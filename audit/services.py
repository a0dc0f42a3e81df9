"""Appending to the audit trail, and erasing personal data from it without breaking it.

Appends are serialized so that each row names its predecessor's MAC: on PostgreSQL by a
transaction-scoped advisory lock, on SQLite by its write lock (transactions begin
IMMEDIATE: settings). Rows are never updated, except `label`/`address`/`erased` by the
two erasures below, which the chain tolerates by design (audit.models).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone

from .context import Actor, current_actor, current_where
from .models import AuditEvent

logger = logging.getLogger("ghostgpt.audit")
# pg_advisory_xact_lock's key for appends: any constant unique to this lock.
ADVISORY_LOCK = 0x6767_6175_6469_74  # "ggaudit"
GENESIS = "0" * 64
# Failed sign-ins: the first FAILED_ROWS per address and window are rows of their own;
# past that they are counted and written as one row per FAILED_BATCH.
FAILED_ROWS = 5
FAILED_BATCH = 25
# Keys of a row's values that must never be stored (secrets), whatever a caller passes.
SECRET_FIELDS = {"password", "password1", "password2", "secret", "key", "key_hash", "token", "totp", "seed", "code"}


def _key() -> bytes:
    return str(settings.AUDIT["KEY"]).encode()


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False).encode()


def chained_fields(row: AuditEvent) -> list[Any]:
    return [
        row.seq,
        row.at.isoformat(),
        row.action,
        row.actor_kind,
        row.actor,
        row.account_id,
        row.target,
        row.request_id,
        row.before,
        row.after,
        row.count,
        row.pii_mac,
    ]


def pii_mac(label: str, address: str) -> str:
    return hmac.new(_key(), _canonical(["pii", label, address]), hashlib.sha256).hexdigest()


def row_mac(previous: str, row: AuditEvent) -> str:
    return hmac.new(_key(), previous.encode() + _canonical(chained_fields(row)), hashlib.sha256).hexdigest()


def _scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ("[redacted]" if str(k).lower() in SECRET_FIELDS else _scrub(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def _normalised(value: Any) -> Any:
    """What the value reads back as from a JSON column (dates as strings, etc.)."""
    return None if value is None else json.loads(_canonical(_scrub(value)))


def record(
    action: str,
    *,
    account_id: int | None = None,
    target: str = "",
    before: Any = None,
    after: Any = None,
    count: int = 1,
    actor: Actor | None = None,
    label: str | None = None,
) -> AuditEvent:
    """Append one event, chained to the last. Who and from where come from the request
    (audit.context) unless given."""
    actor = actor or current_actor()
    address, request_id = current_where()
    label = actor.label if label is None else label
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ADVISORY_LOCK])
        last = AuditEvent.objects.order_by("-seq").values_list("seq", "mac").first()
        seq, previous = (last[0] + 1, last[1]) if last else (1, GENESIS)
        row = AuditEvent(
            seq=seq,
            at=timezone.now(),
            action=action,
            actor_kind=actor.kind,
            actor=actor.ref[:120],
            account_id=account_id if account_id is not None else actor.account_id,
            target=target[:200],
            request_id=request_id[:140],
            before=_normalised(before),
            after=_normalised(after),
            count=count,
            label=label[:254],
            address=address[:64],
        )
        row.pii_mac = pii_mac(row.label, row.address)
        row.mac = row_mac(previous, row)
        row.save(force_insert=True)
    return row


def record_failed_sign_in(*, login: str) -> AuditEvent | None:
    """A failed sign-in, counted under a flood: a few rows per address and window, then
    one row per FAILED_BATCH failures (the rest of a batch is written with that address's
    next failure after the window)."""
    address, _ = current_where()
    window = int(timezone.now().timestamp()) // int(settings.AUDIT["FAILED_WINDOW_SECONDS"])
    counter = f"audit-failed:{address}:{window}"
    pending = f"audit-failed-pending:{address}"
    cache.add(counter, 0, timeout=int(settings.AUDIT["FAILED_WINDOW_SECONDS"]) * 2)
    seen = cache.incr(counter)
    carried = cache.get(pending)
    if carried and carried[0] != window and carried[1] > 0:  # a flood's remainder from an earlier window
        cache.delete(pending)
        record("signin.failed", count=carried[1], actor=Actor("anonymous", "anonymous"), label="")
    if seen <= FAILED_ROWS:
        return record("signin.failed", actor=Actor("anonymous", "anonymous"), label=login[:254])
    beyond = seen - FAILED_ROWS
    if beyond % FAILED_BATCH == 0:
        cache.delete(pending)
        return record("signin.failed", count=FAILED_BATCH, actor=Actor("anonymous", "anonymous"), label="")
    cache.set(pending, (window, beyond % FAILED_BATCH), timeout=int(settings.AUDIT["FAILED_RETENTION_DAYS"]) * 86400)
    return None


def head() -> tuple[int, str]:
    last = AuditEvent.objects.order_by("-seq").values_list("seq", "mac").first()
    return (last[0], last[1]) if last else (0, GENESIS)


def head_export() -> tuple[int, str]:
    """Write the chain's head to the log (beat, every GHOSTGPT_AUDIT_HEAD_SECONDS): kept
    outside the database, it is what `audit_verify --heads` checks a cut tail against."""
    seq, mac = head()
    logger.info("audit-head seq=%d mac=%s", seq, mac)
    return seq, mac


def erase_expired(now: datetime | None = None) -> int:
    """Retention: failed sign-ins older than GHOSTGPT_AUDIT_FAILED_RETENTION_DAYS lose the
    address and the login they were tried with; their rows (and counts) stay in the chain."""
    cutoff = (now or timezone.now()) - timedelta(days=int(settings.AUDIT["FAILED_RETENTION_DAYS"]))
    return AuditEvent.objects.filter(action="signin.failed", at__lt=cutoff, erased=False).update(
        label="", address="", erased=True
    )


def pseudonymise(*, user_id: int) -> int:
    """An account deleted: its rows stay (the chain stays whole), the person's name and
    addresses become a pseudonym that no one can map back without the audit key."""
    alias = "deleted-" + hmac.new(_key(), f"user:{user_id}".encode(), hashlib.sha256).hexdigest()[:16]
    return AuditEvent.objects.filter(actor=f"user:{user_id}").update(label=alias, address="", erased=True)
