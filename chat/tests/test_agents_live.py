"""Dial-in agents: real `manage.py run_agent` processes connect to a live server over
WebSocket and serve jobs from a loopback fake upstream. Two agents, least busy first;
an agent killed before its first token (the request fails over) and mid-stream (the
stream ends with an error event); client disconnect cancels the agent's upstream
request; `/api/connections` follows; `/api/ask` threads on the server."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from openai import OpenAI

from .fake_upstream import FakeUpstream, recorded_text
from .live import LiveServer, wait_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gateway() -> Iterator[LiveServer]:
    server = LiveServer(
        env={
            "GHOSTGPT_AGENT_MODEL": "agent",
            "GHOSTGPT_AGENT_HEARTBEAT_SECONDS": "1",
            "GHOSTGPT_AGENT_FIRST_TOKEN_TIMEOUT": "20",
            "GHOSTGPT_SYSTEM_PROMPT": "",
        }
    )
    server.agent_token = server._manage("create_agent_token", "--name", "tests").strip().splitlines()[-1]  # type: ignore[attr-defined]
    yield server
    server.stop()


class Agents:
    def __init__(self, gateway: LiveServer, fake: FakeUpstream) -> None:
        self.gateway, self.fake = gateway, fake
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, mode: str) -> None:
        """An agent serving the fake upstream's `mode`, or the embedded model ("embedded")."""
        env = {**self.gateway.env, "GHOSTGPT_AGENT_TOKEN": self.gateway.agent_token}  # type: ignore[attr-defined]
        source = (
            ["--embedded"] if mode == "embedded" else ["--upstream", f"{self.fake.url}/{mode}/v1", "--model", "gpt-4o"]
        )
        self.processes[name] = subprocess.Popen(
            [sys.executable, "manage.py", "run_agent", "--server", self.gateway.base_url, *source, "--name", name],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: name in self.connected(), f"agent {name} to connect")

    def kill(self, name: str) -> None:
        process = self.processes.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.kill(name)
        wait_for(lambda: not self.connected(), "all agents to be gone")

    def connected(self) -> dict[str, dict[str, Any]]:
        response = httpx.get(
            self.gateway.base_url + "/api/connections",
            headers={"Authorization": f"Bearer {self.gateway.api_key}"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        return {row["name"]: row for row in response.json()["data"]}


@pytest.fixture
def agents(gateway: LiveServer, fake: FakeUpstream) -> Iterator[Agents]:
    pool = Agents(gateway, fake)
    yield pool
    pool.stop_all()


@pytest.fixture(scope="module")
def sdk(gateway: LiveServer) -> OpenAI:
    return OpenAI(base_url=gateway.base_url + "/v1", api_key=gateway.api_key, max_retries=0, timeout=60)


def ask(sdk: OpenAI, **extra: Any) -> Any:
    return sdk.chat.completions.create(
        model="agent", messages=[{"role": "user", "content": "Weather?"}], max_tokens=64, **extra
    )


def test_no_agent_is_a_clear_503(sdk: OpenAI) -> None:
    with pytest.raises(Exception) as caught:
        ask(sdk)
    assert getattr(caught.value, "status_code", None) == 503
    assert "No agent is connected" in str(caught.value)


def test_two_agents_share_the_work_and_are_listed(sdk: OpenAI, agents: Agents, fake: FakeUpstream) -> None:
    agents.start("alpha", "ok")
    agents.start("beta", "ok")
    for _ in range(4):
        reply = ask(sdk)
        assert reply.choices[0].message.content == recorded_text()
        assert reply.usage is not None and reply.usage.completion_tokens > 0
    listed = agents.connected()
    assert listed["alpha"]["served"] == 2 and listed["beta"]["served"] == 2  # least busy, then least served
    row = listed["alpha"]
    assert row["status"] == "connected" and row["in_flight"] == 0 and row["models"] == ["gpt-4o"]
    assert row["heartbeat_at"] and row["last_message_at"]
    time.sleep(2.5)  # heartbeats keep arriving
    assert agents.connected()["alpha"]["heartbeat_at"] > row["heartbeat_at"]
    sent = fake.requests[-1]
    assert sent["body"]["model"] == "gpt-4o" and sent["body"]["messages"] == [{"role": "user", "content": "Weather?"}]


def test_connections_answer_the_chatgpt_api_server_shape_without_headers(gateway: LiveServer, agents: Agents) -> None:
    agents.start("gamma", "ok")
    response = httpx.get(gateway.base_url + "/api/connections", timeout=10)  # no key, no cookie
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"connections"}  # the details (names, models) need a key
    [row] = body["connections"]
    assert set(row) == {"Id", "Heartbeat", "LastMessageTime", "Ws"} and row["Ws"] == {}
    assert row["Id"] == agents.connected()["gamma"]["id"] and row["Heartbeat"]
    assert "gamma" not in response.text and gateway.api_key not in response.text


def test_an_agent_killed_before_its_first_token_fails_over(sdk: OpenAI, agents: Agents) -> None:
    agents.start("sleepy", "slow")  # its upstream answers headers, then nothing for 30 s
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(reply=ask(sdk)))
    thread.start()
    wait_for(lambda: agents.connected()["sleepy"]["in_flight"] == 1, "the job to reach sleepy")
    agents.start("fresh", "ok")
    started = time.monotonic()
    agents.kill("sleepy")
    thread.join(timeout=30)
    assert result["reply"].choices[0].message.content == recorded_text()
    assert time.monotonic() - started < 10
    listed = wait_for(lambda: (c := agents.connected()) and "sleepy" not in c and c, "sleepy to be gone")
    assert listed["fresh"]["served"] == 1


