"""`POST /v1/embeddings`, OpenAI's shape: `input` as a string, strings, token ids or arrays
of them; `encoding_format` float or base64 (little-endian float32, what the SDKs decode);
`dimensions` only where the model has them; billed and rate limited like every /v1 call
(the prompt is counted exactly before the model runs)."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import orjson
from django.http import HttpRequest, HttpResponse

from chat.backends import registry
from chat.backends.base import Accepted, GenerationRequest, SamplingParams, Usage
from chat.backends.embeddings import DIMENSIONS, embed_pool

from .auth import Principal, authenticate
from .errors import ApiError, bad_request
from .metering import Meter
from .params import parse_json_object
from .views import backend_for, count_request, meter_for, openai_errors, request_body

MAX_INPUTS = 2048


def parse_input(value: Any) -> list[str | tuple[int, ...]]:
    def is_token(item: Any) -> bool:
        return isinstance(item, int) and not isinstance(item, bool)

    if isinstance(value, str):
        items: list[Any] = [value]
    elif isinstance(value, list) and value and all(is_token(t) for t in value):
        items = [tuple(value)]
    elif isinstance(value, list) and value:
        items = value
    else:
        raise bad_request(
            "input: expected a non-empty string, array of strings, or array of token arrays.", param="input"
        )
    if len(items) > MAX_INPUTS:
        raise bad_request(f"input: at most {MAX_INPUTS} inputs per request.", param="input")
    parsed: list[str | tuple[int, ...]] = []
    for i, item in enumerate(items):
        if isinstance(item, str) and item:
            parsed.append(item)
        elif isinstance(item, tuple) or (isinstance(item, list) and item and all(is_token(t) for t in item)):
            parsed.append(tuple(item))
        else:
            raise bad_request(f"input[{i}]: expected a non-empty string or array of token ids.", param="input")
    return parsed


@openai_errors("POST")
async def create_embeddings(request: HttpRequest) -> HttpResponse:
    principal = await authenticate(request)
    await count_request(request, principal)
    body = parse_json_object(request_body(request))
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("model: Field required (a model id string).", param="model")
    inputs = parse_input(body.get("input"))
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise bad_request("encoding_format: expected 'float' or 'base64'.", param="encoding_format")
    dimensions = body.get("dimensions")
    if dimensions is not None and (not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1):
        raise bad_request("dimensions: expected a positive integer.", param="dimensions")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise bad_request("user: expected a string.", param="user")
    backend = backend_for(model, principal)
    request.metrics_model = registry.canonical_info(backend).id  # type: ignore[attr-defined]
    if "embeddings" not in backend.capabilities():
        raise ApiError(400, f"Model '{model}' does not create embeddings.", param="model", code="unsupported_model")
    local = "local_count" in backend.capabilities()  # the embedded model; else a routed upstream
    if local and dimensions is not None and dimensions != DIMENSIONS:
        raise ApiError(
            400,
            f"Model '{model}' makes {DIMENSIONS}-dimension vectors and cannot shorten them ('dimensions').",
            param="dimensions",
            code="unsupported_parameter",
        )
    # Billing reuses the generation meter: the inputs are the prompt, nothing is generated.
    generation = GenerationRequest(model=model, sampling=SamplingParams(max_tokens=0), prompts=tuple(inputs), user=user)
    meter = await meter_for(
        generation,
        backend,
        principal,
        request.request_id,  # type: ignore[attr-defined]
        dialect="embeddings",
        started=getattr(request, "started_at", None),
    )
    await meter.admit()  # the byte bound held (TPM) and, for an upstream, reserved
    usage: Usage | None = None
    try:
        if local:
            data, usage = await _embed_here(backend, meter, inputs, encoding)
        else:
            data, usage = await _embed_upstream(backend, meter, inputs, encoding, dimensions, user)
    finally:
        await meter.settle(reported=usage, delivered_tokens=0, failed=usage is None)
    billed = meter.billable(usage, 0)
    payload = {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {
            "prompt_tokens": billed.prompt_tokens,
            "total_tokens": billed.prompt_tokens,
            **meter.cost_fields(billed),
        },
    }
    return _json(payload)


Embedded = tuple[list[dict[str, Any]], Usage]


async def _embed_here(backend: Any, meter: Meter, inputs: list[str | tuple[int, ...]], encoding: str) -> Embedded:
    """The embedded model: counted exactly on the embedding pool (off the event loop), the
    exact cost reserved (or 402) before the model runs."""
    tokens = await embed_pool.run(backend.tokenize, inputs)
    counted = sum(len(t) for t in tokens)
    await meter.accepted(Accepted(prompt_tokens=counted))
    vectors = await backend.embed(tokens)
    data = [{"object": "embedding", "index": i, "embedding": _encoded(v, encoding)} for i, v in enumerate(vectors)]
    return data, Usage(counted, 0)


async def _embed_upstream(
    backend: Any,
    meter: Meter,
    inputs: list[str | tuple[int, ...]],
    encoding: str,
    dimensions: int | None,
    user: str | None,
) -> Embedded:
    """A routed model: its reported count is billed (clamped to the bound reserved)."""
    body: dict[str, Any] = {
        "input": [item if isinstance(item, str) else list(item) for item in inputs],
        "encoding_format": encoding,
    }
    if dimensions is not None:
        body["dimensions"] = dimensions
    if user is not None:
        body["user"] = user
    answer = await backend.embed(body)
    reported = answer.get("usage") if isinstance(answer.get("usage"), dict) else {}
    prompt_tokens = reported.get("prompt_tokens")
    data = [
        {"object": "embedding", "index": item.get("index", i), "embedding": item.get("embedding")}
        for i, item in enumerate(answer["data"])
        if isinstance(item, dict)
    ]
    return data, Usage(prompt_tokens if isinstance(prompt_tokens, int) else meter.prompt_bound, 0)


MAX_DIMENSIONS = 4096  # the longest vectors a document's passages keep (text-embedding-3-large: 3072)


async def embed_billed(principal: Principal, backend: Any, texts: list[str], *, request_id: str) -> np.ndarray:
    """`texts` embedded by a routed embeddings model for work that is not a /v1 request (a
    document's passages, a chat turn's question), metered as /v1/embeddings is: priced by the
    canonical model id, the byte bound held and reserved before the upstream is called (429 /
    402 otherwise), the upstream's count billed. One float32 row per text, as it answered."""
    generation = GenerationRequest(
        model=registry.canonical_info(backend).id, sampling=SamplingParams(max_tokens=0), prompts=tuple(texts)
    )
    meter = await meter_for(generation, backend, principal, request_id, dialect="documents")
    await meter.admit()
    usage: Usage | None = None
    try:
        data, usage = await _embed_upstream(backend, meter, list(texts), "base64", None, None)
    finally:
        await meter.settle(reported=usage, delivered_tokens=0, failed=usage is None)
    return _vectors(data, len(texts), backend)


