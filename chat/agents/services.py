"""Writes for dial-in agents: tokens, connection rows, in-flight counts."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from django.db import transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone

from chat.models import AgentConnection, ApiKey, hash_api_key
from chat.services import account_create

AGENT_PREFIX = "gg-agent-"
AGENTS_ACCOUNT = "agents"


@transaction.atomic
def agent_token_create(*, name: str) -> tuple[ApiKey, str]:
    """A token a model worker connects with (it cannot call the API). Returns the row and
    the secret, which is never retrievable again."""
    key_holder = ApiKey.objects.filter(kind=ApiKey.Kind.AGENT).select_related("account").first()
    account = key_holder.account if key_holder else account_create(name=AGENTS_ACCOUNT)
    secret = AGENT_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey.objects.create(
        account=account,
        kind=ApiKey.Kind.AGENT,
        name=name,
        prefix=secret[:12],
        key_hash=hash_api_key(secret),
    )
    return key, secret


async def agent_connection_open(*, key: ApiKey, channel_name: str) -> AgentConnection:
    now = timezone.now()
    return await AgentConnection.objects.acreate(
        key=key, name=key.name, channel_name=channel_name, heartbeat_at=now, last_message_at=now
    )


async def agent_connection_update(*, connection_id: uuid.UUID, **fields: Any) -> None:
    await AgentConnection.objects.filter(pk=connection_id).aupdate(**fields)


async def agent_connection_close(*, connection_id: uuid.UUID) -> None:
    await AgentConnection.objects.filter(pk=connection_id).aupdate(disconnected_at=timezone.now(), in_flight=0)


async def agent_job_started(*, connection_id: uuid.UUID) -> None:
    await AgentConnection.objects.filter(pk=connection_id).aupdate(in_flight=F("in_flight") + 1)


async def agent_job_ended(*, connection_id: uuid.UUID, served: bool) -> None:
    await AgentConnection.objects.filter(pk=connection_id).aupdate(
        in_flight=Greatest(F("in_flight") - 1, 0), served=F("served") + (1 if served else 0)
    )
