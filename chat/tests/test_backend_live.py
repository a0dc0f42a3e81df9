"""The embedded backend under real conditions: disconnects, queueing, loading and failure."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from openai import OpenAI

from .live import LiveServer

LONG = {"model": "ghostgpt", "prompt": "1, 2, 3, 4, 5, 6, 7,", "max_tokens": 4096, "temperature": 0}


def test_stream_disconnect_stops_generation_within_a_second(live: LiveServer, http: httpx.Client) -> None:
    before = live.stats()
    with http.stream("POST", "/v1/completions", json={**LONG, "stream": True}) as response:
        lines = 0
        for line in response.iter_lines():
            lines += line.startswith("data: {")
            if lines >= 20:
                break
    after_close = live.wait_idle(within=1.0)
    time.sleep(1.0)
    later = live.stats()
    assert after_close["cancelled"] == before["cancelled"] + 1
    assert later["tokens_generated"] == after_close["tokens_generated"], "tokens produced after the disconnect"
    assert after_close["tokens_generated"] - before["tokens_generated"] < 200


def test_non_stream_disconnect_stops_generation(live: LiveServer) -> None:
    before = live.stats()
    body = json.dumps(LONG).encode()
    request = (
        f"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {live.api_key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with socket.create_connection(("127.0.0.1", live.port)) as sock:
        sock.sendall(request)
        deadline = time.monotonic() + 10
        while live.stats()["tokens_generated"] < before["tokens_generated"] + 10 and time.monotonic() < deadline:
            time.sleep(0.02)
    stats = live.wait_idle(within=1.5)
    assert stats["cancelled"] == before["cancelled"] + 1


@pytest.fixture(scope="module")
def small_queue() -> Iterator[LiveServer]:
    # One sequence: a request decodes only once the one before it is done.
    server = LiveServer(
        env={"GHOSTGPT_QUEUE_MAX": "3", "GHOSTGPT_SSE_PING_SECONDS": "1", "GHOSTGPT_PARALLEL_SEQUENCES": "1"}
    )
    yield server
    server.stop()


def _open_stream(server: LiveServer, body: dict[str, object]) -> tuple[httpx.Client, httpx.Response]:
    session = httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {server.api_key}"}, timeout=60)
    response = session.send(
        session.build_request("POST", "/v1/completions", json={**body, "stream": True}), stream=True
    )
    return session, response


def test_queue_is_fifo_pings_while_waiting_and_refuses_when_full(small_queue: LiveServer) -> None:
    hog_session, hog = _open_stream(small_queue, LONG)
    assert hog.status_code == 200
    lines = hog.iter_lines()
    next(line for line in lines if line.startswith("data: {"))  # the hog is decoding now

    finished: list[str] = []

    def short(name: str) -> None:
        with httpx.Client(
            base_url=small_queue.base_url, headers={"Authorization": f"Bearer {small_queue.api_key}"}, timeout=60
        ) as session:
            reply = session.post("/v1/completions", json={"model": "ghostgpt", "prompt": name, "max_tokens": 32})
            assert reply.status_code == 200
            finished.append(name)

    waiter_session, waiter = _open_stream(small_queue, {**LONG, "max_tokens": 32})
    assert waiter.status_code == 200  # admitted to the queue; headers come before its turn
    early = []
    waiter_lines = waiter.iter_lines()
    for line in waiter_lines:
        early.append(line)
        if line == ": ping":
            break
    assert ": ping" in early, "a queued stream gets keep-alive comments"
    workers = [threading.Thread(target=short, args=(name,)) for name in ("first", "second")]
    for worker in workers:  # both queue behind the hog and the waiter, in this order
        worker.start()
        time.sleep(0.3)
    assert small_queue.stats()["waiting"] == 3
    full = httpx.post(
        small_queue.base_url + "/v1/completions",
        json={**LONG, "max_tokens": 32},
        headers={"Authorization": f"Bearer {small_queue.api_key}"},
        timeout=30,
    )
    assert full.status_code == 503
    assert full.json()["error"]["code"] == "server_overloaded" and int(full.headers["Retry-After"]) > 0
    hog.close()
    hog_session.close()
    rest = "".join(waiter_lines)
    assert "[DONE]" in rest
    waiter_session.close()
    for worker in workers:
        worker.join(timeout=60)
    assert finished == ["first", "second"]


def test_disconnect_while_queued_cancels_before_decoding(small_queue: LiveServer) -> None:
    before = small_queue.stats()
    hog_session, hog = _open_stream(small_queue, LONG)
    hog_lines = hog.iter_lines()  # keep a reference: a collected iterator closes the connection
    next(line for line in hog_lines if line.startswith("data: {"))
    waiter_session, waiter = _open_stream(small_queue, LONG)
    waiter_lines = waiter.iter_lines()
    next(line for line in waiter_lines if line == ": ping")
    waiter.close()
    waiter_session.close()
    time.sleep(0.5)
    assert small_queue.stats()["running"] == 1, "the hog still decodes"
    hog.close()
    hog_session.close()
    stats = small_queue.wait_idle(within=1.5)
    assert stats["cancelled"] == before["cancelled"] + 2
    time.sleep(0.5)
    assert small_queue.stats()["tokens_generated"] == stats["tokens_generated"], "the queued request never decoded"
    assert "Traceback" not in small_queue.log()


def test_model_loading_is_503_on_health_and_api(tmp_path: object) -> None:
    fifo = os.path.join(str(tmp_path), "model.gguf")
    os.mkfifo(fifo)  # opening it blocks until a writer appears: a model that is still loading
    server = LiveServer(env={"GHOSTGPT_MODEL_PATH": fifo}, wait_ready=False)
    try:
        health = httpx.get(server.base_url + "/health")
        assert health.status_code == 503
        assert health.json()["error"]["code"] == "model_loading" and health.json()["status"] == "loading"
        client = OpenAI(base_url=server.base_url + "/v1", api_key=server.api_key, max_retries=0)
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model="ghostgpt", messages=[{"role": "user", "content": "hi"}])
        assert caught.value.status_code == 503
        assert caught.value.response.headers["Retry-After"]
        assert caught.value.code == "model_loading"
    finally:
        with open(fifo, "wb"):  # unblock the loader so the process can exit
            pass
        server.stop()


def test_configured_model_id_and_unloadable_model(tmp_path: object) -> None:
    server = LiveServer(
        env={"GHOSTGPT_MODEL_ID": "house-model", "GHOSTGPT_MODEL_PATH": "/nonexistent/model.gguf"}, wait_ready=False
    )
    try:
        deadline = time.monotonic() + 10
        while httpx.get(server.base_url + "/health").json().get("status") != "failed" and time.monotonic() < deadline:
            time.sleep(0.05)
        health = httpx.get(server.base_url + "/health")
        assert health.status_code == 503 and health.json()["error"]["code"] == "model_unavailable"
        client = OpenAI(base_url=server.base_url + "/v1", api_key=server.api_key, max_retries=0)
        assert [m.id for m in client.models.list().data] == ["house-model", "all-MiniLM-L6-v2"]
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model="house-model", messages=[{"role": "user", "content": "hi"}])
        assert caught.value.status_code == 503
        assert "Traceback" not in caught.value.response.text and "/nonexistent" not in caught.value.response.text
    finally:
        server.stop()
