"""Reads."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection
from django.db.models import Count, F, FilteredRelation, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce, TruncDate
from django.http import Http404
from django.utils import timezone
from rest_framework.exceptions import NotFound

from . import db
from .models import Account, ApiKey, Budget, StoredResponse, UsageRecord, hash_api_key


def _keys_for_auth(secret: str) -> QuerySet[ApiKey]:
    """The key with its account and tiers, in one query (the hot path)."""
    return ApiKey.objects.select_related("account__tier", "tier").filter(key_hash=hash_api_key(secret))


@dataclass(frozen=True, slots=True)
class KeyAuth:
    """What authenticating one /v1 request needs to know about its key, from one row."""

    id: int
    account_id: int
    kind: str
    allowed_models: list[str] | None
    is_active: bool
    disabled_by_operator: bool
    expires_at: datetime | None
    account_is_active: bool
    membership_expires_at: datetime | None
    rpm_override: int | None
    tpm_override: int | None
    tier_id: int | None
    tier_rpm: int | None
    tier_tpm: int | None
    account_tier_rpm: int | None
    account_tier_tpm: int | None
    user_id: int | None = None  # the person who made it, or whose browser session it is
    # An organization member's own limits (people.Membership), shared by all their keys.
    member_rpm: int | None = None
    member_tpm: int | None = None
    # Below zero (a paid top-up refunded or disputed): no request, not even a free one.
    account_balance: Decimal | None = None
    # The budgets on its path (chat.models.Budget) and where their periods begin.
    account_time_zone: str = "UTC"
    key_budget: int | None = None
    member_budget: int | None = None
    account_budget: int | None = None
    response_cache: bool = False  # answers repeated deterministic requests from the cache

    @property
    def budgets(self) -> tuple[int, ...]:
        return tuple(b for b in (self.key_budget, self.member_budget, self.account_budget) if b is not None)

    @property
    def rpm(self) -> int | None:
        """The key's own override, else its tier's, else its account's tier's (None: unlimited)."""
        if self.rpm_override is not None:
            return self.rpm_override
        return self.tier_rpm if self.tier_id is not None else self.account_tier_rpm

    @property
    def tpm(self) -> int | None:
        if self.tpm_override is not None:
            return self.tpm_override
        return self.tier_tpm if self.tier_id is not None else self.account_tier_tpm


_KEY_AUTH_COLUMNS = (
    "id",
    "account_id",
    "kind",
    "allowed_models",
    "is_active",
    "disabled_by_operator",
    "expires_at",
    "account__is_active",
    "account__membership_expires_at",
    "rpm_override",
    "tpm_override",
    "tier_id",
    "tier__rpm",
    "tier__tpm",
    "account__tier__rpm",
    "account__tier__tpm",
    "user_id",
    "member__rpm",
    "member__tpm",
    "account__balance",
    "account__time_zone",
    "key_budget__id",
    "member_budget__id",
    "account_budget__id",
    "response_cache",
)


def _with_membership(keys: QuerySet[ApiKey]) -> QuerySet[ApiKey]:
    """The key's maker's membership of the key's account, when that account is an
    organization they belong to (people.Membership: their own RPM/TPM), and the budgets on
    the key's path: its own, its maker's as a member, its account's."""
    return keys.annotate(
        member=FilteredRelation("user__memberships", condition=Q(user__memberships__organization_id=F("account_id"))),
        key_budget=FilteredRelation("budgets", condition=Q(budgets__scope="key")),
        member_budget=FilteredRelation(
            "account__budgets", condition=Q(account__budgets__scope="member", account__budgets__user_id=F("user_id"))
        ),
        account_budget=FilteredRelation("account__budgets", condition=Q(account__budgets__scope="account")),
    )


_compiled = threading.local()


def api_key_auth_sync(*, secret: str) -> KeyAuth | None:
    """The key behind `secret` for the /v1 hot path: the ORM's query, compiled once per
    thread and run with the ORM's own type converters (Django compiling it anew took ~0.45
    ms of a request's ~0.47 ms of authentication; the query itself ~0.02 ms)."""
    if getattr(_compiled, "key_auth", None) is None:
        query = _with_membership(ApiKey.objects.filter(key_hash="")).order_by().values_list(*_KEY_AUTH_COLUMNS).query
        compiler = query.get_compiler(DEFAULT_DB_ALIAS)
        sql, params = compiler.as_sql()
        # The joins' own parameters (the budgets' scopes) stay; the "" is where the hash goes.
        _compiled.key_auth = (compiler, sql, list(params), list(params).index(""))
    compiler, sql, params, at = _compiled.key_auth
    values = list(params)
    values[at] = hash_api_key(secret)
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        rows = cursor.fetchall()
    for row in compiler.results_iter(results=[rows]):
        return KeyAuth(*row)
    return None


