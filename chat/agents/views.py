"""`GET /api/connections`: the dial-in agents connected now."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse

from chat.api.auth import authenticate, presented_key
from chat.api.errors import ApiError
from chat.api.views import count_request, openai_errors
from chat.models import AgentConnection, ApiKey

from .selectors import agent_connections_connected, stale_before


def _iso(value: object) -> str | None:
    return value.isoformat() if value is not None else None  # type: ignore[attr-defined]


def connection_body(connection: AgentConnection, stale: object) -> dict[str, object]:
    return {
        "id": str(connection.pk),
        "name": connection.name,
        "models": connection.model_ids,
        "parallel": connection.parallel,
        "in_flight": connection.in_flight,
        "served": connection.served,
        "connected_at": _iso(connection.connected_at),
        "heartbeat_at": _iso(connection.heartbeat_at),
        "last_message_at": _iso(connection.last_message_at),
        "status": "connected" if connection.heartbeat_at >= stale else "stale",  # type: ignore[operator]
    }


def public_connection(connection: AgentConnection) -> dict[str, object]:
    """ChatGPT-API-server's shape: no names, models or secrets, only liveness."""
    return {
        "Id": str(connection.pk),
        "Heartbeat": _iso(connection.heartbeat_at),
        "LastMessageTime": _iso(connection.last_message_at or connection.connected_at),
        "Ws": {},
    }


@openai_errors("GET")
async def connections(request: HttpRequest) -> HttpResponse:
    """ChatGPT-API-server's contract, open to anyone: `{"connections": [{"Id", "Heartbeat",
    "LastMessageTime", "Ws"}]}`. With an API key (agents are the operator's workers), the
    details too, as an OpenAI-style list under `data`."""
    rows = [c async for c in agent_connections_connected()]
    body: dict[str, object] = {"connections": [public_connection(c) for c in rows]}
    if presented_key(request) is not None:
        principal = await authenticate(request)
        await count_request(request, principal, count=False)
        if principal.kind != ApiKey.Kind.API:
            raise ApiError(403, "Listing agents needs an API key.", error_type="permission_error", code="forbidden")
        stale = stale_before()
        body.update({"object": "list", "data": [connection_body(c, stale) for c in rows]})
    return JsonResponse(body)
