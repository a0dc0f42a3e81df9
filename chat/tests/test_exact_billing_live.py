"""Billing as exact as the providers' own: each upstream answers with a usage object built
from its provider's documentation (cache reads, cache writes, reasoning), each client
dialect asks through its official SDK, and what GhostGPT charges must equal amounts worked
out by hand from the providers' list prices — written here as numbers, never computed by
GhostGPT's pricing code — to the ledger's ten places.

Usage objects:
- OpenAI, prompt caching guide: prompt 2006 (1920 cached), completion 300.
- OpenAI, reasoning guide: prompt 75, completion 1186 (1024 reasoning).
- Anthropic, prompt caching guide: input 21, cache_creation 188086, cache_read 0, output 393
  (cache counts outside input_tokens).
- Gemini (illustrative, in the documented fields): promptTokenCount 1200 with
  cachedContentTokenCount 1000, candidatesTokenCount 50, thoughtsTokenCount 500 (thoughts
  outside the candidates, billed as output).

List prices (USD per million tokens), as an operator would set them:
- gpt-4o: input 2.50, cached input 1.25, output 10.00.
- o1: input 15.00, cached input 7.50, output 60.00 (reasoning billed as output).
- Claude Sonnet 4: input 3.00, 5-minute cache write 3.75, cache read 0.30, output 15.00.
- Gemini 2.5 Pro (prompts up to 200k): input 1.25, cached 0.31, output 10.00 (thinking
  included).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anthropic
import httpx
import pytest
from google import genai
from google.genai import types
from openai import OpenAI

from .live import LiveServer, funded_account, manage, server_books, server_rows

ADMIN_KEY = "sk-admin-exact-billing-0123456789"
MAX_TOKENS = 2000
TEXT = "Hello."

OPENAI_CACHE = {
    "prompt_tokens": 2006,
    "completion_tokens": 300,
    "total_tokens": 2306,
    "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
}
OPENAI_REASONING = {
    "prompt_tokens": 75,
    "completion_tokens": 1186,
    "total_tokens": 1261,
    "prompt_tokens_details": {"cached_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 1024},
}
ANTHROPIC_CACHE_WRITE = {
    "input_tokens": 21,
    "cache_creation_input_tokens": 188086,
    "cache_read_input_tokens": 0,
    "output_tokens": 393,
}
GEMINI_THINKING = {
    "promptTokenCount": 1200,
    "cachedContentTokenCount": 1000,
    "candidatesTokenCount": 50,
    "thoughtsTokenCount": 500,
    "totalTokenCount": 1750,
}

# model → (prompt size in bytes that the reported count fits, the parts, and by hand:
# prompt cost, completion cost)
CASES: dict[str, dict[str, Any]] = {
    "gpt-4o": {
        "bytes": 4000,
        # 86 × 2.50 + 1920 × 1.25 = 215 + 2400 = 2615 → 0.002615; 300 × 10 = 3000 → 0.003
        "prompt_cost": Decimal("0.002615"),
        "completion_cost": Decimal("0.003"),
        "tokens": (2006, 300),
        "parts": {"cached": 1920, "write": 0, "reasoning": 0},
    },
    "o1": {
        "bytes": 200,
        # 75 × 15 = 1125 → 0.001125; 1186 × 60 = 71160 → 0.07116
        "prompt_cost": Decimal("0.001125"),
        "completion_cost": Decimal("0.07116"),
        "tokens": (75, 1186),
        "parts": {"cached": 0, "write": 0, "reasoning": 1024},
    },
    "claude-sonnet-4": {
        "bytes": 400_000,
        # 21 × 3 + 188086 × 3.75 = 63 + 705322.5 = 705385.5 → 0.7053855; 393 × 15 = 5895 → 0.005895
        "prompt_cost": Decimal("0.7053855"),
        "completion_cost": Decimal("0.005895"),
        "tokens": (188107, 393),
        "parts": {"cached": 0, "write": 188086, "reasoning": 0},
    },
    "gemini-2.5-pro": {
        "bytes": 4000,
        # 200 × 1.25 + 1000 × 0.31 = 250 + 310 = 560 → 0.00056; (50 + 500) × 10 = 5500 → 0.0055
        "prompt_cost": Decimal("0.00056"),
        "completion_cost": Decimal("0.0055"),
        "tokens": (1200, 550),
        "parts": {"cached": 1000, "write": 0, "reasoning": 500},
    },
}
PRICES = {
    "gpt-4o": ["--prompt", "2.50", "--cached-prompt", "1.25", "--completion", "10.00"],
    "o1": ["--prompt", "15.00", "--cached-prompt", "7.50", "--completion", "60.00"],
    "claude-sonnet-4": ["--prompt", "3", "--cache-write", "3.75", "--cached-prompt", "0.30", "--completion", "15"],
    "gemini-2.5-pro": ["--prompt", "1.25", "--cached-prompt", "0.31", "--completion", "10"],
}


class Upstreams:
    """OpenAI, Anthropic and Gemini APIs on loopback, each answering "Hello." with its
    documented usage object — streamed, or whole where the request says `stream: false`."""

    def __init__(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self._send(200, "application/json", b'{"data": []}')

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
                owner.bodies.append((self.path, body))
                if self.path.startswith("/openai-cache/"):
                    self._openai(body, OPENAI_CACHE)
                elif self.path.startswith("/openai-think/"):
                    self._openai(body, OPENAI_REASONING)
                elif self.path.startswith("/anthropic/"):
                    self._anthropic()
                elif self.path.startswith("/gemini/"):
                    self._gemini()
                elif self.path.startswith("/down/"):
                    self._send(503, "application/json", b'{"error": {"message": "overloaded"}}')
                else:
                    self._send(404, "application/json", b'{"error": {"message": "no such path"}}')

            def _send(self, status: int, content_type: str, data: bytes) -> None:
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _openai(self, body: dict[str, Any], usage: dict[str, Any]) -> None:
                common = {"id": "chatcmpl-1", "created": 1, "model": body["model"]}
                if body.get("stream") is False:
                    message = {"role": "assistant", "content": TEXT}
                    whole = {
                        **common,
                        "object": "chat.completion",
                        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                        "usage": usage,
                    }
                    self._send(200, "application/json", json.dumps(whole).encode())
                    return
                chunk = {**common, "object": "chat.completion.chunk"}
                events = [
                    {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": TEXT}}]},
                    {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
                    {**chunk, "choices": [], "usage": usage},
                ]
                data = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"
                self._send(200, "text/event-stream", data)

            def _anthropic(self) -> None:
                start_usage = {**ANTHROPIC_CACHE_WRITE, "output_tokens": 1}
                events = [
                    ("message_start", {"type": "message_start", "message": {"id": "msg_1", "usage": start_usage}}),
                    (
                        "content_block_start",
                        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                    ),
                    (
                        "content_block_delta",
                        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": TEXT}},
                    ),
                    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
                    (
                        "message_delta",
                        {
                            "type": "message_delta",
                            "delta": {"stop_reason": "end_turn"},
                            "usage": {"output_tokens": ANTHROPIC_CACHE_WRITE["output_tokens"]},
                        },
                    ),
                    ("message_stop", {"type": "message_stop"}),
                ]
                data = b"".join(f"event: {n}\ndata: {json.dumps(d)}\n\n".encode() for n, d in events)
                self._send(200, "text/event-stream", data)

            def _gemini(self) -> None:
                chunk = {
                    "candidates": [
                        {"index": 0, "content": {"role": "model", "parts": [{"text": TEXT}]}, "finishReason": "STOP"}
                    ],
                    "usageMetadata": GEMINI_THINKING,
                    "modelVersion": "gemini-2.5-pro",
                }
                self._send(200, "text/event-stream", b"data: " + json.dumps(chunk).encode() + b"\r\n\r\n")

        self.bodies: list[tuple[str, dict[str, Any]]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def gateway() -> Iterator[tuple[LiveServer, Upstreams]]:
    upstreams = Upstreams()
    routes = {
        "upstreams": {
            "openai-cache": {"base_url": f"{upstreams.url}/openai-cache/v1", "api_key": "sk-up"},
            "openai-think": {"base_url": f"{upstreams.url}/openai-think/v1", "api_key": "sk-up"},
            "anthropic": {"kind": "anthropic", "base_url": f"{upstreams.url}/anthropic/v1", "api_key": "sk-up"},
            "gemini": {"kind": "gemini", "base_url": f"{upstreams.url}/gemini/v1beta", "api_key": "sk-up"},
            "down": {"base_url": f"{upstreams.url}/down/v1", "api_key": "sk-up"},
        },
        "models": {
            "gpt-4o": {"deployments": [{"upstream": "openai-cache"}], "context_length": 128000},
            "o1": {"deployments": [{"upstream": "openai-think"}], "context_length": 200000},
            "claude-sonnet-4": {"deployments": [{"upstream": "anthropic"}], "context_length": 1000000},
            "gemini-2.5-pro": {"deployments": [{"upstream": "gemini"}], "context_length": 1000000},
            "flaky": {"deployments": [{"upstream": "down"}], "context_length": 128000},
        },
    }
    server = LiveServer(routes=routes, env={"GHOSTGPT_ADMIN_KEY": ADMIN_KEY, "GHOSTGPT_PRICE_CACHE_SECONDS": "0"})
    for model, price in PRICES.items():
        manage(server, "set_price", model, *price)
    yield server, upstreams
    server.stop()
    upstreams.close()


def funded(server: LiveServer, name: str, amount: str) -> tuple[int, str]:
    return funded_account(server.base_url, ADMIN_KEY, name, Decimal(amount))


def prompt_of(size: int) -> str:
    return ("lorem ipsum " * (size // 12 + 1))[:size]


def ask(server: LiveServer, key: str, dialect: str, model: str, prompt: str) -> dict[str, int]:
    """One request in `dialect` through its official SDK; the usage the client was shown,
    as {prompt, completion, cached, write, reasoning} in our convention."""
    if dialect in ("chat", "chat-stream", "responses"):
        client = OpenAI(base_url=server.base_url + "/v1", api_key=key, max_retries=0)
        if dialect == "responses":
            response = client.responses.create(model=model, input=prompt, max_output_tokens=MAX_TOKENS)
            assert response.output_text == TEXT
            usage = response.usage
            assert usage is not None
            return {
                "prompt": usage.input_tokens,
                "completion": usage.output_tokens,
                "cached": usage.input_tokens_details.cached_tokens,
                "write": usage.input_tokens_details.cache_write_tokens or 0,
                "reasoning": usage.output_tokens_details.reasoning_tokens,
            }
        messages = [{"role": "user", "content": prompt}]
        if dialect == "chat":
            completion = client.chat.completions.create(model=model, messages=messages, max_tokens=MAX_TOKENS)  # type: ignore[arg-type]
            assert completion.choices[0].message.content == TEXT
            chat_usage = completion.usage
        else:
            stream = client.chat.completions.create(
                model=model,
                messages=messages,  # type: ignore[arg-type]
                max_tokens=MAX_TOKENS,
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = list(stream)
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == TEXT
            chat_usage = chunks[-1].usage
        assert chat_usage is not None and chat_usage.prompt_tokens_details and chat_usage.completion_tokens_details
        return {
            "prompt": chat_usage.prompt_tokens,
            "completion": chat_usage.completion_tokens,
            "cached": chat_usage.prompt_tokens_details.cached_tokens or 0,
            "write": chat_usage.prompt_tokens_details.cache_write_tokens or 0,
            "reasoning": chat_usage.completion_tokens_details.reasoning_tokens or 0,
        }
    if dialect == "messages":
        claude = anthropic.Anthropic(base_url=server.base_url, api_key=key, max_retries=0)
        message = claude.messages.create(
            model=model, max_tokens=MAX_TOKENS, messages=[{"role": "user", "content": prompt}]
        )
        assert message.content[0].text == TEXT  # type: ignore[union-attr]
        read = message.usage.cache_read_input_tokens or 0
        write = message.usage.cache_creation_input_tokens or 0
        return {
            "prompt": message.usage.input_tokens + read + write,  # Anthropic's counts are apart
            "completion": message.usage.output_tokens,
            "cached": read,
            "write": write,
            "reasoning": 0,  # inside output_tokens, not reported apart
        }
    client_g = genai.Client(api_key=key, http_options=types.HttpOptions(base_url=server.base_url))
    answer = client_g.models.generate_content(
        model=model, contents=prompt, config=types.GenerateContentConfig(max_output_tokens=MAX_TOKENS)
    )
    assert answer.text == TEXT
    meta = answer.usage_metadata
    assert meta is not None
    thoughts = meta.thoughts_token_count or 0
    return {
        "prompt": meta.prompt_token_count or 0,
        "completion": (meta.candidates_token_count or 0) + thoughts,  # Gemini's thoughts are apart
        "cached": meta.cached_content_token_count or 0,
        "write": 0,
        "reasoning": thoughts,
    }


def billed(server: LiveServer, account_id: int, count: int) -> tuple[Any, ...]:
    """The account's `count`-th usage row, once it is written."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        rows = server_rows(
            server,
            "SELECT prompt_tokens, completion_tokens, cached_tokens, cache_write_tokens, reasoning_tokens, "
            "prompt_cost, completion_cost FROM chat_usagerecord WHERE account_id = %s ORDER BY id",
            (account_id,),
        )
        if len(rows) >= count:
            return rows[count - 1]
        time.sleep(0.05)
    raise AssertionError(f"no usage row {count} for account {account_id}")


