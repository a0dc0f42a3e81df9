"""Reading the trail: newest first, filtered, paged by `seq` (a cursor that new rows
never shift)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from .models import AuditEvent

FIELDS = (
    "seq", "at", "action", "actor_kind", "actor", "label", "account_id", "target",
    "address", "request_id", "before", "after", "count",
)  # fmt: skip


def audit_events(
    *,
    account_id: int | None = None,
    action: str = "",
    actor: str = "",
    before_seq: int | None = None,
) -> QuerySet[AuditEvent]:
    rows = AuditEvent.objects.order_by("-seq")
    if account_id is not None:
        rows = rows.filter(account_id=account_id)
    if action:
        rows = rows.filter(action__startswith=action)
    if actor:
        rows = rows.filter(actor=actor)
    if before_seq is not None:
        rows = rows.filter(seq__lt=before_seq)
    return rows


def audit_page(rows: QuerySet[AuditEvent], limit: int) -> dict[str, Any]:
    page = list(rows.values(*FIELDS)[: limit + 1])
    more = len(page) > limit
    page = page[:limit]
    return {"object": "list", "data": page, "has_more": more, "next_before": page[-1]["seq"] if more else None}
