"""Reads for the console: an account's money and usage, and what operators watch.

Usage over time comes from the hourly rollups (UsageHour), never from the usage rows:
however many requests an account made, a year of it is at most 24×365 rows per key and
model (bench/console.py: 1M usage rows, a year, day buckets). The latest requests come
from the usage rows through the (account, -id) index, a page at a time.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.db.models import Count, F, Q, Sum
from django.db.models.functions import TruncDay
from django.utils import timezone

from chat.models import Account, ApiKey, LedgerEntry, TrafficSample, UsageHour, UsageRecord

COST_PLACES = Decimal("0.0000000001")
SUMS = ("requests", "prompt_tokens", "completion_tokens", "cost", "cache_hits", "cache_saved")


def money(value: Decimal | None) -> str:
    """Money as a decimal string with the ledger's 10 places (no float rounding)."""
    return str((value or Decimal(0)).quantize(COST_PLACES))


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """Which of an account's usage: [start, end] whole days in `tz`, in `bucket`s."""

    account_id: int
    start: date
    end: date
    tz: ZoneInfo
    bucket: str = "day"  # "day" | "hour"
    key_id: int | None = None
    model: str | None = None
    # An inference-scoped key sees its own usage only: every row, filter and choice is its.
    only_key: int | None = None

    @property
    def since(self) -> datetime:
        return datetime.combine(self.start, time.min, tzinfo=self.tz)

    @property
    def until(self) -> datetime:
        return datetime.combine(self.end + timedelta(days=1), time.min, tzinfo=self.tz)


def usage_report(query: UsageQuery) -> dict[str, Any]:
    """One row per bucket and model that has usage (requests, tokens, cost; oldest first),
    their totals, and the models and keys the range has usage for (the filters' choices,
    whatever the filters are)."""
    in_range = UsageHour.objects.filter(account_id=query.account_id, hour__gte=query.since, hour__lt=query.until)
    if query.only_key is not None:
        in_range = in_range.filter(key_id=query.only_key)
    pairs = set(in_range.values_list("model", "key_id").distinct())
    rows = in_range
    if query.key_id is not None:
        rows = rows.filter(key_id=query.key_id)
    if query.model:
        rows = rows.filter(model=query.model)
    if query.bucket == "day":
        rows = rows.annotate(bucket=TruncDay("hour", tzinfo=query.tz))
    else:  # the rollups' own hours, labelled in `tz` below
        rows = rows.annotate(bucket=F("hour"))
    grouped = rows.values_list("bucket", "model").annotate(*(Sum(name) for name in SUMS)).order_by("bucket", "model")
    data = []
    requests, prompt, completion, cost, hits, saved = 0, 0, 0, Decimal(0), 0, Decimal(0)
    for bucket, model, n, p, c, spent, h, s in grouped:
        requests, prompt, completion, cost = requests + n, prompt + p, completion + c, cost + spent
        hits, saved = hits + h, saved + s
        data.append(
            {
                "bucket": _bucket_label(bucket, query),
                "model": model,
                "requests": n,
                "prompt_tokens": p,
                "completion_tokens": c,
                "cost": money(spent),
                "cache_hits": h,
                "cache_saved": money(s),
            }
        )
    return {
        "data": data,
        "totals": {
            "requests": requests,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "cost": money(cost),
            # Answered from the response cache (chat.api.cache), and what they saved.
            "cache_hits": hits,
            "cache_saved": money(saved),
        },
        "models": sorted({model for model, _ in pairs}),
        "keys": _keys(query.account_id, {key_id for _, key_id in pairs if key_id}, only=query.only_key),
    }


def _bucket_label(value: datetime | date, query: UsageQuery) -> str:
    if isinstance(value, datetime):
        value = value.astimezone(query.tz)
        return value.date().isoformat() if query.bucket == "day" else value.strftime("%Y-%m-%dT%H:00")
    return value.isoformat()


def _keys(account_id: int, used: set[int], only: int | None = None) -> list[dict[str, Any]]:
    """The account's API keys and any other key with usage (deleted: no name); `only`: that key."""
    mine = ApiKey.objects.filter(account_id=account_id, kind="api").only("id", "name", "prefix")
    if only is not None:
        mine = mine.filter(pk=only)
    keys = {key.pk: key for key in mine}
    return [
        {
            "id": key_id,
            "name": keys[key_id].name if key_id in keys else None,
            "prefix": keys[key_id].prefix if key_id in keys else None,
        }
        for key_id in sorted(used | set(keys))
    ]


def spend_between(*, account_id: int, since: datetime, until: datetime, key_id: int | None = None) -> Decimal:
    rows = UsageHour.objects.filter(account_id=account_id, hour__gte=since, hour__lt=until)
    if key_id is not None:
        rows = rows.filter(key_id=key_id)
    return rows.aggregate(cost=Sum("cost"))["cost"] or Decimal(0)


