"""Reads."""

from __future__ import annotations

from .models import ApiKey, hash_api_key


async def api_key_get_for_auth(*, secret: str) -> ApiKey | None:
    """The key with its account and tiers, in one query (the hot path)."""
    return await ApiKey.objects.select_related("account__tier", "tier").filter(key_hash=hash_api_key(secret)).afirst()


def api_key_is_active(*, secret: str) -> bool:
    return ApiKey.objects.filter(key_hash=hash_api_key(secret), is_active=True).exists()