def exact(value: Any) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("1e-10"))


DIALECTS = ("chat", "chat-stream", "responses", "messages", "gemini")


@pytest.mark.parametrize("model", list(CASES))
def test_every_dialect_in_is_billed_what_the_provider_bills(gateway: tuple[LiveServer, Upstreams], model: str) -> None:
    server, _ = gateway
    case = CASES[model]
    start = Decimal("100")
    account_id, key = funded(server, f"exact-{model}", str(start))
    prompt = prompt_of(case["bytes"])
    expected = case["prompt_cost"] + case["completion_cost"]
    table = []
    for number, dialect in enumerate(DIALECTS, start=1):
        shown = ask(server, key, dialect, model, prompt)
        row = billed(server, account_id, number)
        tokens, parts, costs = row[:2], row[2:5], row[5:7]
        table.append((dialect, tokens, parts, [exact(c) for c in costs]))
        assert tuple(tokens) == case["tokens"], (dialect, tokens)
        assert tuple(parts) == (case["parts"]["cached"], case["parts"]["write"], case["parts"]["reasoning"]), dialect
        assert exact(costs[0]) == exact(case["prompt_cost"]) and exact(costs[1]) == exact(case["completion_cost"]), (
            dialect,
            costs,
        )
        # What the client is shown says the same, in its own dialect's fields.
        shown_parts = {"cached": shown["cached"], "write": shown["write"], "reasoning": shown["reasoning"]}
        if dialect == "messages":  # Anthropic's API has no reasoning count
            shown_parts["reasoning"] = case["parts"]["reasoning"]
        if dialect == "gemini":  # nor Gemini's a cache-write count (inside promptTokenCount)
            shown_parts["write"] = case["parts"]["write"]
        assert (shown["prompt"], shown["completion"]) == case["tokens"] and shown_parts == case["parts"], (
            dialect,
            shown,
        )
    balance, ledger, _ = server_books(server, account_id)
    # (SQLite hands its NUMERIC back as a float: compared at the ledger's ten places.)
    assert exact(balance) == exact(ledger) == exact(start - expected * len(DIALECTS)), table