def requests_page(
    *,
    account_id: int,
    limit: int,
    before: int | None = None,
    key_id: int | None = None,
    model: str | None = None,
    text_limit: int | None = 0,
    only_key: int | None = None,
) -> list[dict[str, Any]]:
    """The latest requests, newest first; `before` is the last id of the previous page;
    `only_key` (an inference-scoped key's own): whatever `key_id` asks, that key's only."""
    rows = UsageRecord.objects.filter(account_id=account_id)
    if before is not None:
        rows = rows.filter(pk__lt=before)
    for key in (key_id, only_key):
        if key is not None:
            rows = rows.filter(key_id=key)
    if model:
        rows = rows.filter(model=model)
    if text_limit is not None:  # the request bodies are the operators' only
        rows = rows.defer("request_body", *(() if text_limit else ("prompt_text", "answer_text")))
    rows = rows.select_related("key").order_by("-id")[:limit]
    return [
        {
            "id": row.pk,
            "created_at": row.created_at,
            "request_id": row.request_id,
            "model": row.model,
            "requested_model": row.requested_model,
            "dialect": row.dialect,
            "key": (
                {"id": row.key_id, "name": row.key.name, "prefix": row.key.prefix}
                if row.key
                else {"id": row.key_id, "name": "(deleted key)", "prefix": ""}
                if row.key_id
                else None
            ),
            "prompt_tokens": row.prompt_tokens,
            "completion_tokens": row.completion_tokens,
            # Parts of the two counts that the provider bills apart.
            "cached_tokens": row.cached_tokens,
            "cache_write_tokens": row.cache_write_tokens,
            "reasoning_tokens": row.reasoning_tokens,
            "prompt_cost": money(row.prompt_cost),
            "completion_cost": money(row.completion_cost),
            "cost": money(row.prompt_cost + row.completion_cost),
            "estimated": row.estimated,
            "cache_hit": row.cache_hit,
            "cache_saved": money(row.cache_saved),
            "status": "error" if row.failed else "ok",
            "ttft_ms": row.ttft_ms,
            "duration_ms": row.duration_ms,
            # The request's text (chat.redaction: redacted when written): none (0), its start
            # (the key holder's excerpts), or all of it with the request body (None: operators).
            **_text(row, text_limit),
        }
        for row in rows
    ]


def _text(row: UsageRecord, limit: int | None) -> dict[str, str]:
    if limit is None:
        return {"prompt": row.prompt_text, "answer": row.answer_text, "body": row.request_body}
    return {"prompt": row.prompt_text[:limit], "answer": row.answer_text[:limit]} if limit else {}


def usage_csv_rows(query: UsageQuery) -> Iterator[list[str]]:
    yield ["bucket", "model", *SUMS]
    for row in usage_report(query)["data"]:
        yield [row["bucket"], row["model"], *(str(row[name]) for name in SUMS)]


# --- Operators -------------------------------------------------------------------------------


def accounts_search(*, text: str = "", limit: int = 50, offset: int = 0) -> tuple[int, list[dict[str, Any]]]:
    """Accounts whose name contains `text` (or whose id is it), newest first."""
    rows = Account.objects.select_related("tier").annotate(
        key_count=Count("keys", filter=Q(keys__kind="api")),
    )
    text = text.strip()
    if text:
        match = Q(name__icontains=text)
        if text.lstrip("#").isdigit():
            match |= Q(pk=int(text.lstrip("#")))
        rows = rows.filter(match)
    total = rows.count()
    page = rows.order_by("-id")[offset : offset + limit]
    return total, [
        {
            "id": account.pk,
            "name": account.name,
            "balance": money(account.balance),
            "tier": account.tier.name,
            "membership_expires_at": account.membership_expires_at,
            "active": account.is_active,
            "keys": account.key_count,
            "created_at": account.created_at,
        }
        for account in page
    ]


def top_ups(*, account_id: int | None = None, limit: int = 50) -> list[dict[str, Any]]:
    rows = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.TOPUP).select_related("account")
    if account_id is not None:
        rows = rows.filter(account_id=account_id)
    return [
        {
            "id": entry.pk,
            "account": {"id": entry.account_id, "name": entry.account.name},
            "amount": money(entry.amount),
            "balance_after": money(entry.balance_after),
            "idempotency_key": entry.idempotency_key,
            "created_at": entry.created_at,
        }
        for entry in rows.order_by("-id")[:limit]
    ]


def traffic_series(*, minutes: int = 60) -> list[dict[str, Any]]:
    """The web processes' samples (chat.traffic) of the last `minutes`, summed per minute:
    requests per second, and the open streams, queue and agents at that minute's samples
    (the largest sum of the processes' values)."""
    since = timezone.now() - timedelta(minutes=minutes)
    minutes_seen: dict[datetime, dict[str, Any]] = defaultdict(
        lambda: {"requests": 0.0, "seconds": defaultdict(float), "gauges": defaultdict(lambda: defaultdict(float))}
    )
    for row in TrafficSample.objects.filter(at__gte=since).order_by("at"):
        slot = minutes_seen[row.at.replace(second=0, microsecond=0)]
        slot["requests"] += row.requests
        slot["seconds"][row.process] += row.seconds
        for name in ("streams", "queue", "agents"):
            slot["gauges"][name][row.at] += getattr(row, name)
    series = []
    for minute in sorted(minutes_seen):
        slot = minutes_seen[minute]
        covered = max(slot["seconds"].values(), default=0.0)
        series.append(
            {
                "at": minute,
                "requests_per_second": round(slot["requests"] / covered, 3) if covered else 0.0,
                **{name: max(slot["gauges"][name].values(), default=0) for name in ("streams", "queue", "agents")},
            }
        )
    return series
