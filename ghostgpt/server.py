"""The HTTP server GhostGPT runs under: uvicorn (uvloop + httptools, WebSockets through
`websockets`' sans-I/O protocol), measured against Daphne and Granian in bench/asgi.py.

Three things uvicorn does not do on its own, added here:
- Limits on the request head. httptools keeps a URL and headers of any size, and a client
  that sends its head a byte at a time holds its connection for as long as it likes. A
  head past GHOSTGPT_HTTP_HEAD_MAX_BYTES is answered 431, one not complete within
  GHOSTGPT_HTTP_HEAD_TIMEOUT_SECONDS of its first byte (or of the connection) gets 408; both
  then close the connection (lingering: what the client still sends is read and dropped).
  Bodies are counted by ghostgpt.body_limits as they arrive (uvicorn hands them to the
  application as they come, it does not buffer them).
- A graceful stop (chat.lifecycle): SIGTERM or SIGINT closes the listening socket at once,
  lets running generations finish for GHOSTGPT_DRAIN_SECONDS, ends what still runs with an
  error event, then lets uvicorn close the connections. A second signal stops at once.
- Writes coalesced per turn of the event loop (CoalescingTransport): the events of a stream
  that arrive together leave in one send() instead of one each.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
from collections.abc import Generator
from typing import Any, cast

import uvicorn
from django.conf import settings
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from chat import lifecycle
from chat.api.errors import error_payload

logger = logging.getLogger("ghostgpt.serve")
POLL_SECONDS = 0.1
FLUSH_SECONDS = 1.0  # after the error events are sent, before connections are closed
LINGER_SECONDS = 2.0  # after a 408/431, unread bytes are drained this long before the close
CLOSE_SECONDS = 3  # then uvicorn's wait for connections to close before it cancels what is left
COALESCE_MAX_BYTES = 64 * 1024  # writes of one loop turn past this leave at once


def _refusal(status: int, reason: str, message: str, code: str) -> bytes:
    """A whole HTTP response in the product's error format that closes the connection."""
    body = json.dumps(error_payload(message, "invalid_request_error", code=code)).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode()
    return head + body