def test_an_agent_killed_mid_stream_ends_the_stream_with_an_error(gateway: LiveServer, agents: Agents) -> None:
    agents.start("staller", "stall")  # a "." every 0.2 s
    body = {"model": "agent", "messages": [{"role": "user", "content": "x"}], "stream": True, "max_tokens": 64}
    headers = {"Authorization": f"Bearer {gateway.api_key}"}
    lines: list[str] = []
    with httpx.stream(
        "POST", gateway.base_url + "/v1/chat/completions", json=body, headers=headers, timeout=30
    ) as response:
        started = None
        for line in response.iter_lines():
            lines.append(line)
            if started is None and sum('"content":"."' in item for item in lines) >= 3:
                started = time.monotonic()
                agents.kill("staller")
        assert started is not None and time.monotonic() - started < 10
    payloads = [item[6:] for item in lines if item.startswith("data: ")]
    assert payloads[-1] == "[DONE]"
    error = json.loads(payloads[-2])
    assert error["error"]["type"] == "upstream_error" and "disconnected" in error["error"]["message"]


def test_client_disconnect_cancels_the_agents_upstream_request(
    gateway: LiveServer, agents: Agents, fake: FakeUpstream
) -> None:
    agents.start("canceller", "stall")
    fake.disconnects.clear()
    body = {"model": "agent", "messages": [{"role": "user", "content": "x"}], "stream": True, "max_tokens": 64}
    headers = {"Authorization": f"Bearer {gateway.api_key}"}
    with httpx.stream(
        "POST", gateway.base_url + "/v1/chat/completions", json=body, headers=headers, timeout=30
    ) as response:
        for line in response.iter_lines():
            if '"content":"."' in line:
                break
    closed = time.monotonic()
    wait_for(lambda: fake.disconnects, "the upstream to see the agent hang up", within=10)
    assert time.monotonic() - closed < 5
    wait_for(lambda: agents.connected()["canceller"]["in_flight"] == 0, "the agent's slot to be free", within=10)


def test_api_ask_threads_on_the_server(gateway: LiveServer, agents: Agents, fake: FakeUpstream) -> None:
    agents.start("asker", "ok")
    headers = {"Authorization": f"Bearer {gateway.api_key}"}
    with httpx.Client(base_url=gateway.base_url, headers=headers, timeout=60) as http:
        first = http.post("/api/ask", json={"content": "Weather in Paris?"})
        assert first.status_code == 200, first.text
        one = first.json()
        assert set(one) == {"id", "response_id", "conversation_id", "content", "error"}
        assert one["content"] == recorded_text() and one["error"] is None
        second = http.post(
            "/api/ask",
            json={
                "content": "And tomorrow?",
                "conversation_id": one["conversation_id"],
                "parent_id": one["response_id"],
            },
        ).json()
        assert second["conversation_id"] == one["conversation_id"] and second["error"] is None
        assert [m["content"] for m in fake.requests[-1]["body"]["messages"]] == [
            "Weather in Paris?",
            recorded_text(),
            "And tomorrow?",
        ]
        only_one = http.post("/api/ask", json={"content": "x", "conversation_id": one["conversation_id"]})
        assert only_one.status_code == 400 and only_one.json()["error"]["param"] == "parent_id"
        unknown = http.post(
            "/api/ask", json={"content": "x", "conversation_id": "0" * 32, "parent_id": one["response_id"]}
        )
        assert unknown.status_code == 404
        page = http.get(f"/api/conversations/{one['conversation_id']}").json()  # the same thread in the chat product
        assert len(page["messages"]) == 4


def test_an_agent_can_serve_the_embedded_model(sdk: OpenAI, agents: Agents) -> None:
    agents.start("local", "embedded")
    reply = ask(sdk, seed=7)
    assert reply.choices[0].message.content and reply.usage is not None
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0  # counted by the model itself
    assert agents.connected()["local"]["models"] == ["ghostgpt"]


def test_tokens_are_checked_both_ways(gateway: LiveServer) -> None:
    token = gateway.agent_token  # type: ignore[attr-defined]
    response = httpx.get(gateway.base_url + "/v1/models", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code == 401 and response.json()["error"]["code"] == "agent_token"

    async def connect(secret: str) -> int | None:
        url = gateway.base_url.replace("http", "ws") + "/ws/agent"
        try:
            async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {secret}"}) as ws:
                await ws.recv()
        except websockets.ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None
        except websockets.InvalidStatus as exc:
            return exc.response.status_code
        return None

    refused = asyncio.run(connect(gateway.api_key))  # an API key is not an agent token
    assert refused in (403, 4401)
