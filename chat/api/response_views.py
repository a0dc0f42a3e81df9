"""`/v1/responses`: OpenAI's Responses API (see chat/api/responses.py). Thin: parse, serve
through the same path as every /v1 generation, keep the response when asked to."""

from __future__ import annotations

import json
import time
from typing import Any

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse

from chat import db
from chat.backends.base import GenerationRequest
from chat.selectors import stored_response_get
from chat.services import stored_response_delete, stored_response_save, stored_responses_purge

from .auth import authenticate
from .encoders import Encoder
from .errors import ApiError, bad_request
from .metering import Meter
from .params import parse_json_object
from .responses import parse_responses
from .responses_stream import ResponsesEncoder
from .views import DROPPED_TOOLS_HEADER, count_request, openai_errors, request_body, serve

PURGE_EVERY_SECONDS = 3600.0
_last_purge = [0.0]


@openai_errors("POST")
async def create_response(request: HttpRequest) -> HttpResponse:
    principal = await authenticate(request)
    await count_request(request, principal)
    body = parse_json_object(request_body(request))
    history: list[dict[str, Any]] = []
    previous_id = body.get("previous_response_id")
    if isinstance(previous_id, str) and previous_id:
        try:
            previous = await stored_response_get(account_id=principal.account_id, response_id=previous_id)
        except Http404:
            raise ApiError(
                404,
                f"Previous response with id '{previous_id}' not found.",
                param="previous_response_id",
                error_type="invalid_request_error",
                code="previous_response_not_found",
            ) from None
        history = [*previous.context, *previous.input_items, *previous.body.get("output", [])]
        # Each stored response keeps its whole conversation: bounded, or a chain of requests
        # would grow storage quadratically for free.
        if len(json.dumps(history)) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            raise bad_request(
                "previous_response_id: the conversation is too long to continue; start a new one "
                "with the context you need in `input`.",
                param="previous_response_id",
            )
    parsed = parse_responses(body, settings.GHOSTGPT, history)

    def make_encoder(generation: GenerationRequest, meter: Meter) -> Encoder:
        return ResponsesEncoder(echo=parsed.echo, model=generation.model, choice_count=1, costs=meter.cost_fields)

    async def finished(encoder: Encoder, failed: bool) -> None:
        assert isinstance(encoder, ResponsesEncoder)
        if parsed.store:
            await stored_response_save(
                account_id=principal.account_id,
                key_id=principal.key_id,
                body=encoder.final_response(failed),
                context=history,
                input_items=parsed.items,
            )
        if time.monotonic() - _last_purge[0] > PURGE_EVERY_SECONDS:  # without a Celery beat too
            _last_purge[0] = time.monotonic()
            await db.run(stored_responses_purge)

    response = await serve(request, principal, parsed.parsed, make_encoder, finished)
    if parsed.dropped_tools:  # built-in tools this deployment cannot run: served without them
        also = [name for name in response.get(DROPPED_TOOLS_HEADER, "").split(",") if name]
        response[DROPPED_TOOLS_HEADER] = ",".join([*parsed.dropped_tools, *also])
    return response


@openai_errors("GET", "DELETE")
async def response_detail(request: HttpRequest, response_id: str) -> HttpResponse:
    principal = await authenticate(request)
    await count_request(request, principal)
    stored = await stored_response_get(account_id=principal.account_id, response_id=response_id)
    if request.method == "DELETE":
        await stored_response_delete(response=stored)
        return JsonResponse({"id": stored.pk, "object": "response", "deleted": True})
    return JsonResponse(stored.body, json_dumps_params={"ensure_ascii": False})


@openai_errors("GET")
async def response_input_items(request: HttpRequest, response_id: str) -> HttpResponse:
    """The response's input items, newest first by default, paginated like OpenAI's lists
    (`limit` 1–100, `order` asc/desc, `after` / `before` an item id)."""
    principal = await authenticate(request)
    await count_request(request, principal)
    stored = await stored_response_get(account_id=principal.account_id, response_id=response_id)
    items = list(stored.input_items)
    order = request.GET.get("order", "desc")
    if order not in ("asc", "desc"):
        raise bad_request("order: expected 'asc' or 'desc'.", param="order")
    if order == "desc":
        items.reverse()
    try:
        limit = int(request.GET.get("limit", "20"))
    except ValueError:
        raise bad_request("limit: expected an integer from 1 to 100.", param="limit") from None
    if not 1 <= limit <= 100:
        raise bad_request("limit: expected an integer from 1 to 100.", param="limit")
    ids = [item["id"] for item in items]
    for name in ("after", "before"):
        cursor = request.GET.get(name)
        if cursor is not None and cursor not in ids:
            raise bad_request(f"{name}: no input item with id '{cursor}' in this response.", param=name)
    if request.GET.get("after"):
        items = items[ids.index(request.GET["after"]) + 1 :]
    if request.GET.get("before"):
        items = items[: [item["id"] for item in items].index(request.GET["before"])]
    page = items[:limit]
    return JsonResponse(
        {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(items) > limit,
        },
        json_dumps_params={"ensure_ascii": False},
    )
