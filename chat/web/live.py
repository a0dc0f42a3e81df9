"""The chat page's generation endpoints (plain async views: they stream or start tasks).

POST /api/conversations/{id}/messages   start a turn (or a regeneration); answers at once
GET  /api/messages/{id}/stream          SSE: snapshot, deltas, done — attach at any time
POST /api/messages/{id}/stop            end the generation, keep exactly the text shown
POST /api/ask                           one answer as JSON, threaded on the server
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.utils import timezone

from chat.api.auth import Principal, authenticate
from chat.api.errors import ApiError, acount_or_429, rate_limited
from chat.api.params import parse_chat, parse_json_object
from chat.api.views import backend_for, count_request, openai_errors, request_body
from chat.backends import registry
from chat.backends.base import Backend
from chat.billing.estimate import completion_bound, prompt_bound, prompt_floor
from chat.billing.ratelimit import limiter
from chat.layers import ChannelReader
from chat.models import Conversation, Message
from documents import context as documents_context

from . import services
from .api import owner_limits
from .generation import Generation, control_name, generation_start, generation_stop, group_name
from .selectors import aconversation_get_for_account, amessage_get_for_account, branch_to
from .serializers import conversation_body, message_body

logger = logging.getLogger(__name__)

RESYNC_SECONDS = 1.5  # how long a watcher waits for the owner's snapshot before asking again
PING_SECONDS = 5.0  # also how often a quiet, synced watcher checks the database for the end
STOP_WAIT_SECONDS = 5.0
WATCH_BACKLOG = 200  # unread messages a watcher keeps; past them it resyncs (a page reading slowly)
# Sampling settings a turn may carry; checked by the same parameter policy as /v1.
TURN_SETTINGS = ("temperature", "top_p", "max_tokens", "seed", "presence_penalty", "frequency_penalty")


@openai_errors("POST")
async def send_turn(request: HttpRequest, conversation_id: str) -> HttpResponse:
    """`conversation_id` "new" starts a conversation with this turn (one round trip for the
    first message). With `Accept: text/event-stream` the answer streams in this response
    (a `turn` event, then what /stream sends); otherwise it is JSON with a `stream_url`."""
    principal = await authenticate(request)
    await count_request(request, principal)
    body = parse_json_object(request_body(request))
    if conversation_id == "new":
        await limit_new_conversation(principal)
    conversation, model, backend = await _conversation_and_model(
        principal, None if conversation_id == "new" else conversation_id, body, settings.GHOSTGPT["MODEL_ID"]
    )
    options = {name: body[name] for name in TURN_SETTINGS if name in body}
    await _check_before_writing(principal, backend, conversation, body, model, options)
    conversation, user, assistant = await sync_to_async(_create_turn)(principal, conversation, body, model)
    await _start(request, principal, backend, conversation, assistant, options)
    turn = {
        "conversation": conversation_body(conversation),
        "user_message": message_body(user) if user else None,
        "assistant_message": message_body(assistant),
        "stream_url": f"/api/messages/{assistant.pk}/stream",
    }
    if "text/event-stream" in request.headers.get("Accept", ""):
        return _sse(_turn_then_watch(turn, assistant))
    return JsonResponse(turn, status=201)


@openai_errors("POST")
async def ask(request: HttpRequest) -> HttpResponse:
    """`POST /api/ask {content, conversation_id?, parent_id?, model?}` → `{id, response_id,
    conversation_id, content, error}`: one answer, threaded on the server. Continue a
    conversation with both its id and the `response_id` to answer (both or neither). The
    default model is the dial-in agents' (GHOSTGPT_AGENT_MODEL), else the embedded one."""
    principal = await authenticate(request)
    await count_request(request, principal)
    body = parse_json_object(request_body(request))
    conversation_id, parent_id = body.get("conversation_id"), body.get("parent_id")
    if (conversation_id is None) != (parent_id is None):
        missing = "parent_id" if parent_id is None else "conversation_id"
        raise ApiError(
            400,
            "Send both 'conversation_id' and 'parent_id' to continue a conversation, or neither to start one.",
            param=missing,
            code="missing_required_parameter",
        )
    if conversation_id is None:
        await limit_new_conversation(principal)
    default = settings.GHOSTGPT["AGENT_MODEL"] or settings.GHOSTGPT["MODEL_ID"]
    conversation, model, backend = await _conversation_and_model(principal, conversation_id, body, default)
    await _check_before_writing(principal, backend, conversation, body, model, {})
    conversation, user, assistant = await sync_to_async(services.turn_create)(
        conversation=conversation,
        account_id=principal.account_id,
        owner_id=principal.user_id,
        content=body.get("content"),
        attachments=None,
        parent_id=parent_id,
        model=model,
    )
    generation = await _start(request, principal, backend, conversation, assistant, {})
    await generation.finished.wait()  # the answer is saved whether or not this client stays
    error = generation.error
    return JsonResponse(
        {
            "id": str(user.pk),
            "response_id": str(assistant.pk),
            "conversation_id": str(conversation.pk),
            "content": generation.text,
            "error": error["message"] if error else None,
        },
        status=int(error.get("status") or 502) if error else 200,
        json_dumps_params={"ensure_ascii": False},
    )


