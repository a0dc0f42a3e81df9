"""The floor a Django gateway can reach, for bench/gateway.py: one async Django view under
the same server that forwards the request body to the upstream with one shared httpx client and
returns its answer (a JSON body, or the SSE stream as it arrives) — no middleware, no auth,
no database, no logging. Whatever GhostGPT adds beyond this is its own per-request work.

    FLOOR_UPSTREAM=http://127.0.0.1:PORT/ok/v1 uvicorn --loop uvloop --http httptools bench.floor_app:application
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import django
import httpx
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="bench-floor-only",  # no sessions, no signing: a placeholder
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
    DATABASES={},
    LOGGING_CONFIG=None,
    USE_TZ=True,
)
django.setup()

from django.core.asgi import get_asgi_application  # noqa: E402
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse  # noqa: E402
from django.urls import path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402

UPSTREAM = os.environ["FLOOR_UPSTREAM"].rstrip("/")
_client: httpx.AsyncClient | None = None


def _shared() -> httpx.AsyncClient:
    global _client
    if _client is None:  # made on the server's loop, at the first request
        _client = httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=200))
    return _client


@csrf_exempt
async def chat_completions(request: HttpRequest) -> HttpResponse:
    body = request.body
    client = _shared()
    upstream = client.build_request(
        "POST", f"{UPSTREAM}/chat/completions", content=body, headers={"content-type": "application/json"}
    )
    response = await client.send(upstream, stream=True)
    if response.headers.get("content-type", "").startswith("text/event-stream"):

        async def relay() -> AsyncIterator[bytes]:
            try:
                async for chunk in response.aiter_raw():
                    yield chunk
            finally:
                await response.aclose()

        return StreamingHttpResponse(relay(), content_type="text/event-stream")
    content = await response.aread()
    await response.aclose()
    return HttpResponse(content, status=response.status_code, content_type="application/json")


urlpatterns = [path("v1/chat/completions", chat_completions)]
application = get_asgi_application()
