"""`GET /api/connections`: the dial-in agents connected now."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse

from chat.api.auth import authenticate
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


@openai_errors("GET")
async def connections(request: HttpRequest) -> HttpResponse:
    """For API keys (not browser sessions): agents are the operator's workers."""
    principal = await authenticate(request)
    await count_request(request, principal, count=False)
    if principal.kind != ApiKey.Kind.API:
        raise ApiError(403, "Listing agents needs an API key.", error_type="permission_error", code="forbidden")
    stale = stale_before()
    rows = [connection_body(c, stale) async for c in agent_connections_connected()]
    return JsonResponse({"object": "list", "data": rows})
