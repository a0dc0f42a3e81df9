"""OpenAI-compatible upstreams behind GhostGPT, against a fake upstream on 127.0.0.1 that
replays a stream recorded from api.openai.com: pass-through, failover, status mapping,
mid-stream failures, cancellation, usage, and keys that never leak."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.core.exceptions import ImproperlyConfigured
from openai import APIStatusError, OpenAI

from chat.backends.routing import load_routes

from .fake_upstream import FakeUpstream, recorded_chunks, recorded_text
from .live import LiveServer
from .openapi import assert_matches

UPSTREAM_KEY = "sk-upstream-secret-0123456789abcdef"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def routes(fake: FakeUpstream) -> dict[str, Any]:
    def upstream(mode: str, **extra: Any) -> dict[str, Any]:
        return {"base_url": f"{fake.url}/{mode}/v1", "api_key": UPSTREAM_KEY, **extra}

    return {
        "upstreams": {
            "ok": upstream("ok"),
            "nousage": upstream("nousage"),
            "fail500": upstream("fail500"),
            "busy429": upstream("busy429"),
            "bad400": upstream("bad400"),
            "slow": upstream("slow", first_token_timeout=1),
            "drop": upstream("drop"),
            "stall": upstream("stall"),
            "badjson": upstream("badjson"),
            "cutjson": upstream("cutjson"),
            "slowjson": upstream("slowjson", answer_timeout=1),
            "gone": {"base_url": f"http://127.0.0.1:{closed_port()}/v1", "api_key": UPSTREAM_KEY},
        },
        "models": {
            "gpt-4o": {"aliases": ["four"], "context_length": 128000, "deployments": [{"upstream": "ok"}]},
            "failover": {
                "deployments": [
                    {"upstream": "gone", "priority": 0},
                    {"upstream": "fail500", "priority": 1},
                    {"upstream": "slow", "priority": 2},
                    {"upstream": "ok", "model": "gpt-4o", "priority": 3},
                ]
            },
            "all-busy": {"deployments": [{"upstream": "busy429"}]},
            "all-broken": {"deployments": [{"upstream": "fail500"}, {"upstream": "gone"}]},
            "refuses": {"deployments": [{"upstream": "bad400"}, {"upstream": "ok", "priority": 1}]},
            "no-usage": {"deployments": [{"upstream": "nousage"}]},
            "drops": {"deployments": [{"upstream": "drop"}, {"upstream": "ok", "priority": 1}]},
            "stalls": {"deployments": [{"upstream": "stall"}]},
            "whole-failover": {
                "deployments": [
                    {"upstream": "badjson", "priority": 0},
                    {"upstream": "slowjson", "priority": 1},
                    {"upstream": "cutjson", "priority": 2},
                    {"upstream": "ok", "model": "gpt-4o", "priority": 3},
                ]
            },
            "slow-whole": {"deployments": [{"upstream": "slowjson"}]},
        },
    }


@pytest.fixture(scope="module")
def gateway(fake: FakeUpstream) -> Iterator[LiveServer]:
    server = LiveServer(routes=routes(fake), env={"GHOSTGPT_LOG_LEVEL": "DEBUG"})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def sdk(gateway: LiveServer) -> OpenAI:
    return OpenAI(
        base_url=gateway.base_url + "/v1", api_key=gateway.api_key, max_retries=0, _strict_response_validation=True
    )


def ask(sdk: OpenAI, model: str, **extra: Any) -> Any:
    return sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": "Weather?"}], **extra)


def test_routed_models_and_aliases_are_listed(sdk: OpenAI) -> None:
    ids = {m.id for m in sdk.models.list().data}
    assert {"ghostgpt", "gpt-4o", "four", "failover", "no-usage"} <= ids
    assert sdk.models.retrieve("four").context_length == 128000  # type: ignore[attr-defined]


def test_streams_pass_through_with_the_upstreams_usage(sdk: OpenAI, fake: FakeUpstream, gateway: LiveServer) -> None:
    with httpx.Client(base_url=gateway.base_url, timeout=30) as http:
        body = {
            "model": "four",
            "messages": [{"role": "user", "content": "Weather?"}],
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": 100,
        }
        response = http.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {gateway.api_key}"})
    chunks = [json.loads(line[6:]) for line in response.text.split("\n") if line.startswith("data: {")]
    for chunk in chunks:
        assert_matches("CreateChatCompletionStreamResponse", chunk)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == recorded_text()
    recorded_usage = next(c["usage"] for c in recorded_chunks() if c.get("usage"))
    assert chunks[-1]["usage"]["prompt_tokens"] == recorded_usage["prompt_tokens"]
    assert chunks[-1]["usage"]["completion_tokens"] == recorded_usage["completion_tokens"]
    sent = fake.requests[-1]
    assert sent["body"]["model"] == "gpt-4o" and sent["body"]["stream_options"] == {"include_usage": True}
    assert sent["body"]["max_tokens"] == 100 and sent["headers"]["Authorization"] == f"Bearer {UPSTREAM_KEY}"
    reply = ask(sdk, "gpt-4o")  # non-streaming: the upstream's whole answer, asked for as JSON
    assert reply.choices[0].message.content == recorded_text()
    assert reply.usage is not None and reply.usage.completion_tokens == recorded_usage["completion_tokens"]
    assert reply.usage.prompt_tokens == recorded_usage["prompt_tokens"]
    sent = fake.requests[-1]
    assert sent["body"]["stream"] is False and "stream_options" not in sent["body"]
    assert sent["body"]["model"] == "gpt-4o"


def test_whole_answers_fail_over_until_one_arrives_complete(sdk: OpenAI, fake: FakeUpstream) -> None:
    """A JSON client's request: an answer that is not JSON, one later than the upstream's
    answer_timeout and one cut in the middle all fail over (nothing has reached the client);
    the next deployment's whole answer is served. Alone, the late one is a 504."""
    fake.requests.clear()
    started = time.monotonic()
    reply = ask(sdk, "whole-failover")
    assert reply.choices[0].message.content == recorded_text()
    assert [r["mode"] for r in fake.requests] == ["badjson", "slowjson", "cutjson", "ok"]
    assert all(r["body"]["stream"] is False for r in fake.requests)
    assert time.monotonic() - started < 3  # the late answer was given up after its 1 s
    with pytest.raises(APIStatusError) as caught:
        ask(sdk, "slow-whole")
    assert caught.value.status_code == 504
    assert isinstance(caught.value.body, dict) and caught.value.body["code"] == "upstream_timeout"


