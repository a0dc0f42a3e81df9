"""Serving a backend's event stream as SSE or as one collected JSON body."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

from django.http import StreamingHttpResponse

from chat import lifecycle
from chat.backends.base import Accepted, BackendError, Event
from chat.metrics import LIVE_STREAMS
from chat.revocation import REVOCATION_POLL_SECONDS, key_is_revoked

from .encoders import PING, Encoder
from .errors import ApiError, internal_error

logger = logging.getLogger(__name__)


class ByteStreamResponse(StreamingHttpResponse):
    """A streaming response whose content is an async iterator of bytes, handed to the
    server as it is: a plain StreamingHttpResponse passes every chunk through two generators
    of its own (`__aiter__`, and `streaming_content`'s conversion to bytes)."""

    def __aiter__(self) -> AsyncIterator[bytes]:  # type: ignore[override]
        if self.is_async:
            return self._iterator  # type: ignore[no-any-return]
        return super().__aiter__()


async def pings_until_first_token(
    events: AsyncIterator[Event], interval: float, ping: bytes = PING
) -> AsyncIterator[Event | bytes]:
    """The events up to the first that is not `Accepted` (the first token, an error, the
    end), plus PING whenever nothing arrived for `interval` seconds; nothing when
    `interval` <= 0. The caller reads the rest from `events` itself.

    Pings matter only before the first token (queue wait, prefill); after it the caller
    reads the stream directly, without this generator's step per token.
    """
    iterator = aiter(events)
    if interval > 0:
        pending: asyncio.Future[Event] | None = None
        try:
            while True:
                pending = pending or asyncio.ensure_future(anext(iterator))
                done, _ = await asyncio.wait({pending}, timeout=interval)
                if not done:
                    yield ping
                    continue
                finished, pending = pending, None
                try:
                    event = finished.result()
                except StopAsyncIteration:
                    return
                yield event
                if not isinstance(event, Accepted):
                    break
        finally:
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await pending


class AccessRevoked(BackendError):
    status = 401
    error_type = "authentication_error"
    code = "api_key_revoked"


class ServerShuttingDown(BackendError):
    status = 503
    error_type = "service_unavailable_error"
    code = "server_shutting_down"


async def until_stopped(
    events: AsyncIterator[Event], stop: asyncio.Event, watch: Coroutine[Any, Any, None] | None = None
) -> AsyncIterator[Event]:
    """The events until the stream ends or `stop` is set — also while the backend is still
    queueing, prefilling or waiting on a stalled upstream, when no event would arrive to
    notice it. `watch`: the coroutine to run beside the stream instead of `stop.wait()`; it
    must return once `stop` is set (one task per stream either way).

    Each event is awaited directly (racing every step against `stop` in a task of its own
    cost ~16 µs an event). When `stop` is set while the stream waits for its next event,
    the task waiting is interrupted there — at that await and only there — by a
    cancellation this generator takes back (`Task.uncancel`) before it ends the stream.
    A real cancellation arriving at the same time still propagates.
    """
    iterator = aiter(events)
    waiting: asyncio.Task[Any] | None = None  # the task awaiting the next event, while it does
    interrupted = False

    def interrupt(_: object) -> None:
        nonlocal interrupted
        if waiting is not None and not interrupted:
            interrupted = True
            waiting.cancel()

    stopper = asyncio.ensure_future(watch if watch is not None else stop.wait())
    stopper.add_done_callback(interrupt)
    try:
        while not stop.is_set():
            waiting = asyncio.current_task()  # the caller's task; before the first event it may be a pinger's
            try:
                event = await anext(iterator)
            except StopAsyncIteration:
                return
            except asyncio.CancelledError:
                if not interrupted or (waiting and waiting.uncancel() > 0):
                    raise  # not ours, or a real cancellation came as well
                return
            finally:
                waiting = None
            yield event
    finally:
        stopper.remove_done_callback(interrupt)
        stopper.cancel()


async def until_revoked(events: AsyncIterator[Event], key_id: int) -> AsyncIterator[Event]:
    """The events, until the key that asked for them is deleted or disabled (checked in the
    shared cache every REVOCATION_POLL_SECONDS, by a watcher beside the stream): then
    AccessRevoked ends the stream (an error event, then the end) at once, even while the
    backend sends nothing (a stalled upstream, a long prefill). The end of a drain
    (chat.lifecycle) ends it the same way, with ServerShuttingDown."""
    revoked = False

    with lifecycle.generation_stopper() as stop:

        async def watch() -> None:  # authentication checked the key just now: the first look is a poll later
            nonlocal revoked
            while key_id:  # the model tier's one caller (GHOSTGPT_ROLE=model) has no key to revoke
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(REVOCATION_POLL_SECONDS):  # a timer, not a task
                        await stop.wait()
                    return
                if await key_is_revoked(key_id):
                    revoked = True
                    stop.set()
                    return
            await stop.wait()

        try:
            async for event in until_stopped(events, stop, watch()):
                yield event
            if revoked:
                raise AccessRevoked("This API key was deleted or disabled while the response streamed.")
            if stop.is_set():
                raise ServerShuttingDown(
                    "The server restarted before the response was complete; retry the request.", retry_after=1
                )
        finally:
            await events.aclose()  # type: ignore[attr-defined]


Settle = Callable[[bool], Awaitable[None]]


async def sse_body(
    events: AsyncIterator[Event], encoder: Encoder, first: Event, ping_seconds: float, settle: Settle
) -> AsyncIterator[bytes]:
    """The SSE byte stream. A failure after the first byte becomes an error event + [DONE].

    On client disconnect the handler cancels the task reading this generator: the
    `finally` closes the backend stream, which stops the generation, bills what was
    delivered, and the CancelledError propagates.
    """
    items = pings_until_first_token(events, ping_seconds, encoder.ping)
    failed = False
    LIVE_STREAMS.inc()
    try:
        yield encoder.encode(first)
        async for item in items:
            chunk = item if isinstance(item, bytes) else encoder.encode(item)
            if chunk:
                yield chunk
        async for event in events:
            chunk = encoder.encode(event)
            if chunk:
                yield chunk
        yield encoder.end()
    except BackendError as exc:
        failed = True
        yield encoder.error(ApiError.from_backend(exc))
        yield encoder.end()
    except Exception:
        failed = True
        logger.exception("stream %s failed", encoder.id)
        yield encoder.error(internal_error())
        yield encoder.end()
    finally:
        # The ping wrapper first: it may hold a pending read of the backend stream,
        # and cancelling that read is what lets the backend stream close.
        LIVE_STREAMS.dec()
        await items.aclose()  # type: ignore[attr-defined]
        await events.aclose()  # type: ignore[attr-defined]
        await asyncio.shield(settle(failed))


async def collect(events: AsyncIterator[Event], encoder: Encoder, first: Event, settle: Settle) -> dict[str, Any]:
    """The non-stream body: the same stream, collected. Cancellation (the client is gone)
    stops the backend and bills what the request cost by then, as a dropped stream does:
    the admitted prompt's counted size and what was generated. A backend's failure is a
    failure (nothing delivered and nothing reported costs nothing)."""
    failed = False
    try:
        encoder.record(first)
        async for event in events:
            encoder.record(event)
    except asyncio.CancelledError:
        raise
    except BaseException:
        failed = True
        raise
    finally:
        await events.aclose()  # type: ignore[attr-defined]
        await asyncio.shield(settle(failed))
    return encoder.body()
