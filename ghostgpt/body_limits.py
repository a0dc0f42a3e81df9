"""Request bodies counted as they arrive, in front of Django.

Django reads a whole body (spooling large ones to disk) before any view can check who is
calling or answer 413, and a chunked body with no Content-Length skips its size check.
This ASGI middleware answers 413 in the product's error format as soon as a declared
Content-Length, or the bytes received so far, pass the route's limit — before Django
reads anything — and stops passing the body on.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings

from chat.api.errors import error_payload

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
MULTIPART_ALLOWANCE = 64 * 1024  # form boundaries and fields around an uploaded file


def body_limit(path: str) -> int:
    """The most bytes a request body to `path` may have."""
    tools, web = settings.TOOLS, settings.WEB
    if path == "/api/pdf/extract":
        return tools["PDF_MAX_BYTES"] + MULTIPART_ALLOWANCE
    if path == "/api/import":
        return tools["IMPORT_MAX_BYTES"] + MULTIPART_ALLOWANCE
    if path == "/api/documents":
        return settings.DOCUMENTS["MAX_BYTES"] + MULTIPART_ALLOWANCE
    if path in ("/api/transcribe", "/v1/audio/transcriptions"):
        return tools["TRANSCRIBE_MAX_BYTES"] + MULTIPART_ALLOWANCE
    if path == "/api/share":
        return web["SHARE_MAX_BYTES"]
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE  # the JSON APIs (images ride in them as base64)


class BodyTooLarge(Exception):
    pass


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers") or ():
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return -1
    return None


async def _reject(send: Send, status: int, message: str, code: str) -> None:
    body = json.dumps(error_payload(message, "invalid_request_error", code=code)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": [*headers, (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = body_limit(scope.get("path", ""))
        declared = _content_length(scope)
        too_large = f"The request body is larger than this route accepts ({limit} bytes)."
        if declared is not None and declared < 0:
            return await _reject(send, 400, "Invalid Content-Length header.", "invalid_content_length")
        if declared is not None and declared > limit:
            return await _reject(send, 413, too_large, "request_too_large")
        received, started = 0, False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            if not started:
                await _reject(send, 413, too_large, "request_too_large")