def test_failover_before_the_first_byte(sdk: OpenAI, fake: FakeUpstream) -> None:
    fake.requests.clear()
    started = time.monotonic()
    reply = ask(sdk, "failover")
    assert reply.choices[0].message.content == recorded_text()
    modes = [r["mode"] for r in fake.requests]
    assert modes == ["fail500", "slow", "ok"]  # refused connection, 500, first-token timeout, then success
    assert time.monotonic() - started < 10
    stream = ask(sdk, "failover", stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == recorded_text()


@pytest.mark.parametrize(
    ("model", "status", "code"),
    [("all-busy", 503, "upstream_overloaded"), ("all-broken", 502, "upstream_error"), ("refuses", 400, None)],
)
def test_upstream_failures_map_to_clear_statuses(sdk: OpenAI, model: str, status: int, code: str | None) -> None:
    with pytest.raises(APIStatusError) as caught:
        ask(sdk, model)
    assert caught.value.status_code == status
    body = caught.value.body
    assert isinstance(body, dict)
    if code:
        assert body["code"] == code
    else:
        assert "bad things" in body["message"]  # the upstream's own reason, not another try


def test_a_mid_stream_failure_ends_with_an_error_event(gateway: LiveServer) -> None:
    body = {"model": "drops", "messages": [{"role": "user", "content": "x"}], "stream": True}
    with httpx.Client(base_url=gateway.base_url, timeout=30) as http:
        response = http.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {gateway.api_key}"})
    lines = [line for line in response.text.split("\n") if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    error = json.loads(lines[-2][6:])
    assert error["error"]["type"] == "upstream_error"
    assert any('"content"' in line for line in lines[:-2])  # text had reached the client: no failover


def test_missing_usage_bills_what_was_delivered(sdk: OpenAI, fake: FakeUpstream) -> None:
    reply = ask(sdk, "no-usage")
    # Asked for a whole answer, /nousage/ streams anyway (as some servers do): read as a stream.
    assert fake.requests[-1]["body"]["stream"] is False
    assert reply.choices[0].message.content == recorded_text()
    # Before: one token per chunk, a large discount on multi-token deltas. Now the documented
    # upper bound, one token per UTF-8 byte delivered (chat.billing.estimate).
    content_chunks = sum(1 for c in recorded_chunks() if c["choices"] and c["choices"][0]["delta"].get("content"))
    delivered_bytes = len(recorded_text().encode())
    assert reply.usage is not None and reply.usage.completion_tokens == delivered_bytes > content_chunks


@pytest.mark.parametrize("stream", [True, False])
def test_client_disconnect_cancels_the_upstream_request(gateway: LiveServer, fake: FakeUpstream, stream: bool) -> None:
    fake.disconnects.clear()
    body = {"model": "stalls", "messages": [{"role": "user", "content": "x"}], "stream": stream}
    headers = {"Authorization": f"Bearer {gateway.api_key}"}
    with httpx.Client(base_url=gateway.base_url, timeout=2) as http:
        if stream:
            with http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response:
                for line in response.iter_lines():
                    if '"content"' in line:
                        break  # one piece of text, then the client leaves
        else:
            with pytest.raises(httpx.ReadTimeout):
                http.post("/v1/chat/completions", json=body, headers=headers)
    left = time.monotonic()
    deadline = left + 10
    while not fake.disconnects and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fake.disconnects, "the upstream kept streaming to nobody"
    assert fake.disconnects[0][1] - left < 3
    assert gateway.stats("stalls")["running"] == 0


def test_upstream_keys_never_leak(gateway: LiveServer, sdk: OpenAI) -> None:
    with pytest.raises(APIStatusError) as caught:
        ask(sdk, "all-broken")
    assert UPSTREAM_KEY not in json.dumps(caught.value.body)
    health = httpx.get(gateway.base_url + "/health").text
    assert UPSTREAM_KEY not in health and UPSTREAM_KEY not in gateway.log()


def test_public_health_names_models_and_states_only(gateway: LiveServer) -> None:
    public = httpx.get(gateway.base_url + "/health")
    models = public.json()["models"]
    assert models and all(entry == {"state": "ready"} for entry in models.values()), models
    for leak in ("deployment", "probe", "/v1", "127.0.0.1", "circuit"):
        assert leak not in public.text
    # The operator's view (a loopback client here, or the metrics token) has the details.
    details = httpx.get(gateway.base_url + "/health?details=1").json()["models"]
    assert any("deployments" in entry for entry in details.values())


def test_the_routing_file_refuses_metadata_addresses(tmp_path: Path) -> None:
    def write(upstream: dict[str, Any]) -> str:
        path = tmp_path / "routes.json"
        path.write_text(
            json.dumps({"upstreams": {"u": upstream}, "models": {"m": {"deployments": [{"upstream": "u"}]}}})
        )
        return str(path)

    with pytest.raises(ImproperlyConfigured, match="link-local"):
        load_routes(write({"base_url": "http://169.254.169.254/v1"}))
    assert load_routes(write({"base_url": "http://169.254.169.254/v1", "allow_link_local": True}))[0].info.id == "m"
    assert load_routes(write({"base_url": "http://127.0.0.1:8001/v1"}))  # local vLLM is normal
    with pytest.raises(ImproperlyConfigured, match="credentials"):
        load_routes(write({"base_url": "http://user:pw@example.com/v1"}))
    with pytest.raises(ImproperlyConfigured, match="unknown upstream"):
        path = tmp_path / "bad.json"
        path.write_text(json.dumps({"upstreams": {}, "models": {"m": {"deployments": [{"upstream": "x"}]}}}))
        load_routes(str(path))


def test_a_failed_probe_is_retried_within_seconds_not_an_interval_later(tmp_path: Path) -> None:
    """`make up` starts the web processes beside the model server they route to: the first
    probe fails (nothing listens yet), and the model must count as healthy soon after it
    answers — not PROBE_SECONDS later."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    from chat.backends.upstream import Prober

    port = closed_port()
    path = tmp_path / "routes.json"
    upstream = {"base_url": f"http://127.0.0.1:{port}/v1"}
    path.write_text(json.dumps({"upstreams": {"u": upstream}, "models": {"m": {"deployments": [{"upstream": "u"}]}}}))
    model = load_routes(str(path))[0]
    deployment = model.deployments[0]
    prober = Prober([model], interval=600).start()
    try:
        deadline = time.monotonic() + 5
        while deployment.probe == "not yet" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert deployment.probe.startswith("failed") and deployment.circuit_open(time.monotonic())

        class Models(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = b'{"object": "list", "data": []}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", port), Models)
        Thread(target=server.serve_forever, daemon=True).start()
        answering = time.monotonic()
        try:
            while deployment.probe != "ok" and time.monotonic() < answering + 10:
                time.sleep(0.05)
            assert deployment.probe == "ok" and not deployment.circuit_open(time.monotonic())
            assert time.monotonic() - answering < 5  # retried at 1, 2, 4 s after the first failure
        finally:
            server.shutdown()
            server.server_close()
    finally:
        prober.stop()
