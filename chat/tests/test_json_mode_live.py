"""JSON mode and response schemas: the embedded model decodes `json_object` under
llama.cpp's JSON grammar (owned by GhostGPT) and its answers parse; a request's schema is
refused there. Routed OpenAI-compatible models get `json_object` passed through, and a
`json_schema` only where the routing file declares `json_schema: true`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from openai import BadRequestError, OpenAI

from .fake_upstream import FakeUpstream
from .live import LiveServer

SCHEMA = {"type": "json_schema", "json_schema": {"name": "cat", "schema": {"type": "object"}, "strict": True}}


@pytest.fixture(scope="module")
def server(fake: FakeUpstream) -> Iterator[LiveServer]:
    routes = {
        "upstreams": {
            "ok": {"base_url": f"{fake.url}/ok/v1", "api_key": "sk-up"},
            "google": {"kind": "gemini", "base_url": f"{fake.url}/gemini/v1beta", "api_key": "g-up"},
            "claude": {"kind": "anthropic", "base_url": f"{fake.url}/anthropic/v1", "api_key": "a-up"},
        },
        "models": {
            "gpt-4o": {"deployments": [{"upstream": "ok"}]},
            "gpt-4o-schema": {"json_schema": True, "deployments": [{"upstream": "ok", "model": "gpt-4o"}]},
            "gemini-flash": {"deployments": [{"upstream": "google"}]},
            "claude": {"deployments": [{"upstream": "claude"}]},
        },
    }
    live = LiveServer(routes=routes)
    yield live
    live.stop()


@pytest.fixture(scope="module")
def sdk(server: LiveServer) -> OpenAI:
    return OpenAI(base_url=server.base_url + "/v1", api_key=server.api_key, max_retries=0)


def ask(sdk: OpenAI, model: str, **extra: Any) -> Any:
    return sdk.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Describe a cat as JSON with a name and an age."}], **extra
    )


def test_the_embedded_models_json_answers_parse_whenever_they_end(sdk: OpenAI) -> None:
    # Before: `response_format: {"type": "json_object"}` was a 400 on every model.
    # Sampled at temperature 1, a 135M model may loop inside a string until max_tokens (a
    # `length` finish, as OpenAI documents for JSON mode); whatever ends by itself is a whole
    # object, because the grammar lets the model end only after one.
    finishes = []
    for seed in range(6):
        reply = ask(sdk, "ghostgpt", response_format={"type": "json_object"}, seed=seed, max_tokens=400)
        choice = reply.choices[0]
        finishes.append(choice.finish_reason)
        if choice.finish_reason == "stop":
            assert isinstance(json.loads(choice.message.content), dict), choice.message.content
        else:
            assert choice.finish_reason == "length" and choice.message.content.lstrip().startswith("{")
            assert reply.usage.completion_tokens == 400
    assert finishes.count("stop") >= 4, finishes


def test_json_mode_through_the_responses_api(server: LiveServer) -> None:
    body = {
        "model": "ghostgpt",
        "input": "Describe a cat as JSON with a name and an age.",
        "text": {"format": {"type": "json_object"}},
    }
    response = httpx.post(
        server.base_url + "/v1/responses",
        json={**body, "max_output_tokens": 400, "temperature": 0},  # greedy: the Responses API has no seed
        headers={"Authorization": f"Bearer {server.api_key}"},
        timeout=300,
    ).json()
    assert response["text"]["format"] == {"type": "json_object"}
    assert response["status"] == "completed" and isinstance(json.loads(response["output_text"]), dict)


def test_a_requests_schema_is_refused_on_the_embedded_model(sdk: OpenAI) -> None:
    with pytest.raises(BadRequestError) as caught:
        ask(sdk, "ghostgpt", response_format=SCHEMA)
    assert caught.value.body["param"] == "response_format"  # type: ignore[index]


def test_upstreams_get_json_mode_and_declared_schemas(sdk: OpenAI, fake: FakeUpstream) -> None:
    ask(sdk, "gpt-4o", response_format={"type": "json_object"})
    assert fake.requests[-1]["body"]["response_format"] == {"type": "json_object"}
    ask(sdk, "gpt-4o-schema", response_format=SCHEMA)
    assert fake.requests[-1]["body"]["response_format"] == SCHEMA
    sent = len(fake.requests)
    with pytest.raises(BadRequestError):
        ask(sdk, "gpt-4o", response_format=SCHEMA)  # not declared for this model
    assert len(fake.requests) == sent, "refused before the upstream is called"
    ask(sdk, "gemini-flash", response_format={"type": "json_object"})  # Gemini's own JSON mode
    assert fake.requests[-1]["body"]["generationConfig"]["responseMimeType"] == "application/json"
    with pytest.raises(BadRequestError):
        ask(sdk, "claude", response_format={"type": "json_object"})  # Anthropic's API has none
