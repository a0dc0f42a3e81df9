"""Writes for accounts and keys. Plain functions named <entity>_<action>, keyword-only arguments."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from . import db
from .billing.pricing import forget_prices
from .models import Account, ApiKey, Budget, CachedResponse, ModelPrice, StoredResponse, Tier, UsageRecord, hash_api_key

KEY_PREFIX = "gg-"
SESSION_PREFIX = "ggs-"
DISPLAY_PREFIX_LENGTH = 10


class UnknownTier(ValueError):
    pass


def tier_get(name: str | None) -> Tier:
    name = name or settings.GHOSTGPT["DEFAULT_TIER"]
    try:
        return Tier.objects.get(name=name)
    except Tier.DoesNotExist:
        known = ", ".join(Tier.objects.values_list("name", flat=True))
        raise UnknownTier(f"Unknown tier {name!r}; known tiers: {known}.") from None


def account_create(*, name: str, tier: str | None = None) -> Account:
    return Account.objects.create(name=name, tier=tier_get(tier))


class GrantRefused(PermissionError):
    """A key asked for more than it has: another key wider than itself, or its own widening."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def _wider_limit(granter: int | None, target: int | None) -> bool:
    """Whether `target` allows more than `granter` (None: no limit)."""
    return granter is not None and (target is None or target > granter)


def _effective_limit(key: ApiKey, field: str) -> int | None:
    override = getattr(key, f"{field}_override")
    if override is not None:
        return override  # type: ignore[no-any-return]
    tier = key.tier or key.account.tier
    return getattr(tier, field)  # type: ignore[no-any-return]


def api_key_grant(*, granter: ApiKey, changes: dict[str, object], target: ApiKey | None = None) -> dict[str, object]:
    """The fields a key made or changed by `granter` gets: never wider than `granter`.

    An unrestricted list of models, no expiry or no limit on the new key inherit the
    granter's restriction; asking for more than the granter has is refused, as is turning
    on a key the operator turned off. Only keys with the `full` scope may manage keys."""
    if granter.scope != ApiKey.Scope.FULL:
        raise GrantRefused("This key has the 'inference' scope: it cannot create or change keys.")
    granted = dict(changes)
    creating = target is None
    if granter.allowed_models and (creating or "allowed_models" in granted):
        wanted = list(granted.get("allowed_models") or ()) or list(granter.allowed_models)  # type: ignore[call-overload]
        extra = [model for model in wanted if model not in granter.allowed_models]
        if extra:
            raise GrantRefused(f"This key may not grant models it cannot use itself: {', '.join(extra)}.", "models")
        granted["allowed_models"] = wanted
    if granter.expires_at and (creating or "expires_at" in granted):
        wanted_expiry = granted.get("expires_at") or granter.expires_at
        if wanted_expiry > granter.expires_at:  # type: ignore[operator]
            raise GrantRefused("A key may not outlive the key that grants it.", "expires_at")
        granted["expires_at"] = wanted_expiry
    for field in ("rpm", "tpm"):
        name, limit = f"{field}_override", _effective_limit(granter, field)
        wanted_limit = granted.get(name)
        if wanted_limit is not None and limit is not None and wanted_limit > limit:  # type: ignore[operator]
            raise GrantRefused(f"This key may not grant more than its own {field} ({limit}).", field)
        own = getattr(granter, name)
        if wanted_limit is None and own is not None and (creating or name in granted):
            granted[name] = own  # the granter's own narrowing carries over
    if granted.get("is_active") and target is not None and target.disabled_by_operator:
        raise GrantRefused("The operator disabled this key; only the operator can enable it.", "active")
    return granted


def api_key_check_manageable(*, granter: ApiKey, target: ApiKey) -> None:
    """A key manages only keys no wider than itself (itself included)."""
    if granter.scope != ApiKey.Scope.FULL:
        raise GrantRefused("This key has the 'inference' scope: it cannot create or change keys.")
    if target.pk == granter.pk:
        return
    wider = (
        (
            granter.allowed_models
            and (not target.allowed_models or set(target.allowed_models) - set(granter.allowed_models))
        )
        or (granter.expires_at and (target.expires_at is None or target.expires_at > granter.expires_at))
        or any(
            _wider_limit(_effective_limit(granter, field), _effective_limit(target, field)) for field in ("rpm", "tpm")
        )
    )
    if wider:
        raise GrantRefused("This key may not manage a key with more access than itself.")


