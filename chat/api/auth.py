"""Who is calling: one API key, however the client chose to send it."""

from __future__ import annotations

import asyncio
import time

from django.http import HttpRequest

from chat.models import ApiKey
from chat.selectors import api_key_get_active
from chat.services import api_key_mark_used

from .errors import ApiError

LAST_USED_RESOLUTION_SECONDS = 60.0
_last_marked: dict[int, float] = {}
_background: set[asyncio.Task[None]] = set()


def presented_key(request: HttpRequest) -> str | None:
    """The key from `Authorization: Bearer KEY`, a raw `Authorization: KEY`,
    `x-api-key` (Anthropic clients) or `x-goog-api-key` (Gemini clients)."""
    authorization = request.headers.get("Authorization", "").strip()
    if authorization:
        scheme, _, rest = authorization.partition(" ")
        if scheme.lower() == "bearer":
            return rest.strip() or None
        return None if rest.strip() else authorization
    for header in ("x-api-key", "x-goog-api-key"):
        if value := request.headers.get(header, "").strip():
            return value
    return None


async def authenticate(request: HttpRequest) -> ApiKey:
    secret = presented_key(request)
    if secret is None:
        raise ApiError(
            401,
            "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY' (or x-api-key).",
            error_type="authentication_error",
            code="missing_api_key",
        )
    key = await api_key_get_active(secret=secret)
    if key is None:
        raise ApiError(401, "Incorrect API key provided.", error_type="authentication_error", code="invalid_api_key")
    _mark_used_later(key.pk)
    return key


def _mark_used_later(key_id: int) -> None:
    """Record last use at most once a minute per key, off the request path."""
    now = time.monotonic()
    if now - _last_marked.get(key_id, -LAST_USED_RESOLUTION_SECONDS) < LAST_USED_RESOLUTION_SECONDS:
        return
    _last_marked[key_id] = now
    task = asyncio.get_running_loop().create_task(api_key_mark_used(key_id=key_id))
    _background.add(task)
    task.add_done_callback(_background.discard)