def test_the_reservation_prices_the_prompt_at_its_dearest_rate(gateway: tuple[LiveServer, Upstreams]) -> None:
    """Anthropic's cache write (3.75) is dearer than its input (3.00): a request reserves
    its prompt bound at 3.75 and max_tokens at 15.00, and a balance short of that is 402."""
    server, upstreams = gateway
    _, key = funded(server, "exact-reserve", "0.01")
    calls = len(upstreams.bodies)
    response = httpx.post(
        server.base_url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={
            "model": "claude-sonnet-4",
            "messages": [{"role": "user", "content": prompt_of(4000)}],
            "max_tokens": MAX_TOKENS,
        },
    )
    assert response.status_code == 402, response.text
    message = response.json()["error"]["message"]
    found = re.search(r"may cost up to ([0-9.e-]+) \w+ \(up to (\d+) prompt tokens \+ max_tokens (\d+)", message)
    assert found, message
    bound, max_tokens = int(found[2]), int(found[3])
    assert max_tokens == MAX_TOKENS and bound >= 4000
    by_hand = (Decimal(bound) * Decimal("3.75") + Decimal(MAX_TOKENS) * Decimal(15)) / Decimal(1_000_000)
    assert Decimal(found[1]) == by_hand.quantize(Decimal(found[1]))
    assert len(upstreams.bodies) == calls  # refused before the upstream was called


