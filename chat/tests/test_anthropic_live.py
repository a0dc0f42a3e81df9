"""The Anthropic Messages API on our side, driven by the official `anthropic` SDK."""

from __future__ import annotations

import base64
import json
from typing import Any

import anthropic
import httpx
import pytest

from .live import LiveServer
from .test_images import picture


@pytest.fixture(scope="module")
def claude(live: LiveServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=live.base_url, api_key=live.api_key, max_retries=0)


def test_messages_create(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(
        model="ghostgpt",
        max_tokens=32,
        system=[{"type": "text", "text": "Answer in one short sentence."}],
        messages=[{"role": "user", "content": "What is a ghost?"}],
    )
    assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")
    assert message.content[0].type == "text" and message.content[0].text
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.usage.input_tokens > 5 and 1 <= message.usage.output_tokens <= 32


def test_messages_stream_with_the_sdk_helper(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(
        model="ghostgpt", max_tokens=32, messages=[{"role": "user", "content": "Say hello."}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and final.content[0].text == text  # type: ignore[union-attr]
    assert final.usage.output_tokens >= 1


def test_the_event_sequence_on_the_wire(live: LiveServer) -> None:
    body = {"model": "ghostgpt", "max_tokens": 32, "stream": True, "messages": [{"role": "user", "content": "Hi"}]}
    headers = {"x-api-key": live.api_key, "anthropic-version": "2023-06-01"}
    response = httpx.post(live.base_url + "/v1/messages", json=body, headers=headers, timeout=60)
    names = [line[7:] for line in response.text.split("\n") if line.startswith("event: ")]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[3:-3]) <= {"content_block_delta", "ping"} and "content_block_delta" in names
    data = [json.loads(line[6:]) for line in response.text.split("\n") if line.startswith("data: ")]
    assert all(d["type"] == n for d, n in zip(data, names, strict=True))


@pytest.mark.parametrize(
    "headers",
    [
        lambda key: {"x-api-key": key, "anthropic-version": "2023-06-01"},
        lambda key: {"Authorization": f"Bearer {key}", "anthropic-version": "2026-10-21"},
    ],
)
def test_both_auth_styles_and_any_version(live: LiveServer, headers: Any) -> None:
    body = {"model": "ghostgpt", "max_tokens": 32, "messages": [{"role": "user", "content": "Hi"}]}
    response = httpx.post(live.base_url + "/v1/messages", json=body, headers=headers(live.api_key), timeout=60)
    assert response.status_code == 200 and response.json()["type"] == "message"


def test_images_in_content_blocks(claude: anthropic.Anthropic) -> None:
    image = base64.b64encode(picture("Ghost ships")).decode()
    message = claude.messages.create(
        model="ghostgpt",
        max_tokens=32,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": image}},
                    {"type": "text", "text": "What does the picture say?"},
                ],
            }
        ],
    )
    assert message.usage.input_tokens > 40  # the image's description is in the prompt


def test_errors_in_anthropic_shape(claude: anthropic.Anthropic, live: LiveServer) -> None:
    missing = httpx.post(
        live.base_url + "/v1/messages",
        json={"model": "ghostgpt", "messages": [{"role": "user", "content": "x"}]},
        headers={"x-api-key": live.api_key},
    )
    assert missing.status_code == 400 and missing.json()["type"] == "error"
    assert missing.json()["error"]["type"] == "invalid_request_error" and "max_tokens" in missing.text
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.create(model="no-such-model", max_tokens=32, messages=[{"role": "user", "content": "x"}])
    wrong = anthropic.Anthropic(base_url=live.base_url, api_key="gg-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as auth:
        wrong.messages.create(model="ghostgpt", max_tokens=32, messages=[{"role": "user", "content": "x"}])
    assert auth.value.body == {  # type: ignore[comparison-overlap]
        "type": "error",
        "error": {"type": "authentication_error", "message": "Incorrect API key provided."},
    }
    with pytest.raises(anthropic.BadRequestError):
        claude.messages.create(
            model="ghostgpt",
            max_tokens=32,
            messages=[{"role": "user", "content": [{"type": "document", "source": {}}]}],  # type: ignore[list-item]
        )


def test_models_list_in_anthropic_shape(claude: anthropic.Anthropic) -> None:
    models = claude.models.list()
    assert "ghostgpt" in [m.id for m in models.data] and models.data[0].type == "model"
