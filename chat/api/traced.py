"""The trace of one generation request (chat.tracing): its span's attributes when it starts
and when it is billed."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from opentelemetry.trace import Span, Status, StatusCode

from chat import tracing
from chat.backends.base import GenerationRequest

from .auth import Principal
from .encoders import Encoder
from .metering import Meter


def start(request: HttpRequest, principal: Principal, generation: GenerationRequest, dialect: str) -> Span:
    operation = tracing.OPERATIONS.get(dialect, "chat")
    sampling = generation.sampling
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": operation,
        "gen_ai.request.model": generation.model,
        "gen_ai.request.max_tokens": sampling.max_tokens,
        "gen_ai.request.temperature": sampling.temperature,
        "gen_ai.request.top_p": sampling.top_p,
        "gen_ai.request.seed": sampling.seed,
        "gen_ai.request.choice.count": generation.choice_count,
        "gen_ai.request.stream": generation.stream,
        "gen_ai.request.stop_sequences": list(sampling.stop) or None,
        "http.request.method": request.method,
        "url.path": request.path,
        "ghostgpt.dialect": dialect,
        "ghostgpt.request_id": getattr(request, "request_id", None),
        "ghostgpt.account_id": principal.account_id,
        "ghostgpt.key_id": principal.key_id,
    }
    if tracing.content_captured():
        messages = [{"role": m.role, "content": m.content} for m in generation.messages] or [
            {"role": "user", "content": p if isinstance(p, str) else "(token ids)"} for p in generation.prompts
        ]
        attributes["gen_ai.input.messages"] = json.dumps(messages, ensure_ascii=False)
    return tracing.start_request(f"{operation} {generation.model}", attributes, request.headers)


def finish(span: Span, meter: Meter, encoder: Encoder, *, failed: bool, cache: str | None) -> None:
    """What the request was answered with and billed, then the span's end."""
    usage = meter.billed
    if usage is not None:
        span.set_attributes(
            {
                "gen_ai.usage.input_tokens": usage.prompt_tokens,
                "gen_ai.usage.output_tokens": usage.completion_tokens,
                "gen_ai.usage.cache_read.input_tokens": usage.cached_tokens,
                "gen_ai.usage.cache_creation.input_tokens": usage.cache_write_tokens,
                "gen_ai.usage.reasoning.output_tokens": usage.reasoning_tokens,
                "ghostgpt.usage.estimated": usage.estimated,
            }
        )
    span.set_attributes(
        tracing.present(
            {
                "gen_ai.response.id": encoder.id,
                "gen_ai.response.model": meter.model,
                "gen_ai.response.finish_reasons": [reason for reason in encoder.finish if reason] or None,
                "gen_ai.response.time_to_first_chunk": meter.first_token_seconds,
                "ghostgpt.cost": float(meter.billed_cost),
                "ghostgpt.currency": settings.GHOSTGPT["CURRENCY"],
                "ghostgpt.cache": cache,
                "http.response.status_code": 200,
            }
        )
    )
    if tracing.content_captured():
        answers = ["".join(text) for text in encoder.texts]
        span.set_attribute(
            "gen_ai.output.messages",
            json.dumps([{"role": "assistant", "content": text} for text in answers], ensure_ascii=False),
        )
    if failed:
        span.set_status(Status(StatusCode.ERROR, "the answer ended in an error"))
    span.end()