def test_prices_are_shown_with_their_parts(gateway: tuple[LiveServer, Upstreams]) -> None:
    server, _ = gateway
    _, key = funded(server, "exact-prices", "1")
    models = httpx.get(server.base_url + "/v1/models", headers={"Authorization": f"Bearer {key}"}).json()
    claude = next(m for m in models["data"] if m["id"] == "claude-sonnet-4")
    assert claude["pricing"] == {
        "currency": "USD",
        "prompt_per_million": 3.0,
        "cached_prompt_per_million": 0.3,
        "cache_write_per_million": 3.75,
        "completion_per_million": 15.0,
        "reasoning_per_million": 15.0,  # none of its own: billed as output
        "per_image": 0.0,
        "per_audio_second": 0.0,
    }
    rates = httpx.get(server.base_url + "/api/v1/rates").json()
    gemini = next(r for r in rates["data"] if r["model"] == "gemini-2.5-pro")
    assert gemini["cached_prompt_per_million"] == 0.31 and gemini["cache_write_per_million"] == 1.25
    quote = httpx.get(
        server.base_url + "/console/api/quote",
        params={"prompt_tokens": 2006, "cached_tokens": 1920, "completion_tokens": 300},
    ).json()
    gpt = next(r for r in quote["data"] if r["model"] == "gpt-4o")
    assert Decimal(gpt["cost"]) == Decimal("0.005615")  # the guide's example, as billed above
    refused = httpx.get(
        server.base_url + "/console/api/quote",
        params={"prompt_tokens": 10, "cached_tokens": 11, "completion_tokens": 0},
    )
    assert refused.status_code == 400 and "cached_tokens" in refused.text