class CoalescingTransport:
    """A transport whose writes within one turn of the event loop leave as one write.

    uvicorn writes every ASGI message at once, and uvloop sends each write straight to the
    socket: a streamed answer of 33 events that arrived from the upstream together was 34
    send() calls, and as many TCP segments for the client to read (py-spy: a third of the
    event loop's busy time on an SSE request). Here the writes of one turn are joined and
    sent by a callback at the next turn — microseconds later, before the loop waits on I/O.
    Past COALESCE_MAX_BYTES they are sent at once, so the transport's own buffer and flow
    control (pause_writing) still see a large answer as it is written. Closing sends what
    is pending first; aborting drops it. Everything else is the wrapped transport's.
    """

    __slots__ = ("_loop", "_pending", "_scheduled", "_size", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._size = 0
        self._scheduled = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        piece = bytes(data)  # the same object for bytes; a copy of a buffer the caller may reuse
        self._pending.append(piece)
        self._size += len(piece)
        if self._size >= COALESCE_MAX_BYTES:
            self.flush()
        elif not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush_soon)

    def writelines(self, pieces: Any) -> None:
        for piece in pieces:
            self.write(piece)

    def _flush_soon(self) -> None:
        self._scheduled = False
        self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending = []
        self._size = 0
        if not self._transport.is_closing():
            self._transport.write(data)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + self._size

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending = []
        self._size = 0
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a size and a time limit on each request head, and
    its writes coalesced per turn of the loop (CoalescingTransport)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(cast(asyncio.Transport, CoalescingTransport(transport, self.loop)))
        self.head_max = int(settings.GHOSTGPT["HTTP_HEAD_MAX_BYTES"])
        self.head_seconds = float(settings.GHOSTGPT["HTTP_HEAD_TIMEOUT_SECONDS"])
        self.head_bytes = 0
        self.head_too_large = False  # sticky: nothing more is parsed into requests
        self.refused = False
        self.head_timer: asyncio.TimerHandle | None = None
        self._start_head_timer()  # a connection that never sends a byte is closed too

    def _start_head_timer(self) -> None:
        self._stop_head_timer()
        self.head_timer = self.loop.call_later(self.head_seconds, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_timed_out(self) -> None:
        self.head_timer = None
        if not self.refused and not self.transport.is_closing():
            self._refuse(408, "Request Timeout", "The request head did not arrive in time.", "request_timeout")

    def _refuse(self, status: int, reason: str, message: str, code: str) -> None:
        """Answer, then close. A client may still be sending the rest of its head: closing
        with its bytes unread would reset the connection and could destroy the answer before
        the client reads it, so the write side is shut first and what arrives is read and
        dropped for up to LINGER_SECONDS (a lingering close, as nginx does)."""
        self._stop_head_timer()
        self.refused = True
        self.transport.write(_refusal(status, reason, message, code))
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.head_timer = self.loop.call_later(LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.refused or self.transport.is_closing():
            return  # lingering after a refusal: read and dropped
        super().data_received(data)
        if self.head_too_large and not self.refused and not self.transport.is_closing():
            self._refuse(
                431,
                "Request Header Fields Too Large",
                f"The request line and headers are larger than this server accepts ({self.head_max} bytes).",
                "request_header_too_large",
            )

    # Parser callbacks: httptools calls them from feed_data, inside data_received.
    def _count(self, size: int) -> bool:
        """Adds to the head's size; False once it is past the limit."""
        self.head_bytes += size
        self.head_too_large = self.head_too_large or self.head_bytes > self.head_max
        return not self.head_too_large

    def on_message_begin(self) -> None:
        if self.head_too_large:
            return
        self.head_bytes = 0
        self._start_head_timer()
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        if self._count(len(url)):
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._count(len(name) + len(value) + 4):
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._stop_head_timer()
        if not self.head_too_large:
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self.head_too_large:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self.head_too_large:
            super().on_message_complete()


def server_config(application: Any, *, host: str, port: int, backlog: int, **overrides: Any) -> uvicorn.Config:
    """GhostGPT's uvicorn settings. Forwarding headers are left to the application
    (chat.network trusts them only from GHOSTGPT_TRUSTED_PROXIES), access logging to
    chat.middleware (uvicorn's prints query strings verbatim)."""
    return uvicorn.Config(
        application,
        host=host,
        port=port,
        backlog=backlog,
        loop="uvloop",
        http=GuardedHttpToolsProtocol,
        ws="websockets-sansio",  # half the memory per open WebSocket of uvicorn's other `websockets` one
        ws_max_size=int(settings.GHOSTGPT["WEBSOCKET_MAX_BYTES"]),
        lifespan="off",
        access_log=False,
        log_config=None,  # Django's LOGGING configures the "uvicorn" loggers
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=int(settings.GHOSTGPT["HTTP_KEEPALIVE_SECONDS"]),
        timeout_graceful_shutdown=CLOSE_SECONDS,
        **overrides,
    )


class DrainingServer(uvicorn.Server):
    """uvicorn's server whose first SIGTERM/SIGINT drains (see the module docstring)."""

    def __init__(self, config: uvicorn.Config, drain_seconds: float) -> None:
        super().__init__(config)
        self.drain_seconds = drain_seconds
        self.drain_task: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        loop = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGINT)
        for signum in signals:
            loop.add_signal_handler(signum, self.signalled)
        try:
            yield
        finally:
            for signum in signals:
                loop.remove_signal_handler(signum)

    def signalled(self) -> None:
        if self.drain_task is None:
            self.drain_task = asyncio.get_running_loop().create_task(self.drain())
        else:  # a second signal: stop now
            logger.info("stopping at once")
            self.should_exit = self.force_exit = True

    async def drain(self) -> None:
        lifecycle.begin_drain()
        for server in getattr(self, "servers", []):
            server.close()  # stop accepting: new connections go to the other processes
        logger.info("draining: %d generations running, up to %ss", lifecycle.running(), self.drain_seconds)
        deadline = time.monotonic() + self.drain_seconds
        while lifecycle.running() and time.monotonic() < deadline and not self.should_exit:
            await asyncio.sleep(POLL_SECONDS)
        if lifecycle.running():
            logger.warning("drain time over: ending %d generations", lifecycle.running())
            lifecycle.end_generations()
            await asyncio.sleep(FLUSH_SECONDS)
        logger.info("stopped")
        self.should_exit = True