def _vectors(data: list[dict[str, Any]], count: int, backend: Any) -> np.ndarray:
    """The answer's vectors by their index (base64 little-endian float32, or numbers); 502
    for an answer that is not one vector of one length per text."""
    model = registry.canonical_info(backend).id
    rows: dict[int, np.ndarray] = {}
    try:
        for item in data:
            value = item["embedding"]
            vector = (
                np.frombuffer(base64.b64decode(value), dtype="<f4")
                if isinstance(value, str)
                else np.asarray(value, dtype=np.float32)
            )
            rows[int(item["index"])] = vector.astype(np.float32)
    except (KeyError, TypeError, ValueError) as exc:
        message = f"The embeddings model '{model}' answered a malformed vector."
        raise ApiError(502, message, error_type="server_error") from exc
    lengths = {len(v) for v in rows.values()}
    if sorted(rows) != list(range(count)) or len(lengths) != 1:
        raise ApiError(
            502,
            f"The embeddings model '{model}' answered {len(rows)} vectors of {len(lengths)} lengths for {count} texts.",
            error_type="server_error",
        )
    (length,) = lengths
    if not 1 <= length <= MAX_DIMENSIONS:
        raise ApiError(
            502,
            f"The embeddings model '{model}' makes {length}-dimension vectors; "
            f"documents keep at most {MAX_DIMENSIONS}.",
            error_type="server_error",
        )
    return np.stack([rows[i] for i in range(count)])


def _json(payload: dict[str, Any]) -> HttpResponse:
    """orjson: 2,048 vectors as JSON numbers cost the stdlib encoder ~1 s; orjson ~30 ms."""
    return HttpResponse(orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), content_type="application/json")


def _encoded(vector: np.ndarray, encoding: str) -> Any:
    if encoding == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector  # orjson writes float32 arrays itself: shortest round-trip digits, in C
