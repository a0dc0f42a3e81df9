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
    body = json.dumps(
        {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
    ).encode()
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


def install_daphne_limits() -> None:
    """The same limits inside Daphne, where bytes really arrive: Twisted buffers a whole
    body (to a temporary file past 100 KB) before Daphne calls the application, so an ASGI
    middleware alone would see a 50 GB upload only after it was on disk. Daphne's request
    class (daphne==4.2.3, pinned) gets the route's limit when the headers are in: a declared
    Content-Length past it, or a chunked body that grows past it, is answered 413 at once and
    the connection closed; nothing more is buffered."""
    from daphne.http_protocol import WebRequest

    if getattr(WebRequest, "ghostgpt_limits", False):
        return
    got_length, handle_chunk, process = WebRequest.gotLength, WebRequest.handleContentChunk, WebRequest.process

    def refuse(request: Any) -> None:
        request.ghostgpt_refused = True
        body = json.dumps(
            {
                "error": {
                    "message": f"The request body is larger than this route accepts ({request.ghostgpt_limit} bytes).",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "request_too_large",
                }
            }
        ).encode()
        head = (
            "HTTP/1.1 413 Request Entity Too Large\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        transport = request.channel.transport
        transport.write(head + body)
        transport.loseConnection()

    def gotLength(self: Any, length: int | None) -> None:  # noqa: N802 (Twisted's name)
        path = bytes(getattr(self.channel, "_path", b"") or b"").split(b"?")[0].decode("latin-1")
        self.ghostgpt_limit, self.ghostgpt_received, self.ghostgpt_refused = body_limit(path), 0, False
        if length is not None and length > self.ghostgpt_limit:
            got_length(self, 0)
            refuse(self)
            return
        got_length(self, length)

    def handleContentChunk(self: Any, data: bytes) -> None:  # noqa: N802
        if self.ghostgpt_refused:
            return
        self.ghostgpt_received += len(data)
        if self.ghostgpt_received > self.ghostgpt_limit:
            refuse(self)
            return
        handle_chunk(self, data)

    def guarded_process(self: Any) -> None:
        if not getattr(self, "ghostgpt_refused", False):
            process(self)

    WebRequest.gotLength = gotLength
    WebRequest.handleContentChunk = handleContentChunk
    WebRequest.process = guarded_process
    WebRequest.ghostgpt_limits = True
