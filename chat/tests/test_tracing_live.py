"""Traces, received the way a collector receives them: an OTLP/HTTP endpoint on loopback
decodes what a running server (and a real Celery worker) export with the OpenTelemetry SDK,
and the spans are checked — the request's GenAI attributes, its children (wallet, upstream
attempts, queue wait), a failover as an event, the W3C context carried to the upstream and
into a tool's Celery job, and no prompt text unless the operator turns it on."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import httpx
import pytest
import redis
from openai import OpenAI
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tools.tests.fixtures import text_pdf
from tools.tests.test_worker_live import Worker

from .live import LiveServer, funded_account, manage, wait_for
from .loopback import Answer, Loopback, openai_stream

ADMIN_KEY = "sk-admin-tracing-0123456789abcdef"
PROMPT = "A secret question about the weather in Paris, please answer briefly. " * 20
USAGE = {"prompt_tokens": 400, "completion_tokens": 12, "total_tokens": 412}
CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_PARENT = "b7ad6b7169203331"


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


class Collector(Loopback):
    """OTLP/HTTP's trace endpoint (protobuf), keeping every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        super().__init__(self.receive)

    def receive(self, path: str, headers: Mapping[str, str], raw: bytes) -> Answer:
        export = ExportTraceServiceRequest()
        export.ParseFromString(raw)
        with self.lock:
            for resource in export.resource_spans:
                service = {a.key: _value(a.value) for a in resource.resource.attributes}
                for scope in resource.scope_spans:
                    self.spans += [_span(span, service.get("service.name")) for span in scope.spans]
        return 200, "application/x-protobuf", ExportTraceServiceResponse().SerializeToString()

    def trace(self, trace_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [span for span in self.spans if span["trace"] == trace_id]

    def named(self, prefix: str) -> list[dict[str, Any]]:
        with self.lock:
            return [span for span in self.spans if span["name"].startswith(prefix)]


def _span(span: Any, service: str | None) -> dict[str, Any]:
    return {
        "name": span.name,
        "trace": span.trace_id.hex(),
        "id": span.span_id.hex(),
        "parent": span.parent_span_id.hex(),
        "kind": span.kind,
        "status": span.status.code,
        "start": span.start_time_unix_nano,
        "end": span.end_time_unix_nano,
        "attributes": {a.key: _value(a.value) for a in span.attributes},
        "events": [(e.name, {a.key: _value(a.value) for a in e.attributes}) for e in span.events],
        "service": service,
    }


class Upstream(Loopback):
    """An OpenAI-compatible upstream on loopback: /down/ answers 503, /up/ a short stream;
    it keeps the `traceparent` each request carried."""

    def __init__(self) -> None:
        self.traceparents: list[str | None] = []
        super().__init__(self.answer)

    def answer(self, path: str, headers: Mapping[str, str], raw: bytes) -> Answer:
        self.traceparents.append(headers.get("traceparent"))
        if path.startswith("/down/"):
            return 503, "application/json", b'{"error": {"message": "overloaded"}}'
        body = json.loads(raw or b"{}")
        return openai_stream(body["model"], {"role": "assistant", "content": "Sunny."}, "stop", USAGE)


def _env(collector: Collector, **extra: str) -> dict[str, str]:
    return {
        "GHOSTGPT_ADMIN_KEY": ADMIN_KEY,
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_SERVICE_NAME": "ghostgpt-under-test",
        "GHOSTGPT_PARALLEL_SEQUENCES": "1",
        **extra,
    }


@pytest.fixture(scope="module")
def traced() -> Iterator[tuple[LiveServer, Collector, Upstream]]:
    collector, upstream = Collector(), Upstream()
    routes = {
        "upstreams": {
            "down": {"base_url": f"{upstream.url}/down/v1", "api_key": "sk-up"},
            "up": {"base_url": f"{upstream.url}/up/v1", "api_key": "sk-up"},
        },
        "models": {
            "traced-model": {
                "deployments": [
                    {"upstream": "down", "model": "gpt-first", "priority": 0},
                    {"upstream": "up", "model": "gpt-second", "priority": 1},
                ],
                "context_length": 128000,
            }
        },
    }
    server = LiveServer(routes=routes, env=_env(collector))
    manage(server, "set_price", "traced-model", "--prompt", "1", "--completion", "2")
    yield server, collector, upstream
    server.stop()
    upstream.close()
    collector.close()


def _spans(collector: Collector, trace_id: str, *names: str) -> dict[str, list[dict[str, Any]]]:
    """The trace's spans by name, once every name in `names` has arrived."""

    def arrived() -> dict[str, list[dict[str, Any]]] | None:
        found: dict[str, list[dict[str, Any]]] = {}
        for span in collector.trace(trace_id):
            found.setdefault(span["name"], []).append(span)
        return found if all(name in found for name in names) else None

    return wait_for(arrived, f"spans {names} of trace {trace_id}", within=20)  # type: ignore[no-any-return]


def test_a_request_is_a_genai_span_with_its_wallet_upstream_attempts_and_failover(
    traced: tuple[LiveServer, Collector, Upstream],
) -> None:
    server, collector, upstream = traced
    _, key = funded_account(server.base_url, ADMIN_KEY, "traced", Decimal("1"))
    client = OpenAI(base_url=server.base_url + "/v1", api_key=key, max_retries=0)
    before = len(upstream.traceparents)
    answer = client.chat.completions.create(
        model="traced-model",
        messages=[{"role": "user", "content": PROMPT}],
        max_tokens=50,
        temperature=0.5,
        extra_headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_PARENT}-01"},
    )
    assert answer.choices[0].message.content == "Sunny."
    spans = _spans(collector, CLIENT_TRACE, "chat traced-model", "wallet reserve", "wallet settle")
    [request] = spans["chat traced-model"]
    assert request["parent"] == CLIENT_PARENT, "the client's trace continues"
    assert request["service"] == "ghostgpt-under-test" and request["kind"] == 2  # SERVER
    attributes = request["attributes"]
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == "traced-model"
    assert attributes["gen_ai.response.model"] == "traced-model"
    assert (attributes["gen_ai.request.max_tokens"], attributes["gen_ai.request.temperature"]) == (50, 0.5)
    assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]) == (400, 12)
    assert attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert attributes["gen_ai.response.id"] == answer.id
    # 400 × 1 + 12 × 2 = 424 per million
    assert attributes["ghostgpt.cost"] == pytest.approx(0.000424) and attributes["ghostgpt.dialect"] == "chat"
    assert attributes["http.response.status_code"] == 200
    for name in ("wallet reserve", "wallet settle"):
        assert spans[name][0]["parent"] == request["id"]

    attempts = sorted(spans["chat gpt-first"] + spans["chat gpt-second"], key=lambda s: s["start"])
    assert [a["attributes"]["ghostgpt.upstream"] for a in attempts] == ["down", "up"]
    assert all(a["parent"] == request["id"] and a["kind"] == 3 for a in attempts)  # CLIENT
    assert attempts[0]["status"] == 2 and attempts[1]["status"] != 2  # the first failed
    assert attempts[1]["attributes"]["server.address"] == "127.0.0.1"
    assert attempts[1]["attributes"]["gen_ai.provider.name"] == "openai"
    [(_, detail)] = [e for e in request["events"] if e[0] == "failover"]
    assert detail["ghostgpt.error"] == "The upstream 'down' is overloaded or loading (503)."
    assert detail["ghostgpt.deployment"] == attempts[1]["attributes"]["ghostgpt.deployment"]
    # The upstream calls carried this trace.
    carried = upstream.traceparents[before:]
    assert len(carried) == 2 and all(t and t.split("-")[1] == CLIENT_TRACE for t in carried)
    assert {t.split("-")[2] for t in carried if t} == {a["id"] for a in attempts}
    # No prompt text anywhere without the operator's say-so.
    text = json.dumps([span["attributes"] for span in collector.trace(CLIENT_TRACE)])
    assert "secret question" not in text and "gen_ai.input.messages" not in text


