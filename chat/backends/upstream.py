"""Upstream servers behind one public model id, with failover: OpenAI-compatible (vLLM,
llama.cpp server, Ollama, OpenAI, OpenRouter, another GhostGPT), Anthropic, Gemini and
prompt-only ones — each upstream names its `kind`, and `chat.backends.wire` translates.

A `RoutedModel` is the Backend for one public model id. It holds the operator's
deployments (upstream + upstream model + priority + weight) and, per request:
- tries deployments in order: healthy ones by priority, weighted-random within a
  priority; those whose circuit is open (3 failures in a row, or a failed probe) only
  after the rest;
- fails over on connect errors, timeouts, 429 and 5xx — and, before anything generated
  has been sent, on a first-token timeout or a broken stream; after the first text a
  failure ends the stream (the view turns it into an error event + [DONE]);
- asks for usage (`stream_options.include_usage` on OpenAI's wire) and bills the
  upstream's; when an upstream sends none, what was delivered is billed, flagged estimated;
- closes the upstream connection when the client goes away, streaming or not;
- asks an OpenAI-compatible upstream for a whole JSON answer when the client does not
  stream (one body to read instead of a chunk per token; usage always included), within
  the upstream's `answer_timeout`; an upstream that streams anyway is read as a stream.
A `Prober` thread checks every deployment cheaply (`GET /models`, or the upstream's
`probe_url` such as llama.cpp's `/health`) — never a paid completion.
Upstream keys come from the operator's config only and never appear in answers or logs.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from opentelemetry.trace import SpanKind

from chat import tracing
from chat.jsonbytes import loads
from chat.metrics import CIRCUIT_OPEN, FAILOVERS, UPSTREAM_ERRORS
from chat.signals import circuit_changed

from .base import (
    Accepted,
    BackendError,
    Capability,
    Event,
    GenerationRequest,
    ModelInfo,
    Readiness,
    TextDelta,
    ToolCallDelta,
)
from .upstream_calls import embeddings_answer, embeddings_request, post, raise_for, read_body, try_deployment
from .wire import WIRES, Wire
from .wire.base import (
    UpstreamBusy,
    UpstreamFailed,
    UpstreamRejected,
    UpstreamTimeout,
    estimate_prompt_tokens,
)

logger = logging.getLogger(__name__)

CIRCUIT_FAILURES = 3  # consecutive failures that open a deployment's circuit
CIRCUIT_SECONDS = 30.0  # how long an open circuit is skipped (then one trial request)
EMBEDDINGS_BODY_LIMIT = 256 * 1024 * 1024  # 2,048 vectors of 3,072 floats as JSON, with room
__all__ = ["UpstreamBusy", "UpstreamFailed", "UpstreamRejected", "UpstreamTimeout", "estimate_prompt_tokens"]


@dataclass
class Upstream:
    """One operator-configured server: its API `kind` (openai, anthropic, gemini, prompt)
    and where it lives (for OpenAI's wire, the URL that /chat/completions hangs off)."""

    name: str
    base_url: str
    api_key: str = field(default="", repr=False)
    kind: str = "openai"
    connect_timeout: float = 5.0
    first_token_timeout: float = 60.0
    read_timeout: float = 120.0
    # A whole (non-streamed) answer arrives only when it is complete: the longest it may take.
    answer_timeout: float = 600.0
    probe_url: str = ""  # absolute URL for the active probe; default base_url + GET /models
    max_connections: int = 100  # open connections to it per process (streams waiting included)
    options: dict[str, str] = field(default_factory=dict)  # e.g. anthropic_version
    _sessions: dict[int, aiohttp.ClientSession] = field(default_factory=dict, repr=False)

    @property
    def wire(self) -> Wire:
        return WIRES[self.kind]

    def session(self) -> aiohttp.ClientSession:
        """One keep-alive session per event loop. aiohttp rather than httpx here: it reads an
        SSE stream in about half the time (bench/results/gateway.md), and this is the path
        every streamed token takes. `sock_read` bounds each wait for data after the first."""
        loop = id(asyncio.get_running_loop())
        session = self._sessions.get(loop)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(limit=self.max_connections, limit_per_host=0, ttl_dns_cache=60)
            timeout = aiohttp.ClientTimeout(
                total=None, connect=self.connect_timeout, sock_connect=self.connect_timeout, sock_read=self.read_timeout
            )
            session = aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False)
            self._sessions[loop] = session
        return session

    def headers(self) -> dict[str, str]:
        return self.wire.headers(self.api_key, self.options)

    async def close(self) -> None:
        """Close the running loop's session (for a loop that ends before the process)."""
        session = self._sessions.pop(id(asyncio.get_running_loop()), None)
        if session is not None:
            await session.close()


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
    probe: str = "not yet"  # the last active probe: "ok", "failed (…)" or "not yet"

    @property
    def label(self) -> str:
        return f"{self.upstream.name}/{self.model}"

    def circuit_open(self, now: float) -> bool:
        return self.open_until > now

    def succeeded(self, seconds: float) -> None:
        self.requests += 1
        self.failures_in_row = 0
        if self.open_until:
            CIRCUIT_OPEN.labels(self.label).set(0)
            circuit_changed.send(sender=Deployment, deployment=self.label, opened=False)
        self.open_until = 0.0
        self.latency_ewma = seconds if self.latency_ewma is None else 0.8 * self.latency_ewma + 0.2 * seconds

    def failed(self) -> None:
        self.requests += 1
        self.errors += 1
        self.failures_in_row += 1
        if self.failures_in_row >= CIRCUIT_FAILURES:
            opening = not self.circuit_open(time.monotonic())
            self.open_until = time.monotonic() + CIRCUIT_SECONDS
            CIRCUIT_OPEN.labels(self.label).set(1)
            if opening:
                circuit_changed.send(sender=Deployment, deployment=self.label, opened=True)

    def stats(self) -> dict[str, Any]:
        return {
            "deployment": self.label,
            "requests": self.requests,
            "errors": self.errors,
            "circuit": "open" if self.circuit_open(time.monotonic()) else "closed",
            "latency_ms": round(self.latency_ewma * 1000, 1) if self.latency_ewma is not None else None,
            "probe": self.probe,
        }


