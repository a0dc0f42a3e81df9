"""The agents' WebSocket endpoint (`/ws/agent`): authenticates the agent token, keeps the
connection row, relays jobs from `AgentPool` to the agent and its tokens back to the
waiting request's reply channel."""

from __future__ import annotations

import logging
import time
from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.utils import timezone

from chat.metrics import AGENTS
from chat.revocation import revoked_group

from . import services
from .selectors import agent_key_get

logger = logging.getLogger(__name__)

RELAYED = {"accepted", "delta", "done", "error"}
TOUCH_SECONDS = 1.0  # last_message_at is written at most this often per connection


def _token(scope: dict[str, Any]) -> str:
    headers = dict(scope.get("headers") or [])
    authorization = headers.get(b"authorization", b"").decode("latin-1").strip()
    scheme, _, rest = authorization.partition(" ")
    return rest.strip() if scheme.lower() == "bearer" else ""


class AgentConsumer(AsyncJsonWebsocketConsumer):
    connection_id: Any = None

    async def connect(self) -> None:
        key = await agent_key_get(secret=_token(self.scope)) if _token(self.scope) else None
        if key is None:
            await self.close(code=4401)  # no valid agent token (the reason is in the code)
            return
        self.jobs: dict[str, str] = {}  # job id -> the reply channel of the waiting request
        self.touched = 0.0
        connection = await services.agent_connection_open(key=key, channel_name=self.channel_name)
        self.connection_id = connection.pk
        self.key_id = key.pk
        await self.channel_layer.group_add(revoked_group(key.pk), self.channel_name)
        await self.accept()
        AGENTS.inc()
        heartbeat = settings.GHOSTGPT["AGENT_HEARTBEAT_SECONDS"]
        await self.send_json({"type": "welcome", "id": str(connection.pk), "heartbeat_seconds": heartbeat})
        logger.info("agent %s connected (%s)", connection.pk, key.name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict):
            return
        kind = content.get("type")
        now = time.monotonic()
        if kind in RELAYED:
            reply = self.jobs.get(str(content.get("job")))
            if reply is not None:  # else: cancelled or unknown, dropped
                await self.channel_layer.send(reply, {**content, "type": f"agent.{kind}"})
                if kind in ("done", "error"):
                    self.jobs.pop(str(content.get("job")), None)
            if now - self.touched < TOUCH_SECONDS and kind == "delta":
                return
        fields: dict[str, Any] = {"last_message_at": timezone.now()}
        if kind == "heartbeat":
            fields["heartbeat_at"] = fields["last_message_at"]
        elif kind == "hello":
            fields["heartbeat_at"] = fields["last_message_at"]
            fields["name"] = str(content.get("name") or "")[:100]
            models = content.get("models")
            fields["model_ids"] = [str(m)[:200] for m in models[:50]] if isinstance(models, list) else []
            parallel = content.get("parallel")
            fields["parallel"] = min(max(int(parallel), 1), 1000) if isinstance(parallel, int) else 1
        self.touched = now
        await services.agent_connection_update(connection_id=self.connection_id, **fields)

    async def agent_job(self, event: dict[str, Any]) -> None:
        self.jobs[event["job"]] = event["reply"]
        await self.send_json({"type": "job", "job": event["job"], "request": event["request"]})

    async def agent_cancel(self, event: dict[str, Any]) -> None:
        if self.jobs.pop(event["job"], None) is not None:
            await self.send_json({"type": "cancel", "job": event["job"]})

    async def key_revoked(self, event: dict[str, Any]) -> None:
        """Its token was deleted or disabled: the connection ends now."""
        await self.close(code=4401)

    async def disconnect(self, code: int) -> None:
        if self.connection_id is None:
            return
        AGENTS.dec()
        await self.channel_layer.group_discard(revoked_group(self.key_id), self.channel_name)
        for reply in self.jobs.values():  # the requests waiting on it fail over or end cleanly
            await self.channel_layer.send(
                reply, {"type": "agent.error", "retry": True, "message": "The agent disconnected."}
            )
        self.jobs.clear()
        await services.agent_connection_close(connection_id=self.connection_id)
        logger.info("agent %s disconnected (code %s)", self.connection_id, code)
