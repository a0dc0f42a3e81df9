"""What a key may see of the /v1 surface: the models it may use (OpenAI's list shape, or
Anthropic's / Gemini's when the client's headers say so), one model, the /v1 root, and the
JSON 404 / 500 for paths this server does not serve."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from chat.backends import registry
from chat.billing.pricing import price_for, price_parts

from .auth import Principal, authenticate
from .errors import ApiError, error_payload, internal_error
from .gemini import gemini_errors
from .views import count_request, openai_errors

API_PATHS = ["/v1/models", "/v1/chat/completions", "/v1/completions", "/v1/messages", "/v1/responses"]


async def _visible_models(principal: Principal) -> list[dict[str, Any]]:
    """The models this key may use, with their price and context length."""
    visible = []
    for info, backend in registry.all_models():
        canonical = registry.canonical_info(backend).id
        if principal.may_use(info.id) or principal.may_use(canonical):
            price = await price_for(canonical)  # an alias costs what its model costs
            visible.append(
                {
                    "id": info.id,
                    "object": "model",
                    "created": info.created,
                    "owned_by": info.owned_by,
                    "context_length": info.context_length,
                    # What the chat's model picker shows: embedding models are not offered
                    # there; where the model runs (local, routed, agents).
                    "mode": "chat" if registry.can_chat(backend) else "embedding",
                    "source": info.source,
                    "pricing": {"currency": settings.GHOSTGPT["CURRENCY"], **price_parts(price, float)},
                }
            )
    return visible


@openai_errors("GET")
async def list_models(request: HttpRequest) -> HttpResponse:
    return await _models_response(request)


async def _models_response(request: HttpRequest, shape: str = "") -> HttpResponse:
    """OpenAI's list shape, or Anthropic's / Gemini's when the client's headers say so."""
    principal = await authenticate(request)
    await count_request(request, principal, count=False)
    models = await _visible_models(principal)
    if shape == "gemini" or "x-goog-api-key" in request.headers:
        return JsonResponse(
            {
                "models": [
                    {
                        "name": f"models/{m['id']}",
                        "baseModelId": m["id"],
                        "displayName": m["id"],
                        "inputTokenLimit": m["context_length"],
                        "outputTokenLimit": settings.GHOSTGPT["MAX_TOKENS_MAX"],
                        "supportedGenerationMethods": ["generateContent", "streamGenerateContent"],
                    }
                    for m in models
                ]
            }
        )
    if "anthropic-version" in request.headers:  # the anthropic SDK's models.list()
        data = [
            {
                "type": "model",
                "id": m["id"],
                "display_name": m["id"],
                "created_at": datetime.fromtimestamp(m["created"], tz=UTC).isoformat().replace("+00:00", "Z"),
            }
            for m in models
        ]
        first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
        return JsonResponse({"data": data, "has_more": False, "first_id": first, "last_id": last})
    return JsonResponse({"object": "list", "data": models})


@openai_errors("GET")
async def retrieve_model(request: HttpRequest, model: str) -> HttpResponse:
    principal = await authenticate(request)
    await count_request(request, principal, count=False)
    for item in await _visible_models(principal):
        if item["id"] == model:
            return JsonResponse(item)
    raise ApiError(
        404,
        f"The model '{model}' does not exist or you do not have access to it.",
        param="model",
        code="model_not_found",
    )


@gemini_errors
@openai_errors("GET")
async def gemini_models(request: HttpRequest) -> HttpResponse:
    return await _models_response(request, shape="gemini")


@openai_errors("GET")
async def api_root(request: HttpRequest) -> HttpResponse:
    return JsonResponse(
        {
            "object": "api_root",
            "message": "This is the base URL for OpenAI-compatible clients, not a web page. "
            "Point your SDK here (base_url=.../v1) and send your API key as a Bearer token.",
            "endpoints": API_PATHS,
        }
    )


@csrf_exempt  # any method: a POST to a path we do not serve is a JSON 404, never Django's CSRF page
def unknown_path(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """404 for any path we do not serve, with a hint toward the /v1 routes."""
    path = request.path
    suggestion = "/v1" + path if not path.startswith("/v1") and "/v1" + path.rstrip("/") in API_PATHS else None
    hint = (
        f"Did you mean {suggestion}?"
        if suggestion
        else f"OpenAI-compatible routes live under /v1: {', '.join(API_PATHS)}."
    )
    return JsonResponse(
        error_payload(f"Unknown path {path}. {hint}", "invalid_request_error", code="unknown_url"), status=404
    )


def server_error(request: HttpRequest) -> HttpResponse:
    return internal_error().response()
