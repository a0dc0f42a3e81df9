"""The response cache through a running server, driven by the official SDKs: a hit replays
the first answer in every dialect and shape without calling the upstream, is billed at the
cache price (half, here) with the original token counts, says `x-ghostgpt-cache: hit`, and is
never shared between keys or accounts. Each test runs with the entries in the database (read
from it on every hit) and in Redis (with the process's copy of recent entries)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

import anthropic
import httpx
import pytest
from google import genai
from google.genai import types
from openai import OpenAI

from .live import LiveServer, funded_account, manage, server_rows
from .loopback import Answer, Loopback, openai_stream

ADMIN_KEY = "sk-admin-response-cache-0123456789"
USAGE = {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100}
# gpt-cache at 2 per million in, 10 out: 1000 × 2 + 100 × 10 = 3000 → 0.003 a request;
# a hit at GHOSTGPT_RESPONSE_CACHE_PRICE=0.5 costs 0.0015 and saves 0.0015.
FULL = Decimal("0.003")
HALF = Decimal("0.0015")
PROMPT = "Tell me something. " * 150  # ~2,850 bytes: the 1,000 reported tokens are above the floor


class Upstream(Loopback):
    """An OpenAI-compatible API on loopback whose every answer is new ("Answer 1",
    "Answer 2", …), so a replayed answer is told from a fresh one; with tools, a call."""

    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()
        super().__init__(self.answer)

    def answer(self, path: str, headers: Mapping[str, str], raw: bytes) -> Answer:
        body = json.loads(raw or b"{}")
        with self.lock:
            self.calls += 1
            number = self.calls
        if body.get("tools"):
            call = {
                "index": 0,
                "id": f"call_{number}",
                "type": "function",
                "function": {"name": "get_weather", "arguments": json.dumps({"city": f"Paris {number}"})},
            }
            return openai_stream(
                body["model"], {"role": "assistant", "tool_calls": [call]}, "tool_calls", USAGE, number
            )
        return openai_stream(body["model"], {"role": "assistant", "content": f"Answer {number}"}, "stop", USAGE, number)


@pytest.fixture(scope="module", params=["database", "redis"])
def site(request: pytest.FixtureRequest, redis_url: str) -> Iterator[tuple[LiveServer, Upstream]]:
    upstream = Upstream()
    routes = {
        "upstreams": {"up": {"base_url": f"{upstream.url}/v1", "api_key": "sk-up"}},
        "models": {
            "gpt-cache": {"deployments": [{"upstream": "up"}], "context_length": 128000, "tools": True},
            "gpt-always": {"deployments": [{"upstream": "up"}], "context_length": 128000, "response_cache": True},
        },
    }
    env = {
        "GHOSTGPT_ADMIN_KEY": ADMIN_KEY,
        "GHOSTGPT_PRICE_CACHE_SECONDS": "0",
        "GHOSTGPT_RESPONSE_CACHE_PRICE": "0.5",
        # In the database, every hit read from it (no copy kept in the process); in Redis, with
        # the process's own copy of recent entries (the default).
        **({"REDIS_URL": redis_url} if request.param == "redis" else {"GHOSTGPT_RESPONSE_CACHE_LOCAL_BYTES": "0"}),
    }
    server = LiveServer(routes=routes, env=env)
    for model in ("gpt-cache", "gpt-always"):
        manage(server, "set_price", model, "--prompt", "2", "--completion", "10")
    yield server, upstream
    server.stop()
    upstream.close()


def _client(server: LiveServer, key: str, cache: str | None = "use") -> OpenAI:
    headers = {"x-ghostgpt-cache": cache} if cache else None
    return OpenAI(base_url=server.base_url + "/v1", api_key=key, max_retries=0, default_headers=headers)


def _chat(server: LiveServer, key: str, *, cache: str | None = "use", model: str = "gpt-cache", **extra: Any) -> Any:
    """A chat completion and the response's X-GhostGPT-Cache header."""
    raw = _client(server, key, cache).chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": PROMPT}], max_tokens=500, **extra
    )
    return raw.parse(), raw.headers.get("x-ghostgpt-cache")


