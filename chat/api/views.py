"""The generation endpoints of /v1 (chat and legacy completions, Anthropic and Gemini dialects).
Thin: parse, call the backend, encode."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import OperationalError as DatabaseOperationalError
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from opentelemetry.trace import Span

from chat import tracing
from chat.backends import registry
from chat.backends.base import (
    Accepted,
    Backend,
    BackendError,
    Event,
    GenerationRequest,
    ModelLoading,
    ModelUnavailable,
    Overloaded,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from chat.backends.wire.base import UpstreamFailed
from chat.billing.pricing import Price, price_for
from chat.billing.ratelimit import limiter, tightest_headers
from chat.executors import Busy
from chat.jsonbytes import dumps
from chat.metrics import FIRST_TOKEN, GENERATION

from . import cache, traced
from .anthropic import MessagesEncoder, anthropic_errors, parse_messages
from .auth import MODEL_TIER, Principal, authenticate
from .encoders import ChatEncoder, CompletionEncoder, Encoder
from .errors import ApiError, internal_error, rate_limited
from .gemini import GenerateContentEncoder, gemini_errors, parser_for
from .images import has_images, images_as_text, images_inline
from .metering import Meter, Unmetered, dialect_of
from .params import ParsedRequest, parse_chat, parse_completion, parse_json_object
from .streaming import ByteStreamResponse, collect, sse_body, until_revoked

logger = logging.getLogger(__name__)

View = Callable[..., Awaitable[HttpResponse]]


def openai_errors(*methods: str) -> Callable[[View], View]:
    """Every failure becomes an OpenAI error object; nothing else ever leaves a /v1 view."""

    def decorate(view: View) -> View:
        @functools.wraps(view)
        async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            response = await _respond(view, methods, request, *args, **kwargs)
            if "Server-Timing" not in response:
                response["Server-Timing"] = _server_timing(request, model=0.0)
            for header, value in getattr(request, "ratelimit_headers", {}).items():
                response[header] = value
            return response

        return csrf_exempt(wrapper)

    return decorate


async def _respond(
    view: View, methods: tuple[str, ...], request: HttpRequest, *args: Any, **kwargs: Any
) -> HttpResponse:
    try:
        if request.method not in methods:
            allowed = " or ".join(methods)
            raise ApiError(
                405, f"Method {request.method} is not allowed here; use {allowed}.", code="method_not_allowed"
            )
        return await view(request, *args, **kwargs)
    except ApiError as exc:
        return exc.response()
    except Http404 as exc:
        return ApiError(404, str(exc) or "Not found.", error_type="not_found_error", code="not_found").response()
    except BackendError as exc:
        return ApiError.from_backend(exc).response()
    except Busy as exc:  # a bounded pool (embeddings, OCR, fetches) is full
        return ApiError(
            503, str(exc), error_type="service_unavailable_error", code="server_overloaded", retry_after=2
        ).response()
    except DatabaseOperationalError:
        logger.exception("database unavailable in %s", request.path)
        return ApiError(
            503,
            "The service is temporarily unavailable; retry shortly.",
            error_type="service_unavailable_error",
            code="service_unavailable",
            retry_after=5,
        ).response()
    except Exception:
        logger.exception("unhandled error in %s", request.path)
        return internal_error().response()


# --- generation ------------------------------------------------------------------------


@openai_errors("POST")
async def chat_completions(request: HttpRequest) -> HttpResponse:
    return await _generate(request, parse_chat, ChatEncoder)


@openai_errors("POST")
async def completions(request: HttpRequest) -> HttpResponse:
    return await _generate(request, parse_completion, CompletionEncoder)


@gemini_errors
@openai_errors("POST")
async def gemini_generate(request: HttpRequest, version: str, model: str, method: str) -> HttpResponse:
    """Gemini's generateContent / streamGenerateContent (see chat/api/gemini.py)."""
    return await _generate(request, parser_for(model, method == "streamGenerateContent"), GenerateContentEncoder)


@anthropic_errors
@openai_errors("POST")
async def anthropic_messages(request: HttpRequest) -> HttpResponse:
    """Anthropic's Messages API over the same path (see chat/api/anthropic.py)."""
    return await _generate(request, parse_messages, MessagesEncoder)


