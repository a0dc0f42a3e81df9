"""Every request body a dialect reads, with each of its values replaced in turn by a value
of another JSON type (an object where a string belongs, an array, a number, null…): a clear
4xx or a normal answer, never a 5xx. The class of bug it closes: a client value used as a
dict key or set member, or read without a type check (the schema fuzzer found `"type": {}`
in a tool message's content part). Valid shapes reach loopback fake upstreams of each wire
(OpenAI, Anthropic, Gemini), so what the translators read is covered as well."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .fake_upstream import FakeUpstream
from .live import LiveServer

PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
IMAGE = "data:image/png;base64," + PIXEL
# What each value is swapped for: every other JSON type, and an object inside an object.
SWAPS: list[Any] = [{}, [], None, 1.5, True, "x", {"type": {}}, [{}]]
FUNCTION = {
    "type": "function",
    "function": {"name": "f", "description": "d", "parameters": {"type": "object", "properties": {}}},
}

CHAT = {
    "model": "text-gpt",
    "max_tokens": 4,
    "messages": [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": IMAGE}}],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "42"}]},
    ],
    "tools": [FUNCTION],
    "tool_choice": {"type": "function", "function": {"name": "f"}},
    "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object"}}},
    "stop": ["END"],
    "user": "u",
    "seed": 1,
    "n": 1,
}
COMPLETION = {"model": "text-gpt", "prompt": ["Once", "upon"], "max_tokens": 4, "stop": "END", "echo": False}
RESPONSES = {
    "model": "text-gpt",
    "instructions": "Be brief.",
    "max_output_tokens": 16,
    "input": [
        {
            "role": "user",
            "content": [{"type": "input_text", "text": "hi"}, {"type": "input_image", "image_url": IMAGE}],
        },
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "42"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "ok"}]},
    ],
    "tools": [{"type": "function", "name": "f", "parameters": {"type": "object", "properties": {}}}],
    "tool_choice": {"type": "function", "name": "f"},
    "text": {"format": {"type": "json_schema", "name": "n", "schema": {"type": "object"}}},
    "store": False,
}
EMBEDDINGS = {"model": "all-MiniLM-L6-v2", "input": ["ghost", "ship"], "encoding_format": "float"}
ANTHROPIC = {
    "model": "claude-x",
    "max_tokens": 16,
    "system": [{"type": "text", "text": "Be brief."}],
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "hi"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": IMAGE.split(",")[1]}},
            ],
        },
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "42"}]}],
        },
    ],
    "tools": [{"name": "f", "description": "d", "input_schema": {"type": "object", "properties": {}}}],
    "tool_choice": {"type": "tool", "name": "f"},
    "stop_sequences": ["END"],
    "metadata": {"user_id": "u"},
}
GEMINI = {
    "systemInstruction": {"parts": [{"text": "Be brief."}]},
    "contents": [
        {
            "role": "user",
            "parts": [{"text": "hi"}, {"inlineData": {"mimeType": "image/png", "data": IMAGE.split(",")[1]}}],
        },
        {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"a": 1}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"r": 42}}}]},
    ],
    "tools": [{"functionDeclarations": [{"name": "f", "description": "d", "parameters": {"type": "OBJECT"}}]}],
    "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}},
    "generationConfig": {"maxOutputTokens": 16, "stopSequences": ["END"], "responseMimeType": "application/json"},
}
BODIES = {
    "chat": ("/v1/chat/completions", CHAT),
    "completions": ("/v1/completions", COMPLETION),
    "responses": ("/v1/responses", RESPONSES),
    "embeddings": ("/v1/embeddings", EMBEDDINGS),
    "anthropic": ("/v1/messages", ANTHROPIC),
    "gemini": ("/v1beta/models/gemini-x:generateContent", GEMINI),
}


def routes(fake: FakeUpstream) -> dict[str, Any]:
    return {
        "upstreams": {
            "openai": {"base_url": f"{fake.url}/ok/v1", "api_key": "k"},
            "claude": {"kind": "anthropic", "base_url": f"{fake.url}/anthropic/v1", "api_key": "k"},
            "google": {"kind": "gemini", "base_url": f"{fake.url}/gemini/v1beta", "api_key": "k"},
        },
        "models": {
            "text-gpt": {
                "vision": True,
                "json_schema": True,
                "deployments": [{"upstream": "openai", "model": "gpt-4o"}],
            },
            "claude-x": {"vision": True, "deployments": [{"upstream": "claude", "model": "claude-x-1"}]},
            "gemini-x": {"vision": True, "deployments": [{"upstream": "google", "model": "gemini-x-1"}]},
        },
    }


@pytest.fixture(scope="module")
def gateway(fake: FakeUpstream) -> Iterator[LiveServer]:
    server = LiveServer(routes=routes(fake), env={"GHOSTGPT_SYSTEM_PROMPT": ""})
    yield server
    server.stop()


def paths(value: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place in a JSON document (the root's children and down)."""
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        yield (*at, key)
        yield from paths(child, (*at, key))


def swapped(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    copied = copy.deepcopy(body)
    node = copied
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return copied


@pytest.mark.parametrize("dialect", list(BODIES))
def test_a_value_of_another_type_anywhere_is_never_a_server_error(gateway: LiveServer, dialect: str) -> None:
    path, body = BODIES[dialect]
    headers = {"Authorization": f"Bearer {gateway.api_key}", "x-api-key": gateway.api_key}
    if dialect == "gemini":
        headers = {"x-goog-api-key": gateway.api_key}
    failures = []
    with httpx.Client(base_url=gateway.base_url, headers=headers, timeout=30) as http:
        original = http.post(path, json=body)
        assert original.status_code == 200, original.text  # the unmutated body is served
        for where in paths(body):
            for value in SWAPS:
                for stream in (False, True) if dialect != "embeddings" and value == {} else (False,):
                    sent = swapped(body, where, value)
                    if stream and dialect != "gemini":
                        sent["stream"] = True
                    response = http.post(path, json=sent)
                    if response.status_code >= 500 or "Traceback" in response.text:
                        failures.append((where, value, stream, response.status_code, response.text[:200]))
                    elif response.status_code >= 400 and dialect != "gemini":
                        # the product's error format, for every dialect's own shape
                        assert "error" in response.json(), response.text
    assert not failures, "\n".join(map(str, failures[:20]))