def _funded(server: LiveServer, name: str) -> tuple[int, str]:
    return funded_account(server.base_url, ADMIN_KEY, name, Decimal("1"))


def _charges(server: LiveServer, account: int) -> list[tuple[bool, Decimal, Decimal, int, int]]:
    rows = server_rows(
        server,
        "select cache_hit, prompt_cost + completion_cost, cache_saved, prompt_tokens, completion_tokens "
        "from chat_usagerecord where account_id = %s order by id",
        (account,),
    )
    return [(bool(hit), Decimal(str(cost)), Decimal(str(saved)), p, c) for hit, cost, saved, p, c in rows]


def test_a_hit_replays_the_answer_without_the_upstream_and_bills_the_cache_price(
    site: tuple[LiveServer, Upstream],
) -> None:
    server, upstream = site
    account, key = _funded(server, f"hit-{id(site)}")
    first, state = _chat(server, key, temperature=0)
    assert state == "miss"
    calls = upstream.calls
    second, state = _chat(server, key, temperature=0)
    assert state == "hit"
    assert upstream.calls == calls, "a hit must not call the upstream"
    assert second.choices[0].message.content == first.choices[0].message.content
    assert second.id != first.id  # a response of its own, with the original's content
    assert (second.usage.prompt_tokens, second.usage.completion_tokens) == (1000, 100)
    assert (first.usage.model_extra["total_cost"], second.usage.model_extra["total_cost"]) == (0.003, 0.0015)
    assert _charges(server, account) == [(False, FULL, Decimal(0), 1000, 100), (True, HALF, HALF, 1000, 100)]
    balance = Decimal(str(server_rows(server, "select balance from chat_account where id = %s", (account,))[0][0]))
    assert balance == Decimal(1) - FULL - HALF


