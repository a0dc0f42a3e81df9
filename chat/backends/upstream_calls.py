"""One try against one deployment of a routed model (chat.backends.upstream): the HTTP
request, the answer read as our events through the upstream's wire (a stream, or one whole
JSON body), the embeddings bodies for OpenAI's and Gemini's shapes, and the mapping of an
upstream's errors to the exceptions failover acts on. Every body read is bounded."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import aiohttp

from chat.jsonbytes import loads

from .base import Accepted, Event, GenerationRequest
from .wire.base import UpstreamBusy, UpstreamFailed, UpstreamRejected, UpstreamTimeout, estimate_prompt_tokens

if TYPE_CHECKING:
    from .upstream import Deployment, Upstream

ERROR_BODY_LIMIT = 4096
ANSWER_BODY_LIMIT = 64 * 1024 * 1024  # a whole chat answer: far beyond any model's max_tokens as JSON


def embeddings_request(kind: str, model: str, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """OpenAI's /embeddings body, or Gemini's batchEmbedContents (text inputs; a dimension
    count as outputDimensionality)."""
    if kind != "gemini":
        return "/embeddings", {**body, "model": model}
    requests = []
    for item in body["input"]:
        if not isinstance(item, str):
            raise UpstreamRejected("Gemini embeds text: token-id inputs are not supported by this model.")
        request: dict[str, Any] = {"model": f"models/{model}", "content": {"parts": [{"text": item}]}}
        if body.get("dimensions") is not None:
            request["outputDimensionality"] = body["dimensions"]
        requests.append(request)
    return f"/models/{model}:batchEmbedContents", {"requests": requests}


def embeddings_answer(kind: str, data: Any, body: dict[str, Any]) -> Any:
    """Gemini's `{"embeddings": [{"values": [...]}]}` as OpenAI's list (no usage: the byte
    bound is billed); OpenAI's as it came."""
    if kind != "gemini":
        return data
    vectors = data.get("embeddings") if isinstance(data, dict) else None
    if not isinstance(vectors, list):
        return None
    items = []
    for i, vector in enumerate(vectors):
        values = vector.get("values") if isinstance(vector, dict) else None
        if not isinstance(values, list):
            return None
        encoded: Any = values
        if body.get("encoding_format") == "base64":
            encoded = base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode("ascii")
        items.append({"object": "embedding", "index": i, "embedding": encoded})
    return {"object": "list", "data": items}


async def post(
    upstream: Upstream,
    path: str,
    body: dict[str, Any],
    params: dict[str, str] | None = None,
    timeout: aiohttp.ClientTimeout | None = None,
    extra_headers: dict[str, str] | None = None,
) -> aiohttp.ClientResponse:
    """POST to the upstream; a timeout or a connection failure is an UpstreamFailed (the
    caller fails over). `timeout`: instead of the session's; `extra_headers`: beside the
    upstream's own (a trace's `traceparent`)."""
    session = upstream.session()
    try:
        return await session.post(
            upstream.base_url + path,
            params=params or None,
            json=body,
            headers={**upstream.headers(), **extra_headers} if extra_headers else upstream.headers(),
            timeout=timeout or session.timeout,
        )
    except TimeoutError:
        raise UpstreamTimeout(f"The upstream '{upstream.name}' did not answer in time.") from None
    except aiohttp.ClientError as exc:
        raise UpstreamFailed(f"Could not reach the upstream '{upstream.name}' ({type(exc).__name__}).") from None


async def try_deployment(
    deployment: Deployment, request: GenerationRequest, trace_headers: dict[str, str] | None = None
) -> AsyncIterator[Event]:
    upstream = deployment.upstream
    outgoing = upstream.wire.prepare(deployment.model, request)
    whole = outgoing.body.get("stream") is False
    timeout = None
    if whole:  # nothing arrives before the whole answer: its own bound, not the per-read one
        timeout = aiohttp.ClientTimeout(
            total=upstream.answer_timeout,
            connect=upstream.connect_timeout,
            sock_connect=upstream.connect_timeout,
            sock_read=None,
        )
    response = await post(upstream, outgoing.path, outgoing.body, outgoing.params, timeout, trace_headers)
    try:
        if response.status >= 400:
            await raise_for(response, upstream)
        # A fingerprint of the deployment (like OpenAI's: which configuration answered),
        # without naming the upstream.
        fingerprint = "fp_" + hashlib.sha256(deployment.label.encode()).hexdigest()[:10]
        yield Accepted(prompt_tokens=estimate_prompt_tokens(request), system_fingerprint=fingerprint)
        if whole and response.content_type != "text/event-stream":
            for event in await _whole(response, upstream, request):
                yield event
            return
        async for event in _events(response, upstream, request):
            yield event
    finally:
        if response.content.at_eof():
            await response.release()  # read to the end: the connection goes back to the pool
        else:
            response.close()  # closing the connection is what cancels the upstream's work