async def limit_new_conversation(principal: Principal) -> None:
    """429 when the account made GHOSTGPT_CONVERSATION_RATE conversations this window — the
    counter of the list's POST and a continued share (chat.web.api), for a first turn and
    /api/ask too."""
    limits = owner_limits("conversation", principal.account_id, "CONVERSATION_RATE")
    await acount_or_429(limits, "new conversations")


async def _check_before_writing(
    principal: Principal,
    backend: Backend,
    conversation: Conversation | None,
    body: dict[str, Any],
    model: str,
    options: dict[str, Any],
) -> None:
    """What the turn's generation would refuse, refused before any row is written: its worst
    case past the account's (or the key's) TPM this window (429), or a prompt that cannot fit
    the model's context even at the fewest tokens its text can be (400). A malformed turn is
    left to the write, which says what is wrong."""
    history = await sync_to_async(services.turn_preview)(
        conversation=conversation, body=body, account_id=principal.account_id, owner_id=principal.user_id
    )
    if history is None:
        return
    parsed = parse_chat({"model": model, "messages": history, **options}, settings.GHOSTGPT)
    info = registry.canonical_info(backend)
    worst = prompt_bound(parsed.generation, image_tokens=info.image_tokens) + completion_bound(parsed.generation)
    for limits in principal.all_limits:
        if limits.tpm is None:
            continue
        state = await limiter().hit(limits, count=False)
        if state.tokens + worst > limits.tpm:
            raise rate_limited(
                f"Rate limit reached for tokens: this turn may use up to {worst} tokens (its conversation + "
                f"max_tokens), and {state.tokens} of {limits.tpm} are used this window. Retry after "
                f"{state.reset_seconds}s, or start a new conversation.",
                kind="tokens",
                retry_after=state.reset_seconds,
            )
    least = prompt_floor(parsed.generation)
    if least >= info.context_length:
        raise ApiError(
            400,
            f"This model's maximum context length is {info.context_length} tokens, and this conversation is "
            f"at least {least}: start a new conversation or send less.",
            param="content",
            code="context_length_exceeded",
        )


async def _conversation_and_model(
    principal: Principal, conversation_id: str | None, body: dict[str, Any], default: str
) -> tuple[Conversation | None, str, Backend]:
    """The caller's conversation (None: a new one; 404 if not theirs), the model the turn
    asks for (else the conversation's, else `default`) and its backend (404 if not allowed)."""
    conversation = (
        None
        if conversation_id is None
        else await aconversation_get_for_account(
            account_id=principal.account_id, owner_id=principal.user_id, conversation_id=conversation_id
        )
    )
    model = body.get("model") or (conversation.model if conversation else "") or default
    if not isinstance(model, str):
        raise ApiError(400, "'model' must be a string.", param="model")
    return conversation, model, backend_for(model, principal)


async def _start(
    request: HttpRequest,
    principal: Principal,
    backend: Backend,
    conversation: Conversation,
    assistant: Message,
    options: dict[str, Any],
) -> Generation:
    """Start generating `assistant` from the branch above it, on this server's loop."""
    branch = await sync_to_async(branch_to)(conversation=conversation, leaf_id=assistant.parent_id)
    history = await sync_to_async(services.history_messages)(conversation=conversation, branch=branch)
    max_tokens = options.get("max_tokens")
    history = await documents_context.for_turn(  # every turn reads its documents again
        principal=principal,
        conversation=conversation,
        assistant=assistant,
        branch=branch,
        history=history,
        context_length=registry.canonical_info(backend).context_length,
        max_tokens=max_tokens if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) else None,
    )
    try:
        parsed = parse_chat(
            {"model": assistant.model, "messages": history, "stream": True, **options}, settings.GHOSTGPT
        )
    except ApiError as exc:  # e.g. a setting out of range: the answer says so
        await _fail(assistant, exc)
        raise
    generation = Generation(
        message_id=str(assistant.pk),
        conversation_id=str(conversation.pk),
        principal=principal,
        backend=backend,
        request=parsed.generation,
        request_id=request.request_id,  # type: ignore[attr-defined]
    )
    generation.retrieval = assistant.retrieval
    generation_start(generation)
    return generation


def _create_turn(
    principal: Principal, conversation: Conversation | None, body: dict[str, Any], model: str
) -> tuple[Conversation, Message | None, Message]:
    if body.get("regenerate"):
        if conversation is None:
            raise ApiError(400, "A new conversation has nothing to regenerate.", param="regenerate")
        return (
            conversation,
            None,
            services.regeneration_create(conversation=conversation, message_id=body["regenerate"], model=model),
        )
    return services.turn_create(
        conversation=conversation,
        account_id=principal.account_id,
        owner_id=principal.user_id,
        content=body.get("content", ""),
        attachments=body.get("attachments"),
        parent_id=body.get("parent_id"),
        model=model,
        system_prompt=body.get("system_prompt"),
        project_id=body.get("project_id"),
        key_id=principal.key_id,
    )