class TooManyKeys(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit


def api_key_cap(account: Account) -> int:
    """API keys this account may hold: its tier's cap, else GHOSTGPT_MAX_API_KEYS."""
    cap = account.tier.max_api_keys
    return cap if cap is not None else int(settings.GHOSTGPT["MAX_API_KEYS"])


@transaction.atomic
def api_key_create(
    *,
    account: Account,
    name: str,
    allowed_models: Sequence[str] = (),
    expires_at: datetime | None = None,
    scope: str = ApiKey.Scope.FULL,  # type: ignore[assignment]
    rpm_override: int | None = None,
    tpm_override: int | None = None,
    response_cache: bool = False,
    created_by: ApiKey | None = None,
    user: Any = None,
) -> tuple[ApiKey, str]:
    """Create a key. Returns the row and the secret, which is never retrievable again.
    `user`: the person who made it (default: the person behind `created_by`, when a
    signed-in browser made it) — an organization disables it when they leave.
    Raises TooManyKeys when the account holds its cap of API keys already (checked under the
    account's row lock, so concurrent creations cannot pass it; browser sessions and agent
    tokens are other kinds and never count)."""
    Account.objects.select_for_update().filter(pk=account.pk).values_list("pk", flat=True).first()
    cap = api_key_cap(account)
    if ApiKey.objects.filter(account=account, kind=ApiKey.Kind.API).count() >= cap:
        raise TooManyKeys(cap)
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey.objects.create(
        account=account,
        name=name,
        prefix=secret[:DISPLAY_PREFIX_LENGTH],
        key_hash=hash_api_key(secret),
        allowed_models=list(allowed_models),
        expires_at=expires_at,
        scope=scope,
        rpm_override=rpm_override,
        tpm_override=tpm_override,
        response_cache=response_cache,
        created_by=created_by,
        user_id=user.pk if user is not None else (created_by.user_id if created_by is not None else None),
    )
    return key, secret


@transaction.atomic
def session_create() -> tuple[ApiKey, str]:
    """An anonymous account with one browser-session key (the `gg_sess` cookie's secret)."""
    account = account_create(name="anonymous", tier=settings.WEB["SESSION_TIER"])
    secret = SESSION_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey.objects.create(
        account=account,
        kind=ApiKey.Kind.SESSION,
        scope=ApiKey.Scope.INFERENCE,
        expires_at=timezone.now() + timedelta(seconds=settings.WEB["SESSION_MAX_AGE_SECONDS"]),
        name="browser session",
        prefix=secret[:DISPLAY_PREFIX_LENGTH],
        key_hash=hash_api_key(secret),
    )
    return key, secret


@transaction.atomic
def account_create_with_key(*, name: str, tier: str | None = None) -> tuple[ApiKey, str]:
    return api_key_create(account=account_create(name=name, tier=tier), name=name)


def api_key_update(*, key: ApiKey, **changes: object) -> ApiKey:
    """Change name, is_active, expires_at or allowed_models."""
    for field, value in changes.items():
        setattr(key, field, value)
    key.save(update_fields=list(changes))
    return key


def api_key_delete(*, key: ApiKey) -> None:
    key.delete()


def account_set_active(*, account: Account, active: bool) -> Account:
    """Disable (or enable) an account: its keys stop working at once, live streams and
    agents included (chat.revocation)."""
    account.is_active = active
    account.save(update_fields=["is_active"])
    return account


def account_delete(*, account: Account) -> None:
    """Delete the account; its keys go with it and stop working at once, its request logs
    first (whatever rows of it a later rule keeps, their text goes)."""
    with transaction.atomic():
        request_text_purge(account_id=account.pk)
        account.delete()


def cached_responses_purge() -> int:
    """The response cache's expired database entries (chat.api.cache) go: the beat task;
    Redis expires its own."""
    deleted, _ = CachedResponse.objects.filter(expires_at__lte=timezone.now()).delete()
    return deleted


def request_text_purge(*, account_id: int | None = None) -> int:
    """Blank the request logs' text (chat.models.UsageRecord: prompt, answer, request body):
    of one account, or — the beat task — of every request older than
    GHOSTGPT_REQUEST_LOG_DAYS. The rows, their tokens and money stay. Returns how many."""
    rows = UsageRecord.objects.all()
    if account_id is not None:
        rows = rows.filter(account_id=account_id)
    else:
        rows = rows.filter(created_at__lt=timezone.now() - timedelta(days=int(settings.REQUEST_LOGS["DAYS"])))
    texts = ("prompt_text", "answer_text", "request_body")
    return rows.exclude(**{name: "" for name in texts}).update(**{name: "" for name in texts})


def model_price_set(
    *, model: str, prompt_per_million: object, completion_per_million: object, **parts: object
) -> ModelPrice:
    """Set a price (the parts: ModelPrice's other rates; a part not given is reset — to the
    whole's rate, or 0 for images and audio); this process charges it at once, others within
    GHOSTGPT_PRICE_CACHE_SECONDS."""
    defaults = {
        "cached_prompt_per_million": None,
        "cache_write_per_million": None,
        "reasoning_per_million": None,
        "per_image": Decimal(0),
        "per_audio_second": Decimal(0),
    }
    unknown = set(parts) - set(defaults)
    if unknown:
        raise TypeError(f"unknown price parts: {sorted(unknown)}")
    price, _ = ModelPrice.objects.update_or_create(
        model=model,
        defaults={
            **defaults,
            **parts,
            "prompt_per_million": prompt_per_million,
            "completion_per_million": completion_per_million,
        },
    )
    forget_prices()
    return price


async def api_key_mark_used(*, key_id: int) -> None:
    await db.run(ApiKey.objects.filter(pk=key_id).update, last_used_at=timezone.now())


def _storable(value: Any) -> Any:
    """JSON that PostgreSQL's jsonb takes: it refuses U+0000 in strings (a client may send
    it); it is kept as U+FFFD."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [_storable(item) for item in value]
    if isinstance(value, dict):
        return {_storable(key): _storable(item) for key, item in value.items()}
    return value


async def stored_response_save(
    *,
    account_id: int,
    key_id: int | None,
    body: dict[str, object],
    context: list[dict[str, object]],
    input_items: list[dict[str, object]],
) -> StoredResponse:
    """Keep a Responses API response (and what led to it) for GHOSTGPT_RESPONSES_TTL_DAYS."""
    days = settings.GHOSTGPT["RESPONSES_TTL_DAYS"]
    return await db.run(
        StoredResponse.objects.create,
        id=body["id"],
        account_id=account_id,
        key_id=key_id,
        model=str(body.get("model") or ""),
        context=_storable(context),
        input_items=_storable(input_items),
        body=_storable(body),
        expires_at=timezone.now() + timedelta(days=days),
    )


async def stored_response_delete(*, response: StoredResponse) -> None:
    await db.run(StoredResponse.objects.filter(pk=response.pk).delete)


def stored_responses_purge() -> int:
    """Remove the expired stored responses; how many went."""
    deleted, _ = StoredResponse.objects.filter(expires_at__lte=timezone.now()).delete()
    return deleted


# --- Budgets ----------------------------------------------------------------------------------

MAX_BUDGET = Decimal(10**9)


class BudgetRefused(Exception):
    def __init__(self, message: str, param: str = "budget") -> None:
        super().__init__(message)
        self.message, self.param = message, param


def budget_set(
    *,
    account: Account,
    scope: str,
    amount: Decimal | None,
    period: str = "",
    key: ApiKey | None = None,
    user: Any = None,
    granter: ApiKey | None = None,
) -> Budget | None:
    """Set (amount None: remove) the budget of a key, a member or the account. A key's
    budget is no larger than its granter's own (a key without one, granted by a key with one,
    gets the granter's). What the current period has spent carries over a change."""
    if amount is not None and (not amount.is_finite() or not 0 <= amount <= MAX_BUDGET):
        raise BudgetRefused(f"A budget is an amount from 0 to {MAX_BUDGET}.", "budget")
    if period not in Budget.Period.values:
        raise BudgetRefused("A budget's period is day, week, month or none (for ever).", "budget_duration")
    target = {"key": key} if scope == Budget.Scope.KEY else {"user": user} if scope == Budget.Scope.MEMBER else {}
    if granter is not None and scope == Budget.Scope.KEY:
        own = Budget.objects.filter(key=granter, scope=Budget.Scope.KEY).first()
        if own is not None:
            if amount is None:
                amount, period = own.amount, own.period
            elif amount > own.amount:
                raise BudgetRefused(f"This key may not grant a budget larger than its own ({own.amount}).")
    with transaction.atomic():
        found = Budget.objects.select_for_update().filter(account=account, scope=scope, **target).first()
        if amount is None:
            if found is not None:
                found.delete()
            return None
        if found is None:
            return Budget.objects.create(account=account, scope=scope, amount=amount, period=period, **target)
        if found.period != period:  # a new kind of period starts from zero
            found.period_key, found.spent = "", Decimal(0)
        found.amount, found.period = amount, period
        found.save(update_fields=["amount", "period", "period_key", "spent", "updated_at"])
        return found