async def read_body(response: aiohttp.ClientResponse, upstream: Upstream, limit: int) -> bytes:
    """The whole body, refused (UpstreamFailed) beyond `limit` bytes; a cut or a timeout
    while reading it is an UpstreamFailed too."""
    if (response.content_length or 0) > limit:
        raise UpstreamFailed(f"The upstream '{upstream.name}' answered more than this server reads.")
    pieces, size = [], 0
    try:
        async for piece in response.content.iter_any():
            size += len(piece)
            if size > limit:
                raise UpstreamFailed(f"The upstream '{upstream.name}' answered more than this server reads.")
            pieces.append(piece)
    except TimeoutError:
        raise UpstreamTimeout(f"The upstream '{upstream.name}' did not finish its answer in time.") from None
    except aiohttp.ClientError as exc:
        raise UpstreamFailed(f"The upstream '{upstream.name}' broke off ({type(exc).__name__}).") from None
    return b"".join(pieces)


async def _whole(response: aiohttp.ClientResponse, upstream: Upstream, request: GenerationRequest) -> list[Event]:
    """A whole JSON answer → our events, through the upstream's wire."""
    raw = await read_body(response, upstream, ANSWER_BODY_LIMIT)
    try:
        payload = loads(raw)
    except ValueError:
        raise UpstreamFailed(f"The upstream '{upstream.name}' answered with something that is not JSON.") from None
    translator = upstream.wire.translator(request, upstream.name)
    return [*translator.whole(payload), *translator.close()]


async def raise_for(response: aiohttp.ClientResponse, upstream: Upstream) -> None:
    try:
        raw = await response.content.read(ERROR_BODY_LIMIT)
    except (aiohttp.ClientError, TimeoutError):
        raw = b""
    message = upstream.wire.error_message(raw)
    status = response.status
    if status == 429:
        raise UpstreamBusy(
            f"The upstream '{upstream.name}' is rate limiting (429).", retry_after=_retry_after(response)
        )
    if status in (400, 404, 413, 422):
        raise UpstreamRejected(f"The upstream refused the request: {message}" if message else "The upstream refused.")
    if status in (503, 529):
        raise UpstreamBusy(f"The upstream '{upstream.name}' is overloaded or loading ({status}).")
    raise UpstreamFailed(f"The upstream '{upstream.name}' answered HTTP {status}.")


def _retry_after(response: aiohttp.ClientResponse) -> int | None:
    try:
        return int(response.headers.get("retry-after", ""))
    except ValueError:
        return None


async def _events(
    response: aiohttp.ClientResponse, upstream: Upstream, request: GenerationRequest
) -> AsyncIterator[Event]:
    """Upstream SSE → our events, through the upstream's wire. The body's lines are split
    from the chunks as they arrive, here rather than in a generator of lines (a stream of 33
    events was ~80 more generator steps), with no line-length limit (a Gemini chunk carries
    a whole function call). The first event must come within the first-token timeout;
    after it the session's `sock_read` (the upstream's read_timeout) bounds each wait, so no
    per-read timer costs anything on the hot path."""
    translator = upstream.wire.translator(request, upstream.name)
    chunks = response.content.iter_any()
    waiting_first = True
    name = ""
    pending = b""
    ended = False
    while not ended:  # to the end of the body, so the connection goes back to the pool
        try:
            if waiting_first:
                chunk = await asyncio.wait_for(anext(chunks), upstream.first_token_timeout)
            else:
                chunk = await anext(chunks)
        except StopAsyncIteration:
            ended, chunk = True, b"\n"  # the last line may lack its newline
        except TimeoutError:
            if translator.complete:
                break
            waited = upstream.first_token_timeout if waiting_first else upstream.read_timeout
            raise UpstreamTimeout(f"The upstream '{upstream.name}' stopped sending for {waited:.0f}s.") from None
        except aiohttp.ClientError as exc:
            if translator.complete:
                break
            raise UpstreamFailed(f"The upstream '{upstream.name}' broke off ({type(exc).__name__}).") from None
        pending += chunk
        if b"\n" not in chunk:
            continue
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line.startswith(b"event:"):
                name = line[6:].strip().decode()
                continue
            if not line.startswith(b"data:"):
                continue  # blank lines, comments (": ping")
            data = line[5:].strip()
            try:
                payload: Any = "[DONE]" if data == b"[DONE]" else loads(data)
            except ValueError:
                raise UpstreamFailed(f"The upstream '{upstream.name}' sent a chunk that is not JSON.") from None
            if name != "ping":
                waiting_first = False
            if translator.complete:
                continue  # anything after the end is ignored
            for event in translator.feed(name, payload):
                yield event
            name = ""
    for event in translator.close():
        yield event
