"""Server-owned generations for the chat page.

The answer is produced by a task on the server's event loop, not by the page's request:
it keeps going (and is saved as it streams) when the tab reloads or closes. Pages watch it
through the channel layer, so a watcher in one process sees a generation owned by
another when the layer is Redis.

Channel-layer protocol, per assistant message id (hex):
  group `gen.<id>`     the owner publishes  gen.delta {offset, text}
                                           gen.snapshot {text}        (answer to a resync)
                                           gen.done {text, status, error, retrieval}
  group `genctl.<id>`  watchers publish     gen.resync (send me everything so far)
                                           gen.stop (end it; keep what was published)
A watcher joins `gen.<id>` first and then asks for a snapshot, so it misses nothing: the
owner answers in order with the deltas it publishes. Every read goes through
chat.layers.ChannelReader: a deadline or an ending never cancels a Redis read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from chat.api.auth import Principal
from chat.api.errors import ApiError, internal_error
from chat.api.streaming import until_revoked, until_stopped
from chat.api.views import fit_request, meter_for
from chat.backends.base import Accepted, Backend, BackendError, GenerationRequest, TextDelta, Usage
from chat.layers import ChannelReader
from chat.models import Conversation, Message

logger = logging.getLogger(__name__)

STOP_FLAG_SECONDS = 600
CONTROL_BACKLOG = 100  # unread stops and resyncs kept (a stop also waits in the cache)
_owned: dict[str, Generation] = {}  # generations this process runs, by message id
_tasks: set[asyncio.Task[None]] = set()


def group_name(message_id: Any) -> str:
    return f"gen.{_hex(message_id)}"


def control_name(message_id: Any) -> str:
    return f"genctl.{_hex(message_id)}"


def _hex(message_id: Any) -> str:
    return getattr(message_id, "hex", str(message_id).replace("-", ""))


@dataclass
class Generation:
    message_id: str
    conversation_id: str
    principal: Principal
    backend: Backend
    request: GenerationRequest
    request_id: str
    text: str = ""
    status: str = Message.Status.STREAMING
    error: dict[str, Any] | None = None
    retrieval: dict[str, Any] | None = None  # what went in from the documents (Message.retrieval)
    stop_requested: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)  # saved and announced


def generation_start(generation: Generation) -> None:
    """Run the generation on this event loop; returns at once."""
    _owned[generation.message_id] = generation
    task = asyncio.get_running_loop().create_task(_own(generation))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


def _stop_key(message_id: Any) -> str:
    return f"gen-stop:{_hex(message_id)}"


async def generation_stop(message_id: Any) -> None:
    """Ask the owner, wherever it runs, to stop: over the channel layer at once, and as a
    flag in the shared cache that the owner also reads each time it saves, in case the
    layer dropped the message (it may, under load)."""
    if (owned := _owned.get(str(message_id))) is not None:
        owned.stop_requested.set()
        return
    await cache.aset(_stop_key(message_id), True, timeout=STOP_FLAG_SECONDS)
    await get_channel_layer().group_send(control_name(message_id), {"type": "gen.stop"})


async def _own(generation: Generation) -> None:
    layer = get_channel_layer()
    control = await layer.new_channel()
    await layer.group_add(control_name(generation.message_id), control)
    reader = ChannelReader(control, what=f"generation {generation.message_id}", limit=CONTROL_BACKLOG)
    listener = asyncio.ensure_future(_listen(generation, reader))
    # Watchers that joined before the owner listened asked for a snapshot nobody heard.
    await _publish(generation, {"type": "gen.snapshot", "text": generation.text})
    try:
        await _generate(generation)
    except Exception:
        logger.exception("generation %s failed", generation.message_id)
        generation.status, generation.error = Message.Status.FAILED, internal_error().payload()["error"]
    finally:
        listener.cancel()  # it waits on the reader's queue, never on the layer: it ends at once
        with contextlib.suppress(asyncio.CancelledError, Exception):  # never keeps the answer from being saved
            await listener
        await _finish(generation)
        reader.close()
        with contextlib.suppress(Exception):  # the layer down: the group's entry expires by itself
            await layer.group_discard(control_name(generation.message_id), control)
        _owned.pop(generation.message_id, None)
        generation.finished.set()


async def _listen(generation: Generation, reader: ChannelReader) -> None:
    while True:
        message = await reader.next()
        if message.get("type") == "gen.stop":
            generation.stop_requested.set()
        elif message.get("type") == "gen.resync":
            try:
                await _publish(generation, {"type": "gen.snapshot", "text": generation.text})
            except Exception:  # a dropped Redis connection: the watcher asks again
                logger.warning("generation %s: answering a resync failed", generation.message_id)


async def _publish(generation: Generation, event: dict[str, Any]) -> None:
    await get_channel_layer().group_send(group_name(generation.message_id), event)


async def _generate(generation: Generation) -> None:
    delivered, usage, failed = 0, None, False
    try:
        generation.request = await fit_request(generation.request, generation.backend)
        meter = await meter_for(
            generation.request, generation.backend, generation.principal, generation.request_id, dialect="web"
        )
        await meter.admit()  # 429 / 402 before any model is contacted
    except ApiError as exc:
        generation.status, generation.error = Message.Status.FAILED, _error(exc)
        return
    # A deleted or disabled session (signed out elsewhere, account removed) ends it too.
    events = until_revoked(generation.backend.stream(generation.request), generation.principal.key_id)
    saved_at = time.monotonic()
    try:
        async for event in until_stopped(events, generation.stop_requested):
            if isinstance(event, TextDelta) and event.index == 0 and event.text:
                offset = len(generation.text)
                meter.first_token()
                meter.seen(event)
                generation.text += event.text
                delivered += event.tokens
                await _publish(generation, {"type": "gen.delta", "offset": offset, "text": event.text})
                if time.monotonic() - saved_at >= settings.WEB["SAVE_EVERY_SECONDS"]:
                    saved_at = time.monotonic()
                    await _save(generation)
                    if await cache.aget(_stop_key(generation.message_id)):
                        generation.stop_requested.set()
            elif isinstance(event, Usage):
                usage = event
            elif isinstance(event, Accepted):
                await meter.accepted(event)  # an exact prompt count shrinks the reservation
        if generation.stop_requested.is_set():
            generation.status = Message.Status.STOPPED
        else:
            generation.status = Message.Status.COMPLETE
    except (ApiError, BackendError) as exc:
        failed = True
        generation.status = Message.Status.FAILED
        generation.error = _error(exc if isinstance(exc, ApiError) else ApiError.from_backend(exc))
    finally:
        await events.aclose()  # type: ignore[attr-defined]
        await asyncio.shield(meter.settle(reported=usage, delivered_tokens=delivered, failed=failed))


def _error(error: ApiError) -> dict[str, Any]:
    return {**error.payload()["error"], "status": error.status, "retry_after": error.retry_after}


async def _save(generation: Generation) -> None:
    await Message.objects.filter(pk=generation.message_id).aupdate(content=generation.text, updated_at=timezone.now())


async def _finish(generation: Generation) -> None:
    """The final text is what was published — exactly what watchers were shown."""
    try:
        await Message.objects.filter(pk=generation.message_id).aupdate(
            content=generation.text, status=generation.status, error=generation.error, updated_at=timezone.now()
        )
        await Conversation.objects.filter(pk=generation.conversation_id).aupdate(updated_at=timezone.now())
    except Exception:
        logger.exception("saving generation %s failed", generation.message_id)
    await _publish(
        generation,
        {
            "type": "gen.done",
            "text": generation.text,
            "status": generation.status,
            "error": generation.error,
            "retrieval": generation.retrieval,
        },
    )