def api_key_auth_by_id(*, key_id: int) -> KeyAuth | None:
    """The key `key_id` as a request would see it (limits, budgets, balance): for work done
    later on its behalf, away from any request (a document's passages embedded by a job)."""
    for row in _with_membership(ApiKey.objects.filter(pk=key_id)).order_by().values_list(*_KEY_AUTH_COLUMNS)[:1]:
        return KeyAuth(*row)
    return None


def api_key_get_for_auth_sync(*, secret: str) -> ApiKey | None:
    return _keys_for_auth(secret).first()


def api_key_is_active(*, secret: str) -> bool:
    return ApiKey.objects.filter(key_hash=hash_api_key(secret), is_active=True).exists()


def api_key_get_for_account(*, account: Account, key_id: int) -> ApiKey:
    """The account's key, or 404 — whether it does not exist or belongs to someone else."""
    key = ApiKey.objects.filter(pk=key_id, account=account, kind=ApiKey.Kind.API).first()
    if key is None:
        raise NotFound("No such API key on your account.")
    return key


def usage_summary(
    *, account: Account, since: datetime, until: datetime, group_by: str, key_id: int | None = None
) -> list[dict[str, Any]]:
    """Requests, tokens and cost per day, model, key or member (the person who made the key,
    or whose browser it is: an organization's members), oldest or largest first; `key_id`:
    that key's only."""
    rows = UsageRecord.objects.filter(account=account, created_at__gte=since, created_at__lt=until)
    if key_id is not None:
        rows = rows.filter(key_id=key_id)
    if group_by == "day":
        rows = rows.annotate(group=TruncDate("created_at"))
    elif group_by == "model":
        rows = rows.annotate(group=F("model"))
    elif group_by == "member":
        rows = rows.annotate(group=Coalesce(F("key__user__email"), Value("(no member)")))
    else:
        rows = rows.annotate(group=Coalesce(F("key__prefix"), Value("(deleted key)")))
    summary = (
        rows.values("group")
        .annotate(
            requests=Count("id"),
            prompt_tokens=Sum("prompt_tokens"),
            completion_tokens=Sum("completion_tokens"),
            prompt_cost=Sum("prompt_cost"),
            completion_cost=Sum("completion_cost"),
        )
        .order_by("group")
    )
    return [
        {
            group_by: str(row["group"]),
            "requests": row["requests"],
            "prompt_tokens": row["prompt_tokens"],
            "completion_tokens": row["completion_tokens"],
            "total_tokens": row["prompt_tokens"] + row["completion_tokens"],
            "cost": float(row["prompt_cost"] + row["completion_cost"]),
        }
        for row in summary
    ]


def session_key_get(*, secret: str | None) -> ApiKey | None:
    """The browser session (a key of kind "session") behind a `gg_sess` secret, if it is
    still usable; None for no, stale or disabled sessions."""
    key = api_key_get_for_auth_sync(secret=secret) if secret else None
    if key is None or key.kind != ApiKey.Kind.SESSION:
        return None
    from chat.api.auth import check_key_state  # chat.api.auth reads keys through this module
    from chat.api.errors import ApiError

    try:
        check_key_state(key)  # disabled, expired, membership over: the same rules as /v1
    except ApiError:
        return None
    return key


RESPONSE_ID = re.compile(r"resp_[0-9a-f]{48}")


async def stored_response_get(*, account_id: int, response_id: str) -> StoredResponse:
    """A stored response of this account that has not expired; 404 otherwise (another
    account's id looks exactly like an unknown one; a malformed one never reaches SQL)."""
    if not RESPONSE_ID.fullmatch(response_id):
        raise Http404(f"Response with id '{response_id[:64]}' not found.")
    row = await db.run(
        StoredResponse.objects.filter(pk=response_id, account_id=account_id, expires_at__gt=timezone.now()).first
    )
    if row is None:
        raise Http404(f"Response with id '{response_id}' not found.")
    return row


def budget_body(budget: Budget | None, *, now: datetime | None = None) -> dict[str, Any] | None:
    """A budget as the APIs show it: the current period's spend and holds (an older period's
    counters read as zero), and when it resets."""
    from chat.billing.budgets import period_key_of, period_keys, resets_at

    if budget is None:
        return None
    now = now or timezone.now()
    zone = budget.account.time_zone
    current = budget.period_key == period_key_of(budget.period, period_keys(now, zone))
    reset = resets_at(budget.period, now, zone)
    return {
        "amount": str(budget.amount.normalize()),
        "period": budget.period or None,
        "spent": str((budget.spent if current else Decimal(0)).normalize()),
        "held": str((budget.held if current else Decimal(0)).normalize()),
        "resets_at": reset.isoformat() if reset is not None else None,
        "time_zone": zone,
    }
