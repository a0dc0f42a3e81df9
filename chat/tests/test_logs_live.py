"""GHOSTGPT_LOG_FORMAT=json: every line a JSON object with the request id of the request it
belongs to — also lines logged deep inside a request (an upstream failure)."""

from __future__ import annotations

import json

import httpx

from .fake_upstream import FakeUpstream
from .live import LiveServer


def test_json_logs_carry_the_request_id_on_every_line(fake: FakeUpstream) -> None:
    routes = {
        "upstreams": {"broken": {"base_url": f"{fake.url}/fail500/v1", "api_key": "sk-up"}},
        "models": {"broken": {"deployments": [{"upstream": "broken"}]}},
    }
    server = LiveServer(routes=routes, env={"GHOSTGPT_LOG_FORMAT": "json", "GHOSTGPT_LOG_LEVEL": "INFO"})
    try:
        headers = {"Authorization": f"Bearer {server.api_key}", "x-request-id": "trace-42"}
        body = {"model": "broken", "messages": [{"role": "user", "content": "hi"}]}
        assert httpx.post(server.base_url + "/v1/chat/completions", json=body, headers=headers).status_code == 502
        log = server.log()
    finally:
        server.stop()
    lines = [json.loads(line) for line in log.splitlines() if line.strip().startswith("{")]
    assert lines and all({"time", "level", "logger", "request_id", "message"} <= set(line) for line in lines)
    mine = [line for line in lines if line["request_id"] == "trace-42"]
    loggers = {line["logger"] for line in mine}
    assert "ghostgpt.access" in loggers and "chat.backends.upstream" in loggers, mine
    outside = [line for line in lines if line["logger"] == "chat.backends.embedded"]
    assert outside and all(line["request_id"] == "-" for line in outside)