def test_cache_hints_reach_the_upstreams_that_honour_them(gateway: tuple[LiveServer, Upstreams]) -> None:
    server, upstreams = gateway
    _, key = funded(server, "exact-hints", "10")
    ephemeral = {"type": "ephemeral"}
    claude = anthropic.Anthropic(base_url=server.base_url, api_key=key, max_retries=0)
    claude.messages.create(
        model="claude-sonnet-4",
        max_tokens=MAX_TOKENS,
        system=[{"type": "text", "text": "You are terse.", "cache_control": ephemeral}],
        tools=[
            {
                "name": "lookup",
                "description": "Look a word up",
                "input_schema": {"type": "object", "properties": {"word": {"type": "string"}}},
                "cache_control": {"type": "ephemeral", "ttl": "1h"},
            }
        ],
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": prompt_of(3000), "cache_control": ephemeral},
                    {"type": "text", "text": "Summarise."},
                ],
            }
        ],
    )
    path, body = upstreams.bodies[-1]
    assert path.startswith("/anthropic/")
    # (after the operator's persona prompt, which the system text joins)
    assert len(body["system"]) == 1 and body["system"][0]["text"].endswith("You are terse.")
    assert body["system"][0]["cache_control"] == ephemeral
    assert body["tools"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    # The turn's parts are one message here: its breakpoint closes it.
    assert body["messages"][0]["content"][-1]["cache_control"] == ephemeral

    openai_client = OpenAI(base_url=server.base_url + "/v1", api_key=key, max_retries=0)
    # OpenRouter's way of asking an Anthropic model to cache, from an OpenAI client.
    openai_client.chat.completions.create(
        model="claude-sonnet-4",
        max_tokens=MAX_TOKENS,
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "long document", "cache_control": ephemeral}]}  # type: ignore[list-item,typeddict-unknown-key]
        ],
    )
    assert upstreams.bodies[-1][1]["messages"][0]["content"][-1]["cache_control"] == ephemeral
    openai_client.chat.completions.create(
        model="gpt-4o",
        max_tokens=MAX_TOKENS,
        messages=[{"role": "user", "content": "hi"}],
        prompt_cache_key="tenant-42",
    )
    assert upstreams.bodies[-1][1]["prompt_cache_key"] == "tenant-42"
    openai_client.responses.create(model="gpt-4o", input="hi", prompt_cache_key="tenant-43")
    assert upstreams.bodies[-1][1]["prompt_cache_key"] == "tenant-43"

    calls = len(upstreams.bodies)
    too_many = [{"type": "text", "text": f"part {i}", "cache_control": ephemeral} for i in range(5)]
    refused = httpx.post(
        server.base_url + "/v1/messages",
        headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
        json={"model": "claude-sonnet-4", "max_tokens": 10, "messages": [{"role": "user", "content": too_many}]},
    )
    # Each part is one breakpoint for Anthropic, which allows four.
    assert refused.status_code == 400, refused.text
    bad = httpx.post(
        server.base_url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={
            "model": "claude-sonnet-4",
            "max_tokens": 10,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "x", "cache_control": {"ttl": 5}}]}],
        },
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "messages[0].content[0].cache_control"
    assert len(upstreams.bodies) == calls