async def _generate(
    request: HttpRequest,
    parse: Callable[[dict[str, Any], dict[str, Any]], ParsedRequest],
    encoder_class: type[Encoder],
) -> HttpResponse:
    principal = await authenticate(request)
    await count_request(request, principal)  # every request counts, malformed ones too
    body = parse_json_object(request_body(request))
    parsed = parse(body, settings.GHOSTGPT)
    _check_wallet_flag(body)

    def make_encoder(generation: GenerationRequest, meter: Meter) -> Encoder:
        return encoder_class(
            model=generation.model,
            choice_count=generation.choice_count,
            include_usage=parsed.include_usage,
            costs=meter.cost_fields,
            legacy_functions=parsed.legacy_functions,
        )

    return await serve(request, principal, parsed, make_encoder)


Finished = Callable[[Encoder, bool], Awaitable[None]]
DROPPED_TOOLS_HEADER = "X-GhostGPT-Dropped-Tools"


async def serve(
    request: HttpRequest,
    principal: Principal,
    parsed: ParsedRequest,
    make_encoder: Callable[[GenerationRequest, Meter], Encoder],
    finished: Finished | None = None,
) -> HttpResponse:
    """Admit, meter and run one parsed generation; the answer as SSE or one JSON body.
    `finished(encoder, failed)` runs once the answer is complete (after billing). Traced
    (chat.tracing) when the deployment exports traces: the span ends when the answer is
    billed, or with the error that ended the request before it began."""
    if not tracing.enabled():
        return await _serve(request, principal, parsed, make_encoder, finished, None)
    span = traced.start(request, principal, replace(parsed.generation, stream=parsed.stream), dialect_of(request.path))
    try:
        return await _serve(request, principal, parsed, make_encoder, finished, span)
    except BaseException as exc:
        if span.is_recording():  # not yet ended by the settlement
            tracing.failed(span, exc)
            span.set_attribute("http.response.status_code", getattr(exc, "status", 500))
            span.end()
        raise


