"""Reads."""

from __future__ import annotations

from .models import ApiKey, hash_api_key


async def api_key_get_active(*, secret: str) -> ApiKey | None:
    return await ApiKey.objects.filter(key_hash=hash_api_key(secret), is_active=True).afirst()


def api_key_is_active(*, secret: str) -> bool:
    return ApiKey.objects.filter(key_hash=hash_api_key(secret), is_active=True).exists()
