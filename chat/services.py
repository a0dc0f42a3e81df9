"""Writes. Plain functions named <entity>_<action>, keyword-only arguments."""

from __future__ import annotations

import secrets

from django.db import transaction
from django.utils import timezone

from .models import ApiKey, hash_api_key

KEY_PREFIX = "gg-"
DISPLAY_PREFIX_LENGTH = 10


@transaction.atomic
def api_key_create(*, name: str) -> tuple[ApiKey, str]:
    """Create a key. Returns the row and the secret, which is never retrievable again."""
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey.objects.create(name=name, prefix=secret[:DISPLAY_PREFIX_LENGTH], key_hash=hash_api_key(secret))
    return key, secret


async def api_key_mark_used(*, key_id: int) -> None:
    await ApiKey.objects.filter(pk=key_id).aupdate(last_used_at=timezone.now())