async def _turn_then_watch(turn: dict[str, Any], assistant: Message) -> AsyncIterator[bytes]:
    yield _event("turn", turn)
    async for chunk in _watch(assistant):
        yield chunk


def _sse(body: AsyncIterator[bytes]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(body, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


async def _fail(message: Message, error: ApiError) -> None:
    await Message.objects.filter(pk=message.pk).aupdate(
        status=Message.Status.FAILED, error={**error.payload()["error"], "status": error.status}
    )


@openai_errors("GET")
async def watch(request: HttpRequest, message_id: str) -> HttpResponse:
    principal = await authenticate(request)
    message = await amessage_get_for_account(
        account_id=principal.account_id, owner_id=principal.user_id, message_id=message_id
    )
    return _sse(_watch(message))


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def _done(message: Message, shown: int | None = None) -> bytes:
    return _end(message.content, message.status, message.error, shown, message.retrieval)


def _end(text: str, status: str, error: Any, shown: int | None, retrieval: Any = None) -> bytes:
    """The "done" event, after a last delta with what this watcher was not shown (the layer
    may drop deltas: a slow reader, a dropped connection), so its deltas add up to the text."""
    catch_up = (
        _event("delta", {"offset": shown, "text": text[shown:]}) if shown is not None and len(text) > shown else b""
    )
    return catch_up + _event("done", {"text": text, "status": status, "error": error, "retrieval": retrieval})


async def _watch(message: Message) -> AsyncIterator[bytes]:
    if message.status != Message.Status.STREAMING:
        yield _done(message)
        return
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(group_name(message.pk), channel)
    reader = ChannelReader(channel, what=f"watching {message.pk}", limit=WATCH_BACKLOG)
    try:
        await layer.group_send(control_name(message.pk), {"type": "gen.resync"})
        asked, length = time.monotonic(), None  # length: characters sent so far, once synced
        checked = time.monotonic()  # when the watcher last sent a byte or looked at the database
        heard = time.monotonic()  # when the owner last published anything (it answers every resync)
        while True:
            # Due by the clock, not by silence: a stream of deltas this watcher must skip (not
            # synced yet, the snapshot lost) must not hold off the ping, the resync or the
            # database check — the "done" may be among the dropped messages.
            interval = RESYNC_SECONDS if length is None else PING_SECONDS
            event = await reader.get(checked + interval - time.monotonic())
            if event is None or time.monotonic() - checked >= interval:
                checked = time.monotonic()
                yield b": ping\n\n"
                if length is None:
                    finished = await _unowned(message, since=asked)
                    if finished is not None:
                        yield _done(finished)
                        return
                    await layer.group_send(control_name(message.pk), {"type": "gen.resync"})
                else:  # quiet while synced: the "done" may have been dropped for a slow reader,
                    # or the owner's process died (then nothing would ever end this watch)
                    fresh = await _unowned(message, since=heard)
                    if fresh is not None:
                        yield _done(fresh, length)
                        return
                    await layer.group_send(control_name(message.pk), {"type": "gen.resync"})  # are you there?
                if event is None:
                    continue
            kind = event.get("type")
            heard = time.monotonic()
            if kind == "gen.done":
                yield _end(event["text"], event["status"], event["error"], length, event.get("retrieval"))
                return
            if kind == "gen.snapshot" and length is None:
                length = len(event["text"])
                checked = time.monotonic()
                yield _event("snapshot", {"text": event["text"]})  # the page replaces its text with it
            elif kind == "gen.delta" and length is not None:
                start, text = event["offset"], event["text"]
                if start + len(text) <= length:
                    continue  # already in the snapshot
                if start > length:  # the layer dropped messages (a slow reader): start over
                    length, asked = None, time.monotonic()
                    await layer.group_send(control_name(message.pk), {"type": "gen.resync"})
                    continue
                piece = text[length - start :]
                length = start + len(text)
                checked = time.monotonic()
                yield _event("delta", {"offset": length - len(piece), "text": piece})
    finally:
        reader.close()
        await layer.group_discard(group_name(message.pk), channel)


async def _unowned(message: Message, *, since: float) -> Message | None:
    """The message, when no generation owns it any more (finished, or its process died)."""
    fresh = await Message.objects.aget(pk=message.pk)
    if fresh.status != Message.Status.STREAMING:
        return fresh
    quiet = (timezone.now() - fresh.updated_at).total_seconds()
    stale = settings.WEB["OWNER_STALE_SECONDS"]
    if time.monotonic() - since > stale and quiet > stale:
        await sync_to_async(services.message_mark_interrupted)(message=fresh)
        return await Message.objects.aget(pk=message.pk)
    return None


@openai_errors("POST")
async def stop(request: HttpRequest, message_id: str) -> HttpResponse:
    principal = await authenticate(request)
    message = await amessage_get_for_account(
        account_id=principal.account_id, owner_id=principal.user_id, message_id=message_id
    )
    if message.status == Message.Status.STREAMING:
        await generation_stop(message.pk)
        deadline = time.monotonic() + STOP_WAIT_SECONDS
        while message.status == Message.Status.STREAMING and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            message = await Message.objects.aget(pk=message.pk)
    return JsonResponse(message_body(message))