class RoutedModel:
    """The Backend for one public model id served by one or more upstream deployments."""

    def __init__(
        self,
        info: ModelInfo,
        deployments: list[Deployment],
        aliases: tuple[str, ...] = (),
        *,
        tools: bool | None = None,
        vision: bool = False,
        json_schema: bool = False,
        embeddings: bool = False,
    ) -> None:
        """`tools`: None = function calling wherever every deployment's API has it (prompt-only
        upstreams do not); `vision`: the operator says the model sees images."""
        self.info = info
        self.deployments = deployments
        self.aliases = aliases
        self.running = 0  # requests of this process streaming from an upstream now
        if tools is None:
            tools = all(d.upstream.kind != "prompt" for d in deployments)
        # JSON mode passes through to OpenAI-compatible and Gemini APIs (responseMimeType);
        # Anthropic and prompt-only ones have none. A schema only where the operator declared
        # `json_schema: true` (the deployment enforces it, not GhostGPT). Embeddings likewise.
        json_mode = all(d.upstream.kind in ("openai", "gemini") for d in deployments)
        embeddings_api = all(d.upstream.kind in ("openai", "gemini") for d in deployments)
        self._capabilities: frozenset[Capability] = frozenset(
            name  # type: ignore[misc]
            for name, on in (
                ("tools", tools),
                ("vision", vision),
                ("json_object", json_mode),
                ("json_schema", json_mode and json_schema),
                ("embeddings", embeddings_api and embeddings),
            )
            if on  # type: ignore[misc]
        )

    # --- Backend protocol ---------------------------------------------------------------

    def models(self) -> list[ModelInfo]:
        return [self.info]

    def capabilities(self) -> frozenset[Capability]:
        return self._capabilities

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
        """The first deployment that answers (by priority and weight), failing over on
        connection errors, timeouts, 5xx and 429 until text has reached the client. Closing
        this stream closes the attempt's upstream connection at once (not at garbage
        collection): that is what cancels the upstream's work."""
        self.running += 1
        try:
            accepted = False
            last: BackendError | None = None
            for deployment in self._order():
                started = time.monotonic()
                span = self._traced(request, deployment, failover=last)
                attempt = try_deployment(deployment, request, tracing.headers(span))
                sent_text = False
                try:
                    async for event in attempt:
                        if isinstance(event, Accepted):
                            if accepted:
                                continue  # the client already has its headers from the first try
                            accepted = True
                        elif isinstance(event, TextDelta | ToolCallDelta) and not sent_text:
                            sent_text = True
                            deployment.succeeded(time.monotonic() - started)
                        yield event
                    if not sent_text:
                        deployment.succeeded(time.monotonic() - started)
                    if last is not None:
                        FAILOVERS.labels(self.info.id).inc()
                    return
                except UpstreamFailed as exc:
                    deployment.failed()
                    UPSTREAM_ERRORS.labels(self.info.id, deployment.upstream.name).inc()
                    logger.warning("upstream %s failed: %s", deployment.label, exc.message)
                    if span is not None:
                        tracing.failed(span, exc)
                    if sent_text:
                        raise  # text already reached the client: end the stream with an error
                    last = exc
                finally:
                    await attempt.aclose()  # type: ignore[attr-defined]
                    if span is not None:
                        span.end()
            raise last or UpstreamFailed(f"No upstream is configured for '{self.info.id}'.")
        finally:
            self.running -= 1

    def _traced(self, request: GenerationRequest, deployment: Deployment, *, failover: BackendError | None) -> Any:
        """The attempt's CLIENT span under the request's, if traced; a failover (an attempt
        after a failed one) is an event on the request's span."""
        if request.trace is None:
            return None
        upstream = deployment.upstream
        if failover is not None:
            request.trace.add_event(
                "failover",
                {"ghostgpt.error": failover.message[:300], "ghostgpt.deployment": deployment.label},
            )
        address = urlsplit(upstream.base_url)
        return tracing.child(
            request.trace,
            f"chat {deployment.model}",
            kind=SpanKind.CLIENT,
            **{
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": tracing.PROVIDERS.get(upstream.kind, upstream.kind),
                "gen_ai.request.model": deployment.model,
                "server.address": address.hostname,
                "server.port": address.port,
                "ghostgpt.upstream": upstream.name,
                "ghostgpt.deployment": deployment.label,
            },
        )

    async def embed(self, body: dict[str, Any]) -> dict[str, Any]:
        """OpenAI's /embeddings on the first deployment that answers (by priority and weight,
        failing over on connection errors, timeouts, 5xx and 429 as chat does); a 4xx is the
        client's and is not retried elsewhere."""
        last: BackendError | None = None
        for deployment in self._order():
            upstream, started = deployment.upstream, time.monotonic()
            path, payload = embeddings_request(upstream.kind, deployment.model, body)
            try:
                response = await post(upstream, path, payload)
            except UpstreamFailed as exc:
                last = exc
                deployment.failed()
                continue
            try:
                if response.status >= 400:
                    await raise_for(response, upstream)
                raw = await read_body(response, upstream, EMBEDDINGS_BODY_LIMIT)
                data = embeddings_answer(upstream.kind, loads(raw), body)
                if not isinstance(data, dict) or not isinstance(data.get("data"), list):
                    raise UpstreamFailed(f"The upstream '{upstream.name}' answered no embeddings list.")
            except UpstreamFailed as exc:
                deployment.failed()
                last = exc
                continue
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                deployment.failed()
                last = UpstreamFailed(f"The upstream '{upstream.name}' broke off ({type(exc).__name__}).")
                continue
            finally:
                response.release()
            deployment.succeeded(time.monotonic() - started)
            return data
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
        """Cheap active check of every deployment (never a paid completion): a failure opens
        its circuit before a user meets it, a success closes it early."""
        results = {}
        for deployment in self.deployments:
            upstream = deployment.upstream
            url = upstream.probe_url or upstream.base_url + upstream.wire.probe_path
            try:
                timeout = aiohttp.ClientTimeout(total=5.0)
                async with upstream.session().get(url, headers=upstream.headers(), timeout=timeout) as response:
                    ok, why = response.status < 500 and response.status not in (401, 403), f"HTTP {response.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                ok, why = False, type(exc).__name__
            now = time.monotonic()
            if ok:
                deployment.probe = "ok"
                if deployment.circuit_open(now):
                    deployment.open_until = 0.0  # came back: close the circuit early
                    deployment.failures_in_row = 0
                    CIRCUIT_OPEN.labels(deployment.label).set(0)
            else:
                deployment.probe = f"failed ({why})"
                deployment.open_until = max(deployment.open_until, now + CIRCUIT_SECONDS)
                CIRCUIT_OPEN.labels(deployment.label).set(1)
                logger.warning("probe of upstream %s failed: %s", deployment.label, why)
            results[deployment.label] = ok
        return results


RETRY_FIRST_SECONDS = 1.0


class Prober:
    """Probes routed models every `interval` seconds on its own thread and event loop, so
    health is known before a request needs it and no server loop is ever blocked."""

    def __init__(self, models: list[RoutedModel], interval: float) -> None:
        self.models = models
        self.interval = interval
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="upstream-prober", daemon=True)

    def start(self) -> Prober:
        if self.models and self.interval > 0:
            self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        """After a failed probe the next comes sooner — 1 s, then doubling up to `interval` —
        so that an upstream started beside this process (the model tier under `make up`)
        counts as healthy a second after it answers, not an interval later."""
        loop = asyncio.new_event_loop()
        retry = RETRY_FIRST_SECONDS
        try:
            while not self._stop.is_set():
                healthy = True
                for model in self.models:
                    try:
                        healthy = all(loop.run_until_complete(model.probe()).values()) and healthy
                    except Exception:
                        healthy = False
                        logger.exception("probing %s failed", model.info.id)
                if healthy:
                    retry = RETRY_FIRST_SECONDS
                    self._stop.wait(self.interval)
                else:
                    self._stop.wait(min(retry, self.interval))
                    retry *= 2
        finally:
            loop.close()
