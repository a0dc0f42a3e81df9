"""OpenTelemetry traces, off unless an OTLP endpoint is configured — with OpenTelemetry's own
variables: OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT),
OTEL_EXPORTER_OTLP_HEADERS, OTEL_SERVICE_NAME, OTEL_BSP_* — exported over OTLP/HTTP.

A generation request is one span (kind SERVER, named "{operation} {model}" as the GenAI
semantic conventions name them) with `gen_ai.*` attributes — the model asked for and the one
that answered, the sampling asked for, the usage (`gen_ai.usage.input_tokens`,
`…output_tokens`, cache reads and writes, reasoning), the finish reasons — and GhostGPT's
own (`ghostgpt.*`: account, key, dialect, cost, response cache). Its children: the wallet's
reservation and settlement, the wait for a free model sequence (the embedded model), and one
CLIENT span per upstream attempt (upstream, deployment, `server.address`), whose failure and
the failover to the next deployment are events. The upstream call carries the W3C
`traceparent`, so a model server behind the web tier continues the trace. Tool requests are
spans too, and Celery's instrumentation carries their context into the worker's job.

No prompt or answer text is recorded unless the operator sets
OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true (the GenAI instrumentations'
switch): then `gen_ai.input.messages` and `gen_ai.output.messages` (JSON).

When tracing is off nothing here is called on the hot path (`enabled()` first).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from django.conf import settings
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

logger = logging.getLogger(__name__)
TRACER = trace.get_tracer("ghostgpt")
_configured = False

# The GenAI conventions' provider names, by upstream kind.
PROVIDERS = {"openai": "openai", "anthropic": "anthropic", "gemini": "gcp.gemini"}
OPERATIONS = {"chat": "chat", "completions": "text_completion", "messages": "chat", "gemini": "generate_content"}


def configured() -> bool:
    """Whether this deployment exports traces (its settings say where)."""
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def setup() -> None:
    """Start exporting, once per process (the web process at start, a Celery worker at
    start): the SDK's tracer provider with a batching OTLP/HTTP exporter, and Celery's
    instrumentation (a task published carries the trace; a job run continues it)."""
    global _configured
    if _configured or not configured():
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create(
        {"service.name": os.environ.get("OTEL_SERVICE_NAME") or "ghostgpt", "ghostgpt.role": settings.ROLE}
    )
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    CeleryInstrumentor().instrument()
    _configured = True
    logger.info("exporting traces over OTLP/HTTP")


def enabled() -> bool:
    return _configured


def content_captured() -> bool:
    return os.environ.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "").lower() == "true"


def start_request(name: str, attributes: Mapping[str, Any], headers: Mapping[str, str]) -> Span:
    """The span of one API request, continuing the caller's trace when its request carried
    a `traceparent`."""
    parent = propagate.extract(headers)
    return TRACER.start_span(name, context=parent, kind=SpanKind.SERVER, attributes=present(attributes))


@contextmanager
def serving(name: str, attributes: Mapping[str, Any], headers: Mapping[str, str]) -> Iterator[Span | None]:
    """A request's span, current for the block (what it starts — a Celery job — continues
    its trace); nothing when tracing is off. For blocks that do not yield to other requests
    (a synchronous view)."""
    if not _configured:
        yield None
        return
    span = start_request(name, attributes, headers)
    with trace.use_span(span, end_on_exit=True, record_exception=True, set_status_on_exception=True):
        yield span


def child(parent: Span | None, name: str, *, kind: SpanKind = SpanKind.INTERNAL, **attributes: Any) -> Span | None:
    """A span under `parent` (None when the request is not traced)."""
    if parent is None:
        return None
    return TRACER.start_span(name, context=trace.set_span_in_context(parent), kind=kind, attributes=present(attributes))


def step(parent: Span | None, name: str, **attributes: Any) -> AbstractContextManager[Span | None]:
    """A child span around a block; an exception out of it marks it failed. Nothing at all
    (not even a generator) when the request is not traced: this sits on the hot path."""
    return nullcontext() if parent is None else _step(parent, name, attributes)


@contextmanager
def _step(parent: Span, name: str, attributes: Mapping[str, Any]) -> Iterator[Span | None]:
    span = child(parent, name, **attributes)
    try:
        yield span
    except BaseException as exc:
        if span is not None:
            failed(span, exc)
        raise
    finally:
        if span is not None:
            span.end()


def past(parent: Span | None, name: str, started: float, seconds: float, **attributes: Any) -> None:
    """A child span for something already over: from `started` (time.time()) for `seconds`."""
    if parent is None or seconds <= 0:
        return
    start = int(started * 1e9)
    span = TRACER.start_span(
        name, context=trace.set_span_in_context(parent), start_time=start, attributes=present(attributes)
    )
    span.end(end_time=start + int(seconds * 1e9))


def failed(span: Span, exc: BaseException) -> None:
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, str(getattr(exc, "message", exc))[:300]))
    span.set_attribute("error.type", getattr(exc, "code", None) or type(exc).__name__)


def headers(span: Span | None) -> dict[str, str]:
    """The W3C trace context of `span`, for an outgoing request."""
    if span is None:
        return {}
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    return carrier


def present(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """OpenTelemetry takes str, bool, int, float and lists of them; None means absent."""
    return {name: value for name, value in attributes.items() if value is not None}
