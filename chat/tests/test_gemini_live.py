"""The Gemini API on our side, driven by the official `google-genai` SDK."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from google import genai
from google.genai import errors, types

from .live import LiveServer
from .test_images import picture

_clients: list[genai.Client] = []  # a Client closes its connection pool when garbage-collected


def gemini(live: LiveServer, version: str = "v1beta", key: str | None = None) -> genai.Client:
    client = genai.Client(
        api_key=key or live.api_key, http_options=types.HttpOptions(base_url=live.base_url, api_version=version)
    )
    _clients.append(client)
    return client


@pytest.mark.parametrize("version", ["v1beta", "v1"])
def test_generate_content(live: LiveServer, version: str) -> None:
    reply = gemini(live, version).models.generate_content(
        model="ghostgpt",
        contents="What is a ghost?",
        config=types.GenerateContentConfig(
            system_instruction="Answer in one short sentence.", max_output_tokens=32, temperature=0.2
        ),
    )
    assert reply.text
    assert reply.candidates and reply.candidates[0].finish_reason in (
        types.FinishReason.STOP,
        types.FinishReason.MAX_TOKENS,
    )
    assert (
        reply.usage_metadata and reply.usage_metadata.prompt_token_count and reply.usage_metadata.candidates_token_count
    )


def test_stream_generate_content(live: LiveServer) -> None:
    pieces = list(
        gemini(live).models.generate_content_stream(
            model="ghostgpt", contents="Say hello.", config=types.GenerateContentConfig(max_output_tokens=32)
        )
    )
    text = "".join(p.text or "" for p in pieces)
    assert text and len(pieces) >= 2
    assert pieces[-1].usage_metadata and pieces[-1].usage_metadata.total_token_count


def test_inline_images_and_key_in_the_query(live: LiveServer) -> None:
    body = {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {
                        "inlineData": {
                            "mimeType": "image/png",
                            "data": base64.b64encode(picture("Ghost ships")).decode(),
                        }
                    },
                    {"text": "What does it say?"},
                ],
            }
        ],
        "generationConfig": {"maxOutputTokens": 32},
    }
    response = httpx.post(
        f"{live.base_url}/v1beta/models/ghostgpt:generateContent?key={live.api_key}", json=body, timeout=60
    )
    assert response.status_code == 200 and response.json()["usageMetadata"]["promptTokenCount"] > 40
    assert live.api_key not in live.log()  # ?key= is redacted from the access log


def test_errors_in_gemini_shape(live: LiveServer) -> None:
    with pytest.raises(errors.ClientError) as wrong_key:
        gemini(live, key="gg-wrong").models.generate_content(model="ghostgpt", contents="x")
    assert wrong_key.value.code == 401 and wrong_key.value.status == "UNAUTHENTICATED"
    with pytest.raises(errors.ClientError) as unknown:
        gemini(live).models.generate_content(model="no-such-model", contents="x")
    assert unknown.value.code == 404 and unknown.value.status == "NOT_FOUND"
    empty = httpx.post(
        f"{live.base_url}/v1beta/models/ghostgpt:generateContent",
        json={"contents": []},
        headers={"x-goog-api-key": live.api_key},
    )
    assert empty.status_code == 400 and json.loads(empty.text)["error"]["status"] == "INVALID_ARGUMENT"


def test_models_list_in_gemini_shape(live: LiveServer) -> None:
    names = [m.name for m in gemini(live).models.list()]
    assert "models/ghostgpt" in names
    openai_style = httpx.get(f"{live.base_url}/v1/models", headers={"Authorization": f"Bearer {live.api_key}"}).json()
    assert openai_style["object"] == "list"
