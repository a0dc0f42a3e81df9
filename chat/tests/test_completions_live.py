"""POST /v1/completions (legacy) and GET /v1/models against a live server."""

from __future__ import annotations

import httpx
from openai import OpenAI

from .openapi import assert_matches
from .sse import read_sse


def test_models_list_and_retrieve(client: OpenAI, http: httpx.Client) -> None:
    models = client.models.list()
    assert [m.id for m in models.data] == ["ghostgpt", "all-MiniLM-L6-v2"]
    assert models.data[0].object == "model" and models.data[0].owned_by
    assert client.models.retrieve("ghostgpt").id == "ghostgpt"
    assert_matches("ListModelsResponse", http.get("/v1/models").json())
    assert_matches("Model", http.get("/v1/models/ghostgpt").json())


def test_legacy_completion_string_prompt(client: OpenAI, http: httpx.Client) -> None:
    completion = client.completions.create(
        model="ghostgpt", prompt="The capital of France is", max_tokens=32, temperature=0
    )
    assert completion.object == "text_completion"
    assert completion.choices[0].text.strip()
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    raw = http.post("/v1/completions", json={"model": "ghostgpt", "prompt": "Hello", "max_tokens": 32}).json()
    assert_matches("CreateCompletionResponse", raw)


def test_legacy_completion_prompt_list_gives_a_choice_per_prompt_and_n(client: OpenAI) -> None:
    completion = client.completions.create(
        model="ghostgpt", prompt=["Roses are red,", "One, two, three,"], n=2, max_tokens=32, temperature=0
    )
    assert [c.index for c in completion.choices] == [0, 1, 2, 3]
    # Greedy decoding: both samples of the same prompt agree.
    assert completion.choices[0].text == completion.choices[1].text
    assert completion.choices[2].text == completion.choices[3].text


def test_legacy_completion_token_prompts(http: httpx.Client) -> None:
    tokens = http.post(
        "/v1/completions", json={"model": "ghostgpt", "prompt": [[504, 3458, 282], [19556]], "max_tokens": 32}
    )
    assert tokens.status_code == 200, tokens.text
    assert len(tokens.json()["choices"]) == 2
    out_of_vocab = http.post("/v1/completions", json={"model": "ghostgpt", "prompt": [10**9], "max_tokens": 32})
    assert out_of_vocab.status_code == 400
    assert out_of_vocab.json()["error"]["param"] == "prompt"


def test_legacy_stream_shapes(lenient_client: OpenAI, http: httpx.Client) -> None:
    body = {
        "model": "ghostgpt",
        "prompt": "Once upon a time",
        "max_tokens": 32,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with http.stream("POST", "/v1/completions", json=body) as response:
        chunks = read_sse(response)
    for chunk in chunks:
        assert_matches("StreamedCompletionChunk", chunk)
    assert len({c["id"] for c in chunks}) == 1
    assert sum(1 for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]) == 1
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0

    text = "".join(
        c.choices[0].text
        for c in lenient_client.completions.create(
            model="ghostgpt", prompt="Once upon a time", max_tokens=32, temperature=0, stream=True
        )
    )
    assert text.strip()


def test_models_show_price_and_context_and_follow_the_key_allow_list(http: httpx.Client, live: object) -> None:
    listed = http.get("/v1/models").json()["data"][0]
    assert listed["context_length"] > 0 and listed["pricing"]["prompt_per_million"] == 0.0
    created = http.post("/api/v1/keys", json={"name": "only-other", "models": ["some-other-model"]}).json()
    restricted = httpx.Client(base_url=http.base_url, headers={"Authorization": f"Bearer {created['key']}"}, timeout=60)
    assert restricted.get("/v1/models").json()["data"] == []
    denied = restricted.post(
        "/v1/chat/completions", json={"model": "ghostgpt", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert denied.status_code == 404 and denied.json()["error"]["code"] == "model_not_found"


def test_free_model_usage_carries_zero_costs(client: OpenAI) -> None:
    reply = client.chat.completions.create(
        model="ghostgpt", messages=[{"role": "user", "content": "Hi"}], max_tokens=32
    )
    extra = reply.usage.model_extra if reply.usage else {}
    assert extra == {"prompt_cost": 0.0, "completion_cost": 0.0, "total_cost": 0.0}
