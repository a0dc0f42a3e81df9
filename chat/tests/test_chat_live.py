"""POST /v1/chat/completions against a live server, through the official openai SDK."""

from __future__ import annotations

from collections import Counter

import httpx
from openai import OpenAI

from .live import LiveServer
from .openapi import assert_matches
from .sse import read_sse

ASK = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]


def test_non_stream_answer_matches_the_spec(client: OpenAI, http: httpx.Client) -> None:
    completion = client.chat.completions.create(model="ghostgpt", messages=ASK, max_tokens=40, temperature=0)
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert "Paris" in (completion.choices[0].message.content or "")
    assert completion.choices[0].finish_reason in ("stop", "length")
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens

    raw = http.post("/v1/chat/completions", json={"model": "ghostgpt", "messages": ASK, "max_tokens": 40}).json()
    assert_matches("CreateChatCompletionResponse", raw)
    assert raw["choices"][0]["message"]["refusal"] is None and raw["choices"][0]["logprobs"] is None


def test_stream_with_usage_follows_openai_chunk_rules(client: OpenAI, http: httpx.Client) -> None:
    body = {
        "model": "ghostgpt",
        "messages": ASK,
        "max_tokens": 40,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        chunks = read_sse(response)
    for chunk in chunks:
        assert_matches("CreateChatCompletionStreamResponse", chunk)
    assert len({c["id"] for c in chunks}) == 1, "all chunks share one id"
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    finishes = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert len(finishes) == 1 and finishes[0]["choices"][0]["delta"] == {}
    last = chunks[-1]
    assert last["choices"] == [] and last["usage"]["completion_tokens"] > 0
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    # The SDK sees the same stream.
    streamed = client.chat.completions.create(
        model="ghostgpt",
        messages=ASK,
        max_tokens=40,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    sdk_chunks = list(streamed)
    assert sdk_chunks[-1].usage is not None and sdk_chunks[-1].choices == []
    assert text.strip()


def test_stream_without_usage_has_no_usage_chunk(http: httpx.Client) -> None:
    body = {"model": "ghostgpt", "messages": ASK, "max_tokens": 32, "stream": True}
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        chunks = read_sse(response)
    assert all(chunk["choices"] for chunk in chunks)
    assert "usage" not in chunks[-1] or chunks[-1]["usage"] is None


def test_n_choices_each_get_role_and_exactly_one_finish(http: httpx.Client) -> None:
    body = {"model": "ghostgpt", "messages": ASK, "max_tokens": 32, "n": 3, "stream": True, "seed": 1}
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        chunks = read_sse(response)
    roles = Counter(c["choices"][0]["index"] for c in chunks if c["choices"][0]["delta"].get("role"))
    finishes = Counter(c["choices"][0]["index"] for c in chunks if c["choices"][0]["finish_reason"])
    assert roles == finishes == Counter({0: 1, 1: 1, 2: 1})

    collected = http.post("/v1/chat/completions", json={**body, "stream": False}).json()
    assert [c["index"] for c in collected["choices"]] == [0, 1, 2]


def test_same_seed_same_output_different_seed_differs(client: OpenAI) -> None:
    def ask(seed: int) -> str:
        prompt = [{"role": "user", "content": "Write a short poem about the sea."}]
        reply = client.chat.completions.create(
            model="ghostgpt", messages=prompt, max_tokens=48, temperature=1.0, seed=seed
        )
        return reply.choices[0].message.content or ""

    first, second, other = ask(1234), ask(1234), ask(98765)
    assert first == second
    assert first != other


def test_stop_sequences_cut_the_text(client: OpenAI) -> None:
    prompt = [{"role": "user", "content": "List the numbers from 1 to 10 separated by commas."}]
    free = client.chat.completions.create(model="ghostgpt", messages=prompt, max_tokens=48, temperature=0)
    text = free.choices[0].message.content or ""
    assert "5" in text, text
    stopped = client.chat.completions.create(
        model="ghostgpt", messages=prompt, max_tokens=48, temperature=0, stop=["5"]
    )
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.choices[0].message.content == text[: text.index("5")]
    listed = client.chat.completions.create(
        model="ghostgpt", messages=prompt, max_tokens=48, temperature=0, stop=["zzz", "5"]
    )
    assert listed.choices[0].message.content == stopped.choices[0].message.content


def test_max_tokens_limits_and_reports_length(client: OpenAI) -> None:
    prompt = [{"role": "user", "content": "Tell me a very long story about a dragon and a knight."}]
    reply = client.chat.completions.create(
        model="ghostgpt",
        messages=prompt,
        max_tokens=32,
        temperature=0.7,
        seed=3,
        frequency_penalty=0.5,
        presence_penalty=0.3,
        top_p=0.9,
        user="tester-1",
    )
    assert reply.usage is not None and reply.usage.completion_tokens <= 32
    if reply.choices[0].finish_reason == "length":
        assert reply.usage.completion_tokens == 32
    via_new_name = client.chat.completions.create(model="ghostgpt", messages=prompt, max_completion_tokens=32, seed=3)
    assert via_new_name.usage is not None and via_new_name.usage.completion_tokens <= 32


def test_content_parts_and_unknown_parameters_are_accepted(http: httpx.Client) -> None:
    body = {
        "model": "ghostgpt",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Say hello."}, {"type": "text", "text": "Briefly."}]}
        ],
        "max_tokens": 32,
        "top_k": 20,
        "repetition_penalty": 1.1,
        "mirostat": None,
        "logprobs": None,
        "logit_bias": None,
        "parallel_tool_calls": None,
    }
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"]


def test_concurrent_streams_all_complete(live: LiveServer) -> None:
    import asyncio

    async def one(session: httpx.AsyncClient, i: int) -> str:
        body = {
            "model": "ghostgpt",
            "messages": [{"role": "user", "content": f"Say the number {i}."}],
            "max_tokens": 32,
            "stream": True,
        }
        text = []
        async with session.stream("POST", "/v1/chat/completions", json=body) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if line.startswith("data: {"):
                    import json

                    chunk = json.loads(line[6:])
                    text.append(chunk["choices"][0]["delta"].get("content") or "")
                if line == "data: [DONE]":
                    return "".join(text)
        raise AssertionError("stream ended without [DONE]")

    async def many() -> list[str]:
        headers = {"Authorization": f"Bearer {live.api_key}"}
        async with httpx.AsyncClient(base_url=live.base_url, headers=headers, timeout=120) as session:
            return await asyncio.gather(*(one(session, i) for i in range(6)))

    answers = asyncio.run(many())
    assert len(answers) == 6 and all(answers)
    assert live.stats()["waiting"] == 0 and live.stats()["running"] == 0
