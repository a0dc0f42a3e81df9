"""Writes for accounts and keys. Plain functions named <entity>_<action>, keyword-only arguments."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from . import db
from .models import Account, ApiKey, ModelPrice, Tier, hash_api_key

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


@transaction.atomic
def api_key_create(
    *,
    account: Account,
    name: str,
    allowed_models: Sequence[str] = (),
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """Create a key. Returns the row and the secret, which is never retrievable again."""
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey.objects.create(
        account=account,
        name=name,
        prefix=secret[:DISPLAY_PREFIX_LENGTH],
        key_hash=hash_api_key(secret),
        allowed_models=list(allowed_models),
        expires_at=expires_at,
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


def account_delete(*, account: Account) -> None:
    """Delete the account; its keys go with it and stop working at once."""
    account.delete()


def model_price_set(*, model: str, prompt_per_million: object, completion_per_million: object) -> ModelPrice:
    price, _ = ModelPrice.objects.update_or_create(
        model=model,
        defaults={"prompt_per_million": prompt_per_million, "completion_per_million": completion_per_million},
    )
    return price


async def api_key_mark_used(*, key_id: int) -> None:
    await db.run(ApiKey.objects.filter(pk=key_id).update, last_used_at=timezone.now())
