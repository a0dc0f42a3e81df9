"""Django's ASGI handler without a thread per API request.

Django serves every request inside asgiref's ThreadSensitiveContext: the first
thread-sensitive `sync_to_async` call of the request (the `request_started` signal's
receivers, then `response.close()`) starts a new thread, and the end of the request joins
it. For a view that is itself async — every /v1 route — that thread runs nothing but two
bookkeeping calls, yet starting and joining it was a third of the event loop's time per
request (py-spy, bench/gateway.py). Requests to async views skip the context: those calls
run on asgiref's one long-lived thread for thread-sensitive work instead. Sync views (pages,
the console, the admin) keep a thread per request, as in Django.
"""

from __future__ import annotations

import functools
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.core.handlers.asgi import ASGIHandler
from django.urls import Resolver404, get_resolver

CACHED_PATH_LENGTH = 200  # longer paths (client-chosen ids) are resolved each time, not kept


def _async_view(path: str) -> bool:
    """Whether `path` resolves to an async view (a 404 does not: its handler is sync)."""
    return _async_view_cached(path) if len(path) <= CACHED_PATH_LENGTH else _resolves_async(path)


def _resolves_async(path: str) -> bool:
    try:
        match = get_resolver().resolve(path)
    except Resolver404:
        return False
    return iscoroutinefunction(match.func)


_async_view_cached = functools.lru_cache(maxsize=4096)(_resolves_async)


class GhostGPTASGIHandler(ASGIHandler):
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and _async_view(scope.get("path", "")):
            await self.handle(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