def test_a_refused_request_is_a_failed_span(traced: tuple[LiveServer, Collector, Upstream]) -> None:
    server, collector, _ = traced
    _, poor = funded_account(server.base_url, ADMIN_KEY, "poor", Decimal("0.0000001"))
    trace_id = "1af7651916cd43dd8448eb211c80319d"
    response = httpx.post(
        server.base_url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {poor}", "traceparent": f"00-{trace_id}-{CLIENT_PARENT}-01"},
        json={"model": "traced-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4000},
    )
    assert response.status_code == 402
    spans = _spans(collector, trace_id, "chat traced-model", "wallet reserve")
    [request] = spans["chat traced-model"]
    assert request["status"] == 2 and request["attributes"]["http.response.status_code"] == 402
    assert request["attributes"]["error.type"] == "insufficient_balance"
    assert spans["wallet reserve"][0]["status"] == 2
    assert "chat gpt-first" not in spans, "no upstream is called for a refused request"


def test_a_request_that_waited_for_the_embedded_model_has_a_queue_span(
    traced: tuple[LiveServer, Collector, Upstream],
) -> None:
    server, collector, _ = traced
    client = OpenAI(base_url=server.base_url + "/v1", api_key=server.api_key, max_retries=0)

    def ask(_: int) -> None:
        client.chat.completions.create(
            model="ghostgpt", messages=[{"role": "user", "content": "Count to twenty."}], max_tokens=48
        )

    with ThreadPoolExecutor(3) as pool:  # one sequence (GHOSTGPT_PARALLEL_SEQUENCES=1): two wait
        list(pool.map(ask, range(3)))

    def waited() -> list[dict[str, Any]] | None:  # a parent ends (and is exported) after its child
        parents = {span["id"] for span in collector.named("chat ghostgpt")}
        return [wait for wait in collector.named("queue wait") if wait["parent"] in parents] or None

    waits = wait_for(waited, "a queue wait span inside a request's span", within=20)
    assert any(wait["end"] > wait["start"] for wait in waits)


def test_prompt_text_is_recorded_only_when_the_operator_turns_it_on(
    traced: tuple[LiveServer, Collector, Upstream],
) -> None:
    _, collector, _ = traced
    server = LiveServer(env=_env(collector, OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="true"))
    try:
        trace_id = "2af7651916cd43dd8448eb211c80319e"
        httpx.post(
            server.base_url + "/v1/chat/completions",
            headers={"Authorization": f"Bearer {server.api_key}", "traceparent": f"00-{trace_id}-{CLIENT_PARENT}-01"},
            # A bounded answer: with no max_tokens the embedded model may talk for its whole
            # 4096-token budget, minutes on two cores (the CI failure of stop 38).
            json={
                "model": "ghostgpt",
                "messages": [{"role": "user", "content": "Say the word bonjour."}],
                "max_tokens": 32,
            },
            timeout=120,
        ).raise_for_status()
        [request] = _spans(collector, trace_id, "chat ghostgpt")["chat ghostgpt"]
    finally:
        server.stop()
    messages = json.loads(request["attributes"]["gen_ai.input.messages"])
    assert messages[-1] == {"role": "user", "content": "Say the word bonjour."}
    assert json.loads(request["attributes"]["gen_ai.output.messages"])[0]["role"] == "assistant"


def test_a_tool_request_continues_its_trace_into_the_celery_worker(postgres_url: str, redis_url: str) -> None:
    redis.Redis.from_url(redis_url).flushdb()
    collector = Collector()
    server = LiveServer(postgres_url=postgres_url, env=_env(collector, REDIS_URL=redis_url))
    worker = Worker(server.env)
    try:
        trace_id = "3af7651916cd43dd8448eb211c80319f"
        response = httpx.post(
            server.base_url + "/api/pdf/extract",
            files={"file": ("doc.pdf", text_pdf(["Traced through a worker"]), "application/pdf")},
            headers={"traceparent": f"00-{trace_id}-{CLIENT_PARENT}-01"},
            timeout=90,
        )
        assert response.status_code == 200, response.text
        spans = wait_for(
            lambda: (
                (s := collector.trace(trace_id))
                and any(x["name"].startswith("run/") for x in s)
                and any(x["name"] == "tool pdf-extract" for x in s)
                and s
            ),
            "the worker's span of the job and the web process's span of the request",
            within=30,
        )
    finally:
        worker.stop()
        server.stop()
        collector.close()
    by_id = {span["id"]: span for span in spans}
    [tool] = [s for s in spans if s["name"] == "tool pdf-extract"]
    [run] = [s for s in spans if s["name"].startswith("run/")]
    assert tool["parent"] == CLIENT_PARENT and tool["attributes"]["http.response.status_code"] == 200
    # run/… ← apply_async/… (published in the web process) ← the tool request's span
    chain, span = [], run
    while span["parent"] in by_id:
        span = by_id[span["parent"]]
        chain.append(span["name"])
    assert chain[-1] == "tool pdf-extract" and any(name.startswith("apply_async/") for name in chain)
    assert run["service"] == "ghostgpt-under-test"
