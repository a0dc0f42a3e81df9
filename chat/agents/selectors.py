"""Reads for dial-in agents."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from chat.api.auth import check_key_state
from chat.api.errors import ApiError
from chat.models import AgentConnection, ApiKey, hash_api_key


async def agent_key_get(*, secret: str) -> ApiKey | None:
    """The active agent token behind a secret, if any."""
    key = await ApiKey.objects.select_related("account").filter(key_hash=hash_api_key(secret)).afirst()
    if key is None or key.kind != ApiKey.Kind.AGENT:
        return None
    try:
        check_key_state(key)  # disabled, expired: the same rules as every key
    except ApiError:
        return None
    return key


def stale_before() -> object:
    return timezone.now() - timedelta(seconds=3 * settings.GHOSTGPT["AGENT_HEARTBEAT_SECONDS"])


def agent_connections_live() -> QuerySet[AgentConnection]:
    """Connected agents whose heartbeat is recent."""
    return AgentConnection.objects.filter(disconnected_at__isnull=True, heartbeat_at__gte=stale_before())


async def agent_pick(*, exclude: set[uuid.UUID]) -> AgentConnection | None:
    """The least busy live agent (fewest jobs in flight per slot, then fewest served)."""
    candidates = [c async for c in agent_connections_live().exclude(pk__in=exclude)]
    if not candidates:
        return None
    return min(candidates, key=lambda c: (c.in_flight / max(c.parallel, 1), c.served))


def agent_connections_connected() -> QuerySet[AgentConnection]:
    return AgentConnection.objects.filter(disconnected_at__isnull=True).order_by("connected_at")