def test_a_fallback_list_bills_the_model_that_answered(gateway: tuple[LiveServer, Upstreams]) -> None:
    """OpenRouter's `models`: tried in order; billed at the price of the one that answered;
    the reservation is the dearest worst case among them."""
    server, upstreams = gateway
    manage(server, "set_price", "flaky", "--prompt", "100", "--completion", "100")
    account_id, key = funded(server, "exact-fallback", "10")
    client = OpenAI(base_url=server.base_url + "/v1", api_key=key, max_retries=0)
    prompt = prompt_of(CASES["gpt-4o"]["bytes"])
    raw = client.chat.completions.with_raw_response.create(
        model="flaky",
        messages=[{"role": "user", "content": prompt}],
        max_tokens=MAX_TOKENS,
        extra_body={"models": ["flaky", "gpt-4o"]},
    )
    completion = raw.parse()
    assert completion.model == "gpt-4o" and raw.headers["x-ghostgpt-model"] == "gpt-4o"
    assert completion.choices[0].message.content == TEXT
    row = billed(server, account_id, 1)
    assert [exact(c) for c in row[5:7]] == [
        exact(CASES["gpt-4o"]["prompt_cost"]),
        exact(CASES["gpt-4o"]["completion_cost"]),
    ]
    model = server_rows(server, "SELECT model FROM chat_usagerecord WHERE account_id = %s", (account_id,))
    assert model == [("gpt-4o",)]
    # Streamed: the text comes from the model that answered, and says so.
    stream = client.chat.completions.create(
        model="flaky",
        messages=[{"role": "user", "content": prompt}],
        max_tokens=MAX_TOKENS,
        stream=True,
        extra_body={"models": ["flaky", "gpt-4o"]},
    )
    texts = [c for c in stream if c.choices and c.choices[0].delta.content]
    assert "".join(c.choices[0].delta.content or "" for c in texts) == TEXT and {c.model for c in texts} == {"gpt-4o"}
    balance, ledger, _ = server_books(server, account_id)
    assert exact(balance) == exact(ledger) == exact(Decimal(10) - 2 * Decimal("0.005615"))

    # The reservation: "flaky" (100 per million) is the dearest — a balance short of its
    # worst case is refused though gpt-4o would have answered for less.
    _, poor = funded(server, "exact-fallback-poor", "0.5")
    calls = len(upstreams.bodies)
    refused = httpx.post(
        server.base_url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {poor}"},
        json={
            "models": ["gpt-4o", "flaky"],
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": MAX_TOKENS,
        },
    )
    assert refused.status_code == 402, refused.text
    found = re.search(r"\(up to (\d+) prompt tokens", refused.json()["error"]["message"])
    assert found and "'flaky'" in refused.json()["error"]["message"]
    # A model the key may not use, or that does not exist, refuses the whole list.
    unknown = httpx.post(
        server.base_url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "gpt-4o", "models": ["nope"], "messages": [{"role": "user", "content": "hi"}]},
    )
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"
    malformed = httpx.post(
        server.base_url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "gpt-4o", "models": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert malformed.status_code == 400 and malformed.json()["error"]["param"] == "models"
    assert len(upstreams.bodies) == calls