async def _serve(
    request: HttpRequest,
    principal: Principal,
    parsed: ParsedRequest,
    make_encoder: Callable[[GenerationRequest, Meter], Encoder],
    finished: Finished | None,
    span: Span | None,
) -> HttpResponse:
    generation = replace(parsed.generation, stream=parsed.stream, trace=span)
    backend = backend_for(generation.model, principal)
    info = registry.canonical_info(backend)
    canonical = info.id
    request.metrics_model = canonical  # type: ignore[attr-defined]
    if span is not None:
        span.set_attribute("ghostgpt.model", canonical)
    asked = generation
    generation = await fit_request(generation, backend)
    dropped = bool(parsed.generation.tools) and not generation.tools and parsed.generation.tool_choice != "none"
    started = getattr(request, "started_at", time.perf_counter())
    meter = await meter_for(
        generation,
        backend,
        principal,
        request.request_id,  # type: ignore[attr-defined]
        dialect=dialect_of(request.path),
        started=started,
    )
    stream: Callable[[], AsyncIterator[Event]] = functools.partial(backend.stream, generation)
    answered: _Answered | None = None
    if parsed.fallbacks:
        meter, stream, answered = await _with_fallbacks(principal, parsed, generation, backend, meter)
    decision = None if parsed.fallbacks else await cache.decide(request, principal, asked, info)
    if decision is not None and decision.state == "hit":
        meter.cache_hit(settings.RESPONSE_CACHE["PRICE"])
        stream = cache.replay(decision.events)
    elif decision is not None and decision.state == "miss":
        stream = cache.recorded(stream, decision, generation.choice_count)
    meter.log_request(request.body)
    meter.trace = span
    with tracing.step(span, "wallet reserve"):
        await meter.admit()  # 429 / 402 before any model is contacted
    encoder = make_encoder(generation, meter)
    if answered is not None:  # a fallback list: the encoder names the model that answers
        answered.encoder = encoder

    async def settle(failed: bool) -> None:
        await meter.settle(reported=encoder.usage, delivered_tokens=encoder.delivered_tokens, failed=failed)
        if finished is not None:
            try:
                await finished(encoder, failed)
            except Exception:  # the answer stands; only what follows it is lost
                logger.exception("after-response step of %s failed", encoder.id)
        if span is not None:
            if encoder.usage is not None:
                tracing.past(span, "queue wait", waited_at, encoder.usage.queue_seconds)
            traced.finish(span, meter, encoder, failed=failed, cache=decision.state if decision else None)

    events = observed(until_revoked(stream(), principal.key_id), canonical, meter)
    waited, waited_at = time.perf_counter(), time.time()
    try:
        first = await anext(events)  # admission: errors up to here are still HTTP errors
        await meter.accepted(first)  # type: ignore[arg-type]
    except BaseException:
        await events.aclose()  # type: ignore[attr-defined]
        await meter.settle(reported=None, delivered_tokens=0, failed=True)
        raise
    waited = time.perf_counter() - waited
    if parsed.stream:
        ping = settings.GHOSTGPT["SSE_PING_SECONDS"]
        response = ByteStreamResponse(sse_body(events, encoder, first, ping, settle), content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        response["Server-Timing"] = _server_timing(request, model=waited)
    else:
        result = await collect(events, encoder, first, settle)
        response = HttpResponse(dumps(result), content_type="application/json")
        usage = encoder.usage or Usage(0, 0)
        response["Server-Timing"] = _server_timing(
            request, model=waited + usage.model_seconds, queue=usage.queue_seconds
        )
    if dropped:  # unsupported_tools: drop — served without them, and said so
        response[DROPPED_TOOLS_HEADER] = "function"
    if answered is not None and not parsed.stream:
        response[ANSWERED_BY_HEADER] = answered.model or canonical
    if decision is not None:
        response[cache.HEADER] = decision.state
    return response


ANSWERED_BY_HEADER = "X-GhostGPT-Model"
# Errors after which a client's fallback list tries its next model — the deployments' rules
# (connection errors, timeouts, 5xx, 429) and a local model that is busy or not loaded.
FALLBACK_ERRORS = (UpstreamFailed, Overloaded, ModelLoading, ModelUnavailable)


class _Answered:
    """Which model of a fallback list answered; told to the meter and the encoder before
    the first text goes out."""

    def __init__(self, meter: Meter) -> None:
        self.meter = meter
        self.encoder: Encoder | None = None
        self.model = ""

    def __call__(self, model: str, requested: str, price: Price) -> None:
        self.model = model
        self.meter.answered_by(model=model, requested_model=requested, price=price)
        if self.encoder is not None:
            self.encoder.model = requested


async def _with_fallbacks(
    principal: Principal, parsed: ParsedRequest, generation: GenerationRequest, backend: Backend, meter: Meter
) -> tuple[Meter, Callable[[], AsyncIterator[Event]], _Answered]:
    """OpenRouter's `models`: every model listed must be one the key may use (else the
    usual 404/403); the reservation is the largest worst case among them; each is tried in
    order until one has started answering."""
    candidates = [(generation, backend, meter)]
    for name in parsed.fallbacks:
        other = backend_for(name, principal)
        fitted = await fit_request(replace(generation, model=name), other)
        other_meter = await meter_for(
            fitted, other, principal, meter.request_id, dialect=meter.dialect, started=meter.started
        )
        candidates.append((fitted, other, other_meter))
    # The reserving meter: the dearest worst case; a local count never replaces its bound
    # (another model may answer).
    reserving = max((m for _, _, m in candidates), key=lambda m: m.price.worst_cost(m.prompt_bound, m.completion_bound))
    reserving.counted_locally = False
    answered = _Answered(reserving)

    async def stream() -> AsyncIterator[Event]:
        accepted, last = False, None
        for fitted, candidate, candidate_meter in candidates:
            attempt = candidate.stream(fitted)
            sent = False
            try:
                async for event in attempt:
                    if isinstance(event, Accepted):
                        if accepted:
                            continue  # the client has its headers from the first try
                        accepted = True
                    elif isinstance(event, TextDelta | ToolCallDelta) and not sent:
                        sent = True
                        answered(candidate_meter.model, fitted.model, candidate_meter.price)
                    yield event
                if not sent:
                    answered(candidate_meter.model, fitted.model, candidate_meter.price)
                return
            except FALLBACK_ERRORS as exc:
                if sent:
                    raise  # text already reached the client
                logger.warning("fallback model %s failed: %s", fitted.model, exc.message)
                last = exc
            finally:
                await attempt.aclose()  # type: ignore[attr-defined]
        assert last is not None
        raise last

    return reserving, stream, answered


async def observed(events: AsyncIterator[Event], model: str, meter: Meter) -> AsyncIterator[Event]:
    """The events, timing the first token and the whole generation for /metrics and the
    request's usage row."""
    first = True
    try:
        async for event in events:
            if first and isinstance(event, TextDelta | ToolCallDelta):
                first = False
                meter.first_token()
                FIRST_TOKEN.labels(model).observe(meter.first_token_seconds or 0.0)
            if meter.text_limit and isinstance(event, TextDelta | ToolCallDelta):
                meter.seen(event)
            yield event
    finally:
        GENERATION.labels(model).observe(time.perf_counter() - meter.started)
        await events.aclose()  # type: ignore[attr-defined]


async def meter_for(
    generation: GenerationRequest,
    backend: Backend,
    principal: Principal,
    request_id: str,
    *,
    dialect: str = "",
    started: float | None = None,
) -> Meter:
    """The request's Meter, priced by the canonical model id (an alias costs what its model costs)."""
    info = registry.canonical_info(backend)
    meter_class = Unmetered if principal.kind == MODEL_TIER.kind else Meter
    return meter_class(
        principal=principal,
        model=info.id,
        requested_model=generation.model,
        price=await price_for(info.id),
        request_id=request_id,
        request=generation,
        image_tokens=info.image_tokens,
        counted_locally="local_count" in backend.capabilities(),
        dialect=dialect,
        started=started,
    )


async def fit_request(generation: GenerationRequest, backend: Backend) -> GenerationRequest:
    """The request as this model can take it: function calling only where the backend has
    it (otherwise a clear 400, or — `unsupported_tools: drop` — served without the tools;
    `tool_choice: "none"` just drops them), images as images for vision backends and as
    text (facts + OCR) for the rest."""
    capabilities = backend.capabilities()
    if generation.tools and "tools" not in capabilities:
        policy = registry.canonical_info(backend).unsupported_tools or settings.GHOSTGPT["UNSUPPORTED_TOOLS"]
        if generation.tool_choice != "none" and policy != "drop":
            raise ApiError(
                400,
                f"Model '{generation.model}' does not support function calling ('tools'/'functions').",
                param="tools",
                code="unsupported_parameter",
            )
        generation = replace(generation, tools=(), tool_choice="auto")
    form = (generation.response_format or {}).get("type")
    if form is not None and form not in capabilities:
        detail = (
            "constrained to JSON by a grammar this server owns; schemas and grammars from requests are not"
            if form == "json_schema" and "json_object" in capabilities
            else "not supported"
        )
        raise ApiError(
            400,
            f"The '{form}' response format is not available on model '{generation.model}' ({detail}).",
            param="response_format",
            code="unsupported_parameter",
        )
    if has_images(generation):
        generation = await (images_inline if "vision" in capabilities else images_as_text)(generation)
    return generation


def _check_wallet_flag(body: dict[str, Any]) -> None:
    """GPTunnel's `useWalletBalance`: every account here has one wallet, which always pays;
    the flag is accepted for compatibility and must be a boolean."""
    flag = body.get("useWalletBalance")
    if flag is not None and not isinstance(flag, bool):
        raise ApiError(400, "Invalid type for 'useWalletBalance': expected a boolean.", param="useWalletBalance")


async def count_request(request: HttpRequest, principal: Principal, *, count: bool = True) -> None:
    """Count the request against the key's limits (one Redis round trip); 429 when over."""
    if principal.kind == MODEL_TIER.kind:  # a model server: the web tier counted it
        return
    state = await limiter().hit(principal.limits, count=count)
    own = await limiter().hit(principal.key_limits, count=count) if principal.key_limits is not None else None
    request.ratelimit_headers = tightest_headers(state, own)  # type: ignore[attr-defined]
    for checked, whose in ((own, "this key"), (state, "this account (all its keys)")):
        if count and checked is not None and (checked.over_requests or checked.over_tokens):
            kind = "requests" if checked.over_requests else "tokens"
            limit = checked.limits.rpm if checked.over_requests else checked.limits.tpm
            window = settings.GHOSTGPT["RATE_WINDOW_SECONDS"]
            message = (
                f"Rate limit reached for {kind}: {limit} per {window}s on {whose}. "
                f"Retry after {checked.reset_seconds}s."
            )
            raise rate_limited(message, kind=kind, retry_after=checked.reset_seconds)


def request_body(request: HttpRequest) -> bytes:
    try:
        return request.body
    except RequestDataTooBig:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raise ApiError(
            413, f"The request body is larger than this server accepts ({limit} bytes).", code="request_too_large"
        ) from None


def backend_for(model: str, principal: Principal) -> Backend:
    backend = registry.resolve(model)
    if backend is None or not (principal.may_use(model) or principal.may_use(registry.canonical_info(backend).id)):
        raise ApiError(
            404,
            f"The model '{model}' does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )
    return backend


def _server_timing(request: HttpRequest, *, model: float, queue: float = 0.0) -> str:
    """Gateway time = everything this process did itself, apart from waiting for the model."""
    total = time.perf_counter() - getattr(request, "started_at", time.perf_counter())
    gateway = max(total - model - queue, 0.0)
    return f"gateway;dur={gateway * 1000:.2f}, queue;dur={queue * 1000:.2f}, model;dur={model * 1000:.2f}"
