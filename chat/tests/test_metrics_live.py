"""/metrics after known traffic, scraped with prometheus_client's own parser: requests by
route, status and model, tokens billed, upstream errors and failovers, time to first token,
live streams back to zero, tool jobs by outcome — and who may read it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from openai import OpenAI
from prometheus_client.parser import text_string_to_metric_families

from tools.tests.fixtures import text_pdf

from .fake_upstream import FakeUpstream, recorded_chunks
from .live import LiveServer


@pytest.fixture(scope="module")
def server(fake: FakeUpstream) -> Iterator[LiveServer]:
    routes = {
        "upstreams": {
            "ok": {"base_url": f"{fake.url}/ok/v1", "api_key": "sk-up"},
            "down": {"base_url": f"{fake.url}/fail500/v1", "api_key": "sk-up"},
        },
        "models": {
            "gpt-4o": {"deployments": [{"upstream": "ok"}]},
            "failover": {"deployments": [{"upstream": "down"}, {"upstream": "ok", "model": "gpt-4o", "priority": 1}]},
        },
    }
    live = LiveServer(
        routes=routes,
        env={
            "GHOSTGPT_TRUSTED_PROXIES": "127.0.0.1/32",
            "GHOSTGPT_METRICS_TOKEN": "scrape-secret",
        },
    )
    yield live
    live.stop()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def test_known_traffic_shows_in_the_metrics(server: LiveServer) -> None:
    sdk = OpenAI(base_url=server.base_url + "/v1", api_key=server.api_key, max_retries=0)
    before = samples(httpx.get(server.base_url + "/metrics").text)
    for _ in range(3):
        sdk.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    sdk.chat.completions.create(model="failover", messages=[{"role": "user", "content": "hi"}])
    for _ in sdk.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True):
        pass
    upload = httpx.post(
        server.base_url + "/api/pdf/extract", files={"file": ("a.pdf", text_pdf(["one page"]), "application/pdf")}
    )
    assert upload.status_code == 200, upload.text
    after = samples(httpx.get(server.base_url + "/metrics").text)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    route = "/v1/chat/completions"
    assert grew("ghostgpt_requests_total", route=route, method="POST", status="200", model="gpt-4o") == 4
    assert grew("ghostgpt_requests_total", route=route, method="POST", status="200", model="failover") == 1
    usage = recorded_chunks()[-1]["usage"]
    assert grew("ghostgpt_tokens_total", model="gpt-4o", direction="out") == 4 * usage["completion_tokens"]
    assert grew("ghostgpt_tokens_total", model="failover", direction="in") == usage["prompt_tokens"]
    assert grew("ghostgpt_upstream_errors_total", model="failover", upstream="down") == 1
    assert grew("ghostgpt_failovers_total", model="failover") == 1
    assert grew("ghostgpt_time_to_first_token_seconds_count", model="gpt-4o") == 4
    assert value(after, "ghostgpt_live_streams") == 0
    assert grew("ghostgpt_jobs_total", tool="pdf-extract", outcome="succeeded") == 1


def test_decode_rate_queue_depth_and_circuit_state(server: LiveServer) -> None:
    sdk = OpenAI(base_url=server.base_url + "/v1", api_key=server.api_key, max_retries=0)
    before = samples(httpx.get(server.base_url + "/metrics").text)
    reply = sdk.chat.completions.create(
        model="ghostgpt", messages=[{"role": "user", "content": "Count to twenty."}], max_tokens=40, seed=1
    )
    for _ in range(3):  # three failures in a row open the circuit of the failing deployment
        sdk.chat.completions.create(model="failover", messages=[{"role": "user", "content": "hi"}])
    after = samples(httpx.get(server.base_url + "/metrics").text)
    decoded = value(after, "ghostgpt_decoded_tokens_total", model="ghostgpt") - value(
        before, "ghostgpt_decoded_tokens_total", model="ghostgpt"
    )
    seconds = value(after, "ghostgpt_decode_seconds_total", model="ghostgpt") - value(
        before, "ghostgpt_decode_seconds_total", model="ghostgpt"
    )
    assert reply.usage is not None and decoded == reply.usage.completion_tokens
    assert seconds > 0 and decoded / seconds > 1, "decode tokens/s follows from the two counters"
    assert value(after, "ghostgpt_queue_depth", model="ghostgpt") == 0
    assert value(after, "ghostgpt_upstream_circuit_open", deployment="down/failover") == 1


def test_metrics_are_for_loopback_or_the_token(server: LiveServer) -> None:
    # Behind a trusted proxy, a visitor's forwarded address is what counts: not loopback.
    visitor = {"X-Forwarded-For": "203.0.113.7"}
    assert httpx.get(server.base_url + "/metrics", headers=visitor).status_code == 403
    with_token = {**visitor, "Authorization": "Bearer scrape-secret"}
    assert httpx.get(server.base_url + "/metrics", headers=with_token).status_code == 200
    wrong = {**visitor, "Authorization": "Bearer nope"}
    assert httpx.get(server.base_url + "/metrics", headers=wrong).status_code == 403
