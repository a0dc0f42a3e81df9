"""The chat's storage and token checks come before any row is written: an account past its
storage quota gets 413 and loses nothing; a turn whose worst case passes the account's TPM,
or whose text cannot fit the model's context, gets its error without rows left behind."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from .live import LiveServer, server_rows


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    env = {"GHOSTGPT_STORAGE_BYTES": "9000", "GHOSTGPT_CONVERSATION_RATE": "100", "GHOSTGPT_N_CTX": "1024"}
    live = LiveServer(env=env)
    yield live
    live.stop()


def browser(server: LiveServer) -> httpx.Client:
    client = httpx.Client(base_url=server.base_url, timeout=30, headers={"Origin": server.base_url})
    client.get("/")
    made = client.post("/api/session/bootstrap")
    assert made.status_code == 201, made.text
    client.headers["X-CSRFToken"] = client.cookies["csrftoken"]
    return client


def messages(server: LiveServer) -> int:
    return int(server_rows(server, "select count(*) from chat_message")[0][0])


def test_the_storage_quota_is_checked_before_a_turn_is_written(server: LiveServer) -> None:
    tab = browser(server)
    turn = {"content": "z" * 4000, "max_tokens": 1}
    first = tab.post("/api/conversations/new/messages", json=turn)
    assert first.status_code == 201, first.text[:300]
    conversation = first.json()["conversation"]["id"]
    assert tab.post(f"/api/conversations/{conversation}/messages", json=turn).status_code == 201
    before = messages(server)
    full = tab.post(f"/api/conversations/{conversation}/messages", json=turn)
    assert full.status_code == 413 and full.json()["error"]["code"] == "storage_quota_exceeded", full.text[:300]
    assert "9000" in full.json()["error"]["message"]
    assert messages(server) == before, "nothing was written"
    # Deleting a conversation gives its storage back.
    assert tab.delete(f"/api/conversations/{conversation}").status_code in (200, 204)
    assert tab.post("/api/conversations/new/messages", json=turn).status_code == 201


def test_tpm_and_the_context_are_checked_before_a_turn_is_written(server: LiveServer) -> None:
    tab = browser(server)  # an anonymous session: 30,000 tokens a minute
    before = messages(server)
    huge = tab.post("/api/conversations/new/messages", json={"content": "w" * 40000, "max_tokens": 4000})
    assert huge.status_code == 429 and huge.json()["error"]["code"] == "rate_limit_exceeded", huge.text[:300]
    assert messages(server) == before
    long = tab.post("/api/conversations/new/messages", json={"content": "word " * 2000, "max_tokens": 64})
    assert long.status_code == 400 and long.json()["error"]["code"] == "context_length_exceeded", long.text[:300]
    assert messages(server) == before


def test_first_turns_and_asks_count_as_new_conversations() -> None:
    # A day's window: a minute's could turn between the counted turns and the refused ones.
    server = LiveServer(env={"GHOSTGPT_CONVERSATION_RATE": "2", "GHOSTGPT_RATE_WINDOW_SECONDS": "86400"})
    try:
        tab = browser(server)
        assert tab.post("/api/conversations", json={"title": "x"}).status_code == 201
        assert tab.post("/api/conversations/new/messages", json={"content": "hi", "max_tokens": 1}).status_code == 201
        before = messages(server)
        for path in ("/api/conversations/new/messages", "/api/ask"):
            refused = tab.post(path, json={"content": "hi", "max_tokens": 1})
            assert refused.status_code == 429, (path, refused.text[:300])
        assert messages(server) == before
    finally:
        server.stop()