def test_a_hit_is_replayed_in_every_dialect_and_shape(site: tuple[LiveServer, Upstream]) -> None:
    server, upstream = site
    _, key = _funded(server, f"dialects-{id(site)}")
    # Chat JSON, then the same question as a stream: one answer.
    first, _ = _chat(server, key, seed=7)
    calls = upstream.calls
    stream = _client(server, key).chat.completions.create(
        model="gpt-cache",
        messages=[{"role": "user", "content": PROMPT}],
        max_tokens=500,
        seed=7,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == first.choices[0].message.content
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 1000
    assert upstream.calls == calls

    # Anthropic's Messages API, JSON then stream.
    claude = anthropic.Anthropic(
        base_url=server.base_url, api_key=key, max_retries=0, default_headers={"x-ghostgpt-cache": "use"}
    )
    # (this SDK's create() has no `temperature` argument of its own: sent as Anthropic documents it)
    asked = {
        "model": "gpt-cache",
        "max_tokens": 300,
        "messages": [{"role": "user", "content": "Hi"}],
        "extra_body": {"temperature": 0},
    }
    message = claude.messages.create(**asked)  # type: ignore[arg-type]
    calls = upstream.calls
    with claude.messages.stream(**asked) as streamed:  # type: ignore[arg-type]
        text = "".join(streamed.text_stream)
        final = streamed.get_final_message()
    assert text == message.content[0].text  # type: ignore[union-attr]
    assert final.usage.input_tokens == 1000 and final.usage.output_tokens == 100
    assert upstream.calls == calls

    # Gemini, then the Responses API.
    gemini = genai.Client(
        api_key=key,
        http_options=types.HttpOptions(base_url=server.base_url, headers={"x-ghostgpt-cache": "use"}),
    )
    config = types.GenerateContentConfig(max_output_tokens=300, temperature=0)
    answer = gemini.models.generate_content(model="gpt-cache", contents="Hello there", config=config)
    calls = upstream.calls
    again = gemini.models.generate_content(model="gpt-cache", contents="Hello there", config=config)
    assert again.text == answer.text and upstream.calls == calls
    assert again.usage_metadata is not None and again.usage_metadata.prompt_token_count == 1000

    responses = _client(server, key).responses
    made = responses.create(model="gpt-cache", input="Bonjour", max_output_tokens=300, temperature=0)
    calls = upstream.calls
    remade = responses.create(model="gpt-cache", input="Bonjour", max_output_tokens=300, temperature=0)
    assert remade.output_text == made.output_text and remade.id != made.id and upstream.calls == calls


def test_a_function_call_is_cached_like_any_answer(site: tuple[LiveServer, Upstream]) -> None:
    server, upstream = site
    _, key = _funded(server, f"tools-{id(site)}")
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    first, state = _chat(server, key, temperature=0, tools=tools)
    assert state == "miss" and first.choices[0].finish_reason == "tool_calls"
    calls = upstream.calls
    second, state = _chat(server, key, temperature=0, tools=tools)
    assert state == "hit" and upstream.calls == calls
    assert [(c.id, c.function.name, c.function.arguments) for c in second.choices[0].message.tool_calls] == [
        (c.id, c.function.name, c.function.arguments) for c in first.choices[0].message.tool_calls
    ]


def test_only_deterministic_requests_are_cached_and_skip_wins(site: tuple[LiveServer, Upstream]) -> None:
    server, upstream = site
    _, key = _funded(server, f"rules-{id(site)}")
    calls = upstream.calls
    one, state = _chat(server, key)  # no temperature, no seed: the model samples
    assert state == "uncacheable"
    two, state = _chat(server, key)
    assert state == "uncacheable" and upstream.calls == calls + 2
    assert one.choices[0].message.content != two.choices[0].message.content
    # Not asked for: no header, no cache.
    _, state = _chat(server, key, cache=None, temperature=0)
    _, state2 = _chat(server, key, cache=None, temperature=0)
    assert state is None and state2 is None and upstream.calls == calls + 4
    # A routed model that opts in caches without the header; `skip` still refuses it.
    _, state = _chat(server, key, cache=None, model="gpt-always", temperature=0)
    _, state2 = _chat(server, key, cache=None, model="gpt-always", temperature=0)
    assert (state, state2) == ("miss", "hit")
    calls = upstream.calls
    _, state = _chat(server, key, cache="skip", model="gpt-always", temperature=0)
    assert state is None and upstream.calls == calls + 1
    bad = httpx.post(
        server.base_url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}", "x-ghostgpt-cache": "sometimes"},
        json={"model": "gpt-cache", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "x-ghostgpt-cache"


def test_answers_are_never_shared_between_keys_or_accounts(site: tuple[LiveServer, Upstream]) -> None:
    server, upstream = site
    _, key = _funded(server, f"owner-{id(site)}")
    _, stranger = _funded(server, f"stranger-{id(site)}")
    sibling = httpx.post(
        server.base_url + "/api/v1/keys",
        headers={"Authorization": f"Bearer {key}"},
        json={"name": "sibling", "response_cache": True},
    ).json()
    assert sibling["response_cache"] is True
    mine, _ = _chat(server, key, temperature=0)
    for other in (stranger, sibling["key"]):
        theirs, state = _chat(server, other, temperature=0)
        assert state == "miss" and theirs.choices[0].message.content != mine.choices[0].message.content
    # The key's own opt-in: no header needed for its second request, which gets its own answer.
    calls = upstream.calls
    again, state = _chat(server, sibling["key"], cache=None, temperature=0)
    assert state == "hit" and upstream.calls == calls
    assert again.choices[0].message.content == theirs.choices[0].message.content


def test_the_console_shows_hits_and_what_they_saved(site: tuple[LiveServer, Upstream]) -> None:
    server, _ = site
    _, key = _funded(server, f"console-{id(site)}")
    for _ in range(3):
        _chat(server, key, temperature=0)
    with httpx.Client(base_url=server.base_url, timeout=30) as console:
        console.get("/console")
        signed = console.post(
            "/console/api/session", json={"key": key}, headers={"X-CSRFToken": console.cookies["csrftoken"]}
        )
        assert signed.status_code == 201
        totals = console.get("/console/api/usage").json()["totals"]
        requests = console.get("/console/api/requests").json()["data"]
    assert (totals["requests"], totals["cache_hits"], Decimal(totals["cache_saved"])) == (3, 2, 2 * HALF)
    assert Decimal(totals["cost"]) == FULL + 2 * HALF
    assert [row["cache_hit"] for row in requests] == [True, True, False]
