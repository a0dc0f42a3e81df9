"""Auth variants, the parameter policy, error objects and wrong paths, over real HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from .live import LiveServer
from .openapi import assert_matches

CHAT = {"model": "ghostgpt", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 32, "temperature": 0}


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert_matches("ErrorResponse", body)
    return body["error"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(lambda key: {"Authorization": f"Bearer {key}"}, id="bearer"),
        pytest.param(lambda key: {"Authorization": key}, id="raw-authorization"),
        pytest.param(lambda key: {"x-api-key": key}, id="x-api-key"),
        pytest.param(lambda key: {"x-goog-api-key": key}, id="x-goog-api-key"),
    ],
)
def test_every_key_header_resolves_to_the_same_key(live: LiveServer, headers: Any) -> None:
    response = httpx.post(
        live.base_url + "/v1/chat/completions", json={**CHAT, "seed": 5}, headers=headers(live.api_key), timeout=60
    )
    assert response.status_code == 200, response.text
    assert httpx.get(live.base_url + "/v1/models", headers=headers(live.api_key)).status_code == 200


def test_missing_and_wrong_keys_are_401_as_sdk_exceptions(live: LiveServer) -> None:
    _error(httpx.post(live.base_url + "/v1/chat/completions", json=CHAT), 401)
    wrong = OpenAI(base_url=live.base_url + "/v1", api_key="gg-not-a-real-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        wrong.chat.completions.create(**CHAT)
    assert caught.value.status_code == 401
    assert caught.value.body["type"] == "authentication_error"  # type: ignore[index]
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()


def test_unknown_model_is_404_model_not_found(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(**{**CHAT, "model": "gpt-5-ultra"})
    assert caught.value.code == "model_not_found"


@pytest.mark.parametrize(
    "param, value", [("grammar", 'root ::= "a"'), ("json_schema", {"type": "object"}), ("logit_bias", {"50256": -100})]
)
def test_anti_dos_parameters_are_refused_by_name(client: OpenAI, param: str, value: Any) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(**CHAT, extra_body={param: value})
    assert caught.value.param == param
    assert param in caught.value.message
    assert caught.value.body["type"] == "invalid_request_error"  # type: ignore[index]


@pytest.mark.parametrize(
    "change, param",
    [
        ({"model": None}, "model"),
        ({"messages": []}, "messages"),
        ({"temperature": 5}, "temperature"),
        ({"n": 0}, "n"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stream": "yes"}, "stream"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}],
                    }
                ]
            },
            "messages[0].content",  # three bytes are not an image
        ),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(http: httpx.Client, change: dict[str, Any], param: str) -> None:
    body = {key: value for key, value in {**CHAT, **change}.items() if value is not None}
    error = _error(http.post("/v1/chat/completions", json=body), 400)
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"


def test_missing_model_message_says_so(http: httpx.Client) -> None:
    error = _error(http.post("/v1/chat/completions", json={"messages": CHAT["messages"]}), 400)
    assert "model" in error["message"].lower()


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"", '{"model": "\u00e9"'.encode()])
def test_bad_json_is_400(http: httpx.Client, body: bytes) -> None:
    error = _error(http.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"}), 400)
    assert "JSON" in error["message"]


def test_oversized_body_is_413_and_the_server_keeps_serving(http: httpx.Client) -> None:
    huge = {**CHAT, "messages": [{"role": "user", "content": "x" * (11 * 1024 * 1024)}]}
    error = _error(http.post("/v1/chat/completions", json=huge), 413)
    assert error["code"] == "request_too_large"
    assert http.post("/v1/chat/completions", json=CHAT).status_code == 200


def test_a_chunked_body_past_the_limit_is_413_as_it_arrives(http: httpx.Client) -> None:
    # No Content-Length: before, Django's size check never ran on a chunked body.
    sent = 0

    def chunks() -> Any:
        nonlocal sent
        for _ in range(64):
            sent += 1
            yield b"x" * (512 * 1024)

    response = http.post("/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"
    assert http.post("/v1/chat/completions", json=CHAT).status_code == 200


def test_a_declared_length_past_the_limit_is_413_before_the_body(live: LiveServer) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", live.port), timeout=10) as sock:
        head = (
            "POST /api/share HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {50 * 1024 * 1024}\r\n\r\n"
        )
        sock.sendall(head.encode() + b"[")  # one byte of the promised 50 MB
        received = b""
        while chunk := sock.recv(4096):  # the head and the body may come in separate reads; then it closes
            received += chunk
    answer = received.decode("latin-1")
    assert answer.startswith("HTTP/1.1 413") and "request_too_large" in answer


@pytest.mark.parametrize("path", ["/v1/batches", "/v1/files", "/v1/chat/completion", "/v1beta/nothing"])
def test_a_post_to_a_path_not_served_is_a_json_404(http: httpx.Client, path: str) -> None:
    # Before: Django's HTML "403 Forbidden" CSRF page.
    error = _error(http.post(path, json=CHAT), 404)
    assert error["code"] == "unknown_url" and "/v1/chat/completions" in error["message"]


def test_prompt_beyond_the_context_is_400(http: httpx.Client) -> None:
    huge = "word " * 20000
    error = _error(
        http.post("/v1/chat/completions", json={**CHAT, "messages": [{"role": "user", "content": huge}]}), 400
    )
    assert error["code"] == "context_length_exceeded"


def test_paths_and_methods_answer_json(live: LiveServer, http: httpx.Client) -> None:
    root = httpx.get(live.base_url + "/v1")
    assert root.status_code == 200 and "base URL" in root.json()["message"]
    error = _error(http.get("/v1/does-not-exist"), 404)
    assert "/v1/chat/completions" in error["message"]
    hint = _error(http.post("/chat/completions", json=CHAT), 404)
    assert "/v1/chat/completions" in hint["message"]
    _error(http.get("/v1/chat/completions"), 405)
    assert "<html" not in http.get("/v1/nothing/here").text.lower()


def test_request_id_and_server_timing_headers(live: LiveServer, http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json=CHAT, headers={"x-request-id": "trace-abc.123"})
    assert response.headers["x-request-id"] == "trace-abc.123"
    timing = dict(part.strip().split(";dur=") for part in response.headers["server-timing"].split(","))
    assert set(timing) == {"gateway", "queue", "model"}
    assert float(timing["model"]) > 0 and float(timing["gateway"]) >= 0
    generated = httpx.get(live.base_url + "/health")
    assert generated.headers["x-request-id"].startswith("req_")
    bad = http.post("/v1/chat/completions", json=CHAT, headers={"x-request-id": "<script>"})
    assert bad.headers["x-request-id"].startswith("req_")
    for other in (http.get("/v1/models"), http.post("/v1/chat/completions", json={})):
        assert other.headers["server-timing"].startswith("gateway;dur=")


def test_health_reports_ready(live: LiveServer) -> None:
    health = httpx.get(live.base_url + "/health").json()
    assert health["status"] == "ok"
    assert health["models"]["ghostgpt"]["state"] == "ready"
