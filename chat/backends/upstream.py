"""OpenAI-compatible upstreams (vLLM, llama.cpp server, Ollama, OpenAI, OpenRouter, another
GhostGPT) behind one public model id, with failover.

A `RoutedModel` is the Backend for one public model id. It holds the operator's
deployments (upstream + upstream model + priority + weight) and, per request:
- tries deployments in order: healthy ones by priority, weighted-random within a
  priority; those whose circuit is open (3 failures in a row) only after the rest;
- fails over on connect errors, timeouts, 429 and 5xx — and, before any generated text
  has been sent, on a first-token timeout or a broken stream; after the first text a
  failure ends the stream (the view turns it into an error event + [DONE]);
- asks for `stream_options.include_usage` and bills the upstream's usage; when an
  upstream sends none, what was delivered is billed, flagged as estimated;
- closes the upstream connection when the client goes away, streaming or not.
Upstream keys come from the operator's config only and never appear in answers or logs.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from .base import (
    Accepted,
    BackendError,
    Event,
    Finish,
    GenerationRequest,
    ModelInfo,
    Readiness,
    TextDelta,
    Usage,
)

logger = logging.getLogger(__name__)

CIRCUIT_FAILURES = 3  # consecutive failures that open a deployment's circuit
CIRCUIT_SECONDS = 30.0  # how long an open circuit is skipped (then one trial request)
ERROR_BODY_LIMIT = 4096


class UpstreamFailed(BackendError):
    """An upstream could not answer: another deployment may."""

    status = 502
    error_type = "upstream_error"
    code = "upstream_error"


class UpstreamTimeout(UpstreamFailed):
    status = 504
    error_type = "timeout_error"
    code = "upstream_timeout"


class UpstreamBusy(UpstreamFailed):
    status = 503
    error_type = "service_unavailable_error"
    code = "upstream_overloaded"


class UpstreamRejected(BackendError):
    """The upstream refused the request itself (400/404/422): no other deployment would
    accept it either, so it goes back to the client."""

    status = 400
    error_type = "invalid_request_error"
    code = "upstream_rejected_request"


@dataclass
class Upstream:
    """One operator-configured server speaking the OpenAI API."""

    name: str
    base_url: str  # ends with /v1 (or wherever /chat/completions lives)
    api_key: str = field(default="", repr=False)
    connect_timeout: float = 5.0
    first_token_timeout: float = 60.0
    read_timeout: float = 120.0
    _clients: dict[int, httpx.AsyncClient] = field(default_factory=dict, repr=False)

    def client(self) -> httpx.AsyncClient:
        """One keep-alive client per event loop."""
        loop = id(asyncio.get_running_loop())
        if loop not in self._clients:
            timeout = httpx.Timeout(self.read_timeout, connect=self.connect_timeout)
            limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
            self._clients[loop] = httpx.AsyncClient(timeout=timeout, limits=limits, trust_env=False)
        return self._clients[loop]

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


@dataclass
class Deployment:
    upstream: Upstream
    model: str  # the upstream's own model id
    priority: int = 0
    weight: float = 1.0
    # Passive health.
    failures_in_row: int = 0
    open_until: float = 0.0
    requests: int = 0
    errors: int = 0
    latency_ewma: float | None = None

    @property
    def label(self) -> str:
        return f"{self.upstream.name}/{self.model}"

    def circuit_open(self, now: float) -> bool:
        return self.open_until > now

    def succeeded(self, seconds: float) -> None:
        self.requests += 1
        self.failures_in_row = 0
        self.open_until = 0.0
        self.latency_ewma = seconds if self.latency_ewma is None else 0.8 * self.latency_ewma + 0.2 * seconds

    def failed(self) -> None:
        self.requests += 1
        self.errors += 1
        self.failures_in_row += 1
        if self.failures_in_row >= CIRCUIT_FAILURES:
            self.open_until = time.monotonic() + CIRCUIT_SECONDS

    def stats(self) -> dict[str, Any]:
        return {
            "deployment": self.label,
            "requests": self.requests,
            "errors": self.errors,
            "circuit": "open" if self.circuit_open(time.monotonic()) else "closed",
            "latency_ms": round(self.latency_ewma * 1000, 1) if self.latency_ewma is not None else None,
        }


class RoutedModel:
    """The Backend for one public model id served by one or more upstream deployments."""

    def __init__(self, info: ModelInfo, deployments: list[Deployment], aliases: tuple[str, ...] = ()) -> None:
        self.info = info
        self.deployments = deployments
        self.aliases = aliases
        self.running = 0  # requests of this process streaming from an upstream now

    # --- Backend protocol ---------------------------------------------------------------

    def models(self) -> list[ModelInfo]:
        return [self.info]

    def readiness(self) -> tuple[Readiness, str]:
        """Always ready: an upstream's trouble is per request (failover, 502/503/504) and shows
        in stats(), not as this server being down."""
        return "ready", ""

    def stats(self) -> dict[str, object]:
        now = time.monotonic()
        degraded = all(d.circuit_open(now) for d in self.deployments)
        deployments = [d.stats() for d in self.deployments]
        return {"running": self.running, "waiting": 0, "degraded": degraded, "deployments": deployments}

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Event]:
        self.running += 1
        events = self._stream(request)
        try:
            async for event in events:
                yield event
        finally:
            self.running -= 1
            await events.aclose()  # now, not at garbage collection: this closes the upstream connection

    async def _stream(self, request: GenerationRequest) -> AsyncIterator[Event]:
        accepted = False
        last: BackendError | None = None
        for deployment in self._order():
            started = time.monotonic()
            attempt = _attempt(deployment, request)
            sent_text = False
            try:
                async for event in attempt:
                    if isinstance(event, Accepted):
                        if accepted:
                            continue  # the client already has its headers from the first try
                        accepted = True
                    elif isinstance(event, TextDelta) and not sent_text:
                        sent_text = True
                        deployment.succeeded(time.monotonic() - started)
                    yield event
                if not sent_text:
                    deployment.succeeded(time.monotonic() - started)
                return
            except UpstreamFailed as exc:
                deployment.failed()
                logger.warning("upstream %s failed: %s", deployment.label, exc.message)
                if sent_text:
                    raise  # text already reached the client: end the stream with an error
                last = exc
            finally:
                await attempt.aclose()
        raise last or UpstreamFailed(f"No upstream is configured for '{self.info.id}'.")

    def _order(self) -> list[Deployment]:
        now = time.monotonic()
        healthy = [d for d in self.deployments if not d.circuit_open(now)]
        broken = [d for d in self.deployments if d.circuit_open(now)]
        ordered: list[Deployment] = []
        for priority in sorted({d.priority for d in healthy}):
            pool = [d for d in healthy if d.priority == priority]
            while pool:  # weighted shuffle
                pick = random.choices(pool, weights=[max(d.weight, 0.0001) for d in pool])[0]
                ordered.append(pick)
                pool.remove(pick)
        return ordered + sorted(broken, key=lambda d: d.open_until)

    async def probe(self) -> dict[str, bool]:
        """Cheap active check (GET /models per upstream, never a paid completion)."""
        results = {}
        for deployment in self.deployments:
            upstream = deployment.upstream
            try:
                response = await upstream.client().get(
                    f"{upstream.base_url}/models", headers=upstream.headers(), timeout=5.0
                )
                ok = response.status_code < 500
            except httpx.HTTPError:
                ok = False
            if ok and deployment.circuit_open(time.monotonic()):
                deployment.open_until = 0.0  # came back: close the circuit early
            results[deployment.label] = ok
        return results


# --- one try against one deployment ---------------------------------------------------------


def _body(deployment: Deployment, request: GenerationRequest) -> tuple[str, dict[str, Any]]:
    sampling = request.sampling
    body: dict[str, Any] = {
        "model": deployment.model,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": sampling.max_tokens,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "n": request.n,
    }
    if sampling.presence_penalty:
        body["presence_penalty"] = sampling.presence_penalty
    if sampling.frequency_penalty:
        body["frequency_penalty"] = sampling.frequency_penalty
    if sampling.stop:
        body["stop"] = list(sampling.stop)
    if sampling.seed is not None:
        body["seed"] = sampling.seed
    if request.user:
        body["user"] = request.user
    if request.is_chat:
        body["messages"] = [{"role": m.role, "content": m.content} for m in request.messages]
        return "/chat/completions", body
    body["prompt"] = [p if isinstance(p, str) else list(p) for p in request.prompts]
    return "/completions", body


def estimate_prompt_tokens(request: GenerationRequest) -> int:
    """A generous estimate (3 characters per token, 4 per message) for the reservation; the
    upstream's usage settles the bill."""
    if request.is_chat:
        return sum(len(m.content) // 3 + 4 for m in request.messages) + 3
    return sum(len(p) // 3 + 1 if isinstance(p, str) else len(p) for p in request.prompts)


async def _attempt(deployment: Deployment, request: GenerationRequest) -> AsyncIterator[Event]:
    upstream = deployment.upstream
    path, body = _body(deployment, request)
    client = upstream.client()
    outgoing = client.build_request("POST", upstream.base_url + path, json=body, headers=upstream.headers())
    try:
        response = await client.send(outgoing, stream=True)
    except httpx.TimeoutException:
        raise UpstreamTimeout(f"The upstream '{upstream.name}' did not answer in time.") from None
    except httpx.HTTPError as exc:
        raise UpstreamFailed(f"Could not reach the upstream '{upstream.name}' ({type(exc).__name__}).") from None
    try:
        if response.status_code >= 400:
            await _raise_for(response, upstream)
        # A fingerprint of the deployment (like OpenAI's: which configuration answered),
        # without naming the upstream.
        fingerprint = "fp_" + hashlib.sha256(deployment.label.encode()).hexdigest()[:10]
        yield Accepted(prompt_tokens=estimate_prompt_tokens(request), system_fingerprint=fingerprint)
        async for event in _events(response, upstream, request):
            yield event
    finally:
        await response.aclose()  # closing the connection is what cancels the upstream's work


async def _raise_for(response: httpx.Response, upstream: Upstream) -> None:
    raw = b""
    async for chunk in response.aiter_bytes():
        raw += chunk
        if len(raw) >= ERROR_BODY_LIMIT:
            break
    message = _error_message(raw)
    status = response.status_code
    if status == 429:
        raise UpstreamBusy(
            f"The upstream '{upstream.name}' is rate limiting (429).", retry_after=_retry_after(response)
        )
    if status in (400, 404, 413, 422):
        raise UpstreamRejected(f"The upstream refused the request: {message}" if message else "The upstream refused.")
    if status in (503, 529):
        raise UpstreamBusy(f"The upstream '{upstream.name}' is overloaded or loading ({status}).")
    raise UpstreamFailed(f"The upstream '{upstream.name}' answered HTTP {status}.")


def _error_message(raw: bytes) -> str:
    try:
        data = json.loads(raw)
        error = data.get("error") if isinstance(data, dict) else None
        message = error.get("message") if isinstance(error, dict) else error
        return str(message)[:500] if message else ""
    except (ValueError, UnicodeDecodeError):
        return ""


def _retry_after(response: httpx.Response) -> int | None:
    try:
        return int(response.headers.get("retry-after", ""))
    except ValueError:
        return None


async def _events(response: httpx.Response, upstream: Upstream, request: GenerationRequest) -> AsyncIterator[Event]:
    """Upstream SSE → our events. The first data line must come within the first-token
    timeout, later ones within the read timeout."""
    choices = request.choice_count
    finished: set[int] = set()
    usage: Usage | None = None
    delivered = 0
    lines = response.aiter_lines()
    timeout = upstream.first_token_timeout
    done = False
    while True:
        try:
            line = await asyncio.wait_for(anext(lines), timeout)
        except StopAsyncIteration:
            break
        except TimeoutError:
            raise UpstreamTimeout(f"The upstream '{upstream.name}' stopped sending for {timeout:.0f}s.") from None
        except httpx.HTTPError as exc:
            raise UpstreamFailed(f"The upstream '{upstream.name}' broke off ({type(exc).__name__}).") from None
        if not line.startswith("data:"):
            continue  # blank lines, comments (": ping"), event names
        data = line[5:].strip()
        if data == "[DONE]":
            done = True
            break
        try:
            chunk = json.loads(data)
        except ValueError:
            raise UpstreamFailed(f"The upstream '{upstream.name}' sent a chunk that is not JSON.") from None
        if isinstance(chunk, dict) and "error" in chunk:
            raise UpstreamFailed(f"The upstream '{upstream.name}' failed mid-answer: {_error_message(data.encode())}")
        timeout = upstream.read_timeout
        for choice in chunk.get("choices") or []:
            index = int(choice.get("index", 0))
            text = (choice.get("delta") or {}).get("content") if request.is_chat else choice.get("text")
            if text:
                delivered += 1
                yield TextDelta(index=index, text=text, tokens=1)
            reason = choice.get("finish_reason")
            if reason and index not in finished:
                finished.add(index)
                yield Finish(index=index, reason="length" if reason == "length" else "stop")
        if isinstance(chunk.get("usage"), dict):
            reported = chunk["usage"]
            usage = Usage(int(reported.get("prompt_tokens", 0)), int(reported.get("completion_tokens", 0)))
    if not done and len(finished) < choices:  # the body just ended: the connection was cut
        raise UpstreamFailed(f"The upstream '{upstream.name}' broke off in the middle of the answer.")
    for index in range(choices):
        if index not in finished:
            yield Finish(index=index, reason="stop")
    yield usage or Usage(estimate_prompt_tokens(request), delivered, estimated=True)
