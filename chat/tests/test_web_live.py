"""Server-owned generations against live servers: they stream, are saved as they go, survive
the page leaving, re-attach, and stop keeping exactly the text shown — across processes
too, through the Redis channel layer."""

from __future__ import annotations

import collections
import json
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .live import LiveServer, manage

# With this seed SmolLM writes on for thousands of tokens, in either bundled encoding
# (measured: 1,200 of max_tokens=1,200 with Q8_0 and with Q4_1).
LONG = {"content": "Write a long essay about the history of the sea.", "seed": 1, "max_tokens": 3000}


def tab(base_url: str) -> httpx.Client:
    """An HTTP client that behaves like the chat page: session cookie + CSRF header."""
    client = httpx.Client(base_url=base_url, timeout=60)
    client.get("/")
    client.headers["X-CSRFToken"] = client.cookies["csrftoken"]
    assert client.post("/api/session/bootstrap").status_code == 201
    return client


def with_cookies_of(base_url: str, other: httpx.Client) -> httpx.Client:
    client = httpx.Client(base_url=base_url, timeout=60, cookies=other.cookies)
    client.headers["X-CSRFToken"] = other.headers["X-CSRFToken"]
    return client


def start(client: httpx.Client, content: str | None = None) -> dict[str, Any]:
    conversation = client.post("/api/conversations", json={}).json()
    body = {"content": content, "max_tokens": 64} if content else LONG  # short answers keep tests quick
    response = client.post(f"/api/conversations/{conversation['id']}/messages", json=body)
    assert response.status_code == 201, response.text
    return {**response.json(), "conversation": conversation["id"]}


class Watcher:
    """Reads /api/messages/{id}/stream and rebuilds the text as the page does."""

    def __init__(self, client: httpx.Client, message_id: str) -> None:
        self.client, self.message_id = client, message_id
        self.text = ""
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.done: dict[str, Any] | None = None

    def events_until_done(self) -> Iterator[tuple[str, dict[str, Any]]]:
        with self.client.stream("GET", f"/api/messages/{self.message_id}/stream") as response:
            assert response.status_code == 200 and response.headers["content-type"] == "text/event-stream"
            name = None
            for line in response.iter_lines():
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: ") and name:
                    data = json.loads(line[6:])
                    self._apply(name, data)
                    yield name, data
                    if name == "done":
                        return

    def _apply(self, name: str, data: dict[str, Any]) -> None:
        self.events.append((name, data))
        if name == "snapshot":
            self.text = data["text"]
        elif name == "delta":
            assert data["offset"] == len(self.text), "a delta must continue exactly where the text ends"
            self.text += data["text"]
        elif name == "done":
            self.done = data

    def run(self) -> Watcher:
        for _ in self.events_until_done():
            pass
        return self


def message(client: httpx.Client, conversation_id: str, message_id: str) -> dict[str, Any]:
    conversation = client.get(f"/api/conversations/{conversation_id}").json()
    return next(m for m in conversation["messages"] if m["id"] == message_id)


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    live = LiveServer(env={"GHOSTGPT_SAVE_EVERY_SECONDS": "0.2"})
    yield live
    live.stop()


def test_an_answer_streams_and_is_saved_as_it_goes(server: LiveServer) -> None:
    client = tab(server.base_url)
    turn = start(client, "Say hello in three words.")
    assert turn["user_message"]["content"] == "Say hello in three words."
    assert turn["assistant_message"]["status"] == "streaming"
    watcher = Watcher(client, turn["assistant_message"]["id"]).run()
    assert watcher.events[0][0] == "snapshot" and watcher.done is not None
    assert watcher.done["status"] == "complete" and watcher.text == watcher.done["text"] and watcher.text
    saved = message(client, turn["conversation"], turn["assistant_message"]["id"])
    assert saved["content"] == watcher.text and saved["status"] == "complete"
    title = client.get(f"/api/conversations/{turn['conversation']}").json()["title"]
    assert title == "Say hello in three words."


def test_reload_reattaches_and_stop_keeps_exactly_what_was_shown(server: LiveServer) -> None:
    client = tab(server.base_url)
    turn = start(client)
    first = Watcher(client, turn["assistant_message"]["id"])
    events = first.events_until_done()
    deltas = 0
    for name, _ in events:
        deltas += name == "delta"
        if deltas == 20:
            break
    events.close()  # the tab reloads: its stream goes away, the generation does not
    time.sleep(0.5)
    mid = message(client, turn["conversation"], turn["assistant_message"]["id"])
    assert mid["status"] == "streaming" and len(mid["content"]) >= len(first.text)  # saved while streaming

    again = Watcher(client, turn["assistant_message"]["id"])
    resumed = again.events_until_done()
    name, snapshot = next(resumed)
    assert name == "snapshot" and snapshot["text"].startswith(first.text) and len(snapshot["text"]) > len(first.text)
    for _ in range(10):
        next(resumed)
    stopped = client.post(f"/api/messages/{turn['assistant_message']['id']}/stop").json()
    for _ in resumed:
        pass
    assert stopped["status"] == "stopped"
    assert again.done is not None and again.done["status"] == "stopped"
    assert again.text == again.done["text"] == stopped["content"]  # the text shown is the text kept
    assert message(client, turn["conversation"], turn["assistant_message"]["id"])["content"] == stopped["content"]
    stats = server.wait_idle(within=10)
    assert stats["running"] == 0  # the model really stopped


def test_a_first_turn_creates_the_chat_and_streams_in_the_same_response(server: LiveServer) -> None:
    client = tab(server.base_url)
    events: list[tuple[str, dict[str, Any]]] = []
    body = {"content": "Say hi.", "max_tokens": 32, "system_prompt": "Answer in English."}
    headers = {"Accept": "text/event-stream"}
    with client.stream("POST", "/api/conversations/new/messages", json=body, headers=headers) as response:
        assert response.status_code == 200 and response.headers["content-type"] == "text/event-stream"
        name = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name or "", json.loads(line[6:])))
    kinds = [name for name, _ in events]
    assert kinds[0] == "turn" and kinds[-1] == "done" and "snapshot" in kinds
    turn, done = events[0][1], events[-1][1]
    assert turn["conversation"]["title"] == "Say hi." and turn["user_message"]["content"] == "Say hi."
    conversation = client.get(f"/api/conversations/{turn['conversation']['id']}").json()
    assert conversation["system_prompt"] == "Answer in English."
    assert conversation["messages"][-1]["content"] == done["text"] and done["status"] == "complete"
    empty = client.post("/api/conversations/new/messages", json={"content": ""})
    assert empty.status_code == 400
    assert len(client.get("/api/conversations").json()["data"]) == 1  # a refused first turn leaves no empty chat


def test_the_answer_finishes_without_any_watcher(server: LiveServer) -> None:
    client = tab(server.base_url)
    turn = start(client, "Name one colour.")
    deadline = time.monotonic() + 60
    while message(client, turn["conversation"], turn["assistant_message"]["id"])["status"] == "streaming":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    done = Watcher(client, turn["assistant_message"]["id"]).run()
    assert done.events == [("done", done.done)] and done.done is not None and done.done["status"] == "complete"


def test_regenerate_and_edit_make_branches(server: LiveServer) -> None:
    client = tab(server.base_url)
    turn = start(client, "Name a fruit.")
    Watcher(client, turn["assistant_message"]["id"]).run()
    conversation_id = turn["conversation"]
    again = client.post(
        f"/api/conversations/{conversation_id}/messages",
        json={"regenerate": turn["assistant_message"]["id"], "max_tokens": 64},
    ).json()
    assert again["user_message"] is None
    assert again["assistant_message"]["parent_id"] == turn["user_message"]["id"]
    Watcher(client, again["assistant_message"]["id"]).run()
    edited = client.post(
        f"/api/conversations/{conversation_id}/messages",
        json={"content": "Name a vegetable.", "parent_id": None, "max_tokens": 64},
    ).json()
    Watcher(client, edited["assistant_message"]["id"]).run()
    conversation = client.get(f"/api/conversations/{conversation_id}").json()
    users = [m for m in conversation["messages"] if m["role"] == "user"]
    assert [u["content"] for u in users] == ["Name a fruit.", "Name a vegetable."]  # the old branch is kept
    assert conversation["current_leaf"] == edited["assistant_message"]["id"]
    switched = client.patch(
        f"/api/conversations/{conversation_id}", json={"current_leaf": again["assistant_message"]["id"]}
    )
    assert switched.json()["current_leaf"] == again["assistant_message"]["id"]


def test_turn_errors_are_clear(server: LiveServer) -> None:
    client = tab(server.base_url)
    conversation = client.post("/api/conversations", json={}).json()
    path = f"/api/conversations/{conversation['id']}/messages"
    empty = client.post(path, json={"content": "   "})
    assert empty.status_code == 400 and empty.json()["error"]["param"] == "content"
    model = client.post(path, json={"content": "hi", "model": "no-such-model"})
    assert model.status_code == 404 and model.json()["error"]["code"] == "model_not_found"
    bad_parent = client.post(path, json={"content": "hi", "parent_id": "nope"})
    assert bad_parent.status_code == 400 and bad_parent.json()["error"]["param"] == "parent_id"
    no_csrf = httpx.post(server.base_url + path, json={"content": "hi"}, cookies=client.cookies)
    assert no_csrf.status_code == 403
    stranger = tab(server.base_url)
    assert stranger.post(path, json={"content": "hi"}).status_code == 404
    assert "Traceback" not in server.log()


def test_the_cookie_works_on_v1_like_a_key(server: LiveServer) -> None:
    client = tab(server.base_url)
    models = client.get("/v1/models")
    assert models.status_code == 200 and models.json()["data"][0]["id"] == "ghostgpt"
    reply = client.post(
        "/v1/chat/completions",
        json={"model": "ghostgpt", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 32},
    )
    assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] >= 1
    assert reply.headers["x-ratelimit-limit-requests"] == "10"  # the anonymous tier


def read_past(events: Iterator[tuple[str, dict[str, Any]]], watcher: Watcher, length: int) -> None:
    """Read the watcher's events until its text is longer than `length` characters."""
    for name, _ in events:
        if name == "delta" and len(watcher.text) > length:
            return
    raise AssertionError(f"the stream ended at {len(watcher.text)} characters")


def drained_within(events: Iterator[Any], seconds: float) -> bool:
    """Read `events` to their end on a thread; False if they had not ended after `seconds`."""
    reader = threading.Thread(target=lambda: collections.deque(events, maxlen=0), daemon=True)
    reader.start()
    reader.join(seconds)
    return not reader.is_alive()


def stop_until_done(
    client: httpx.Client,
    turn: dict[str, Any],
    watcher: Watcher,
    events: Iterator[tuple[str, dict[str, Any]]],
    servers: tuple[LiveServer, ...] = (),
) -> None:
    """Stop the turn's answer through `client`; the watcher's stream then ends with exactly
    the text the stop kept — within a minute, or the failure says what each server logged."""
    stopped = client.post(f"/api/messages/{turn['assistant_message']['id']}/stop")
    if not drained_within(events, 60):
        logs = "\n".join(f"--- server {server.base_url}:\n{server.log()[-4000:]}" for server in servers)
        raise AssertionError(f"no 'done' a minute after the stop ({stopped.status_code} {stopped.text[:300]})\n{logs}")
    assert stopped.json()["status"] == "stopped"
    assert watcher.done is not None and watcher.text == watcher.done["text"] == stopped.json()["content"]


def test_generations_cross_processes_through_redis(redis_url: str) -> None:
    owner = LiveServer(env={"REDIS_URL": redis_url, "CELERY_TASK_ALWAYS_EAGER": "true"})
    try:
        database = owner.env.get("DATABASE_URL") or f"sqlite:///{owner.env['GHOSTGPT_DATA_DIR']}/ghostgpt.sqlite3"
        other = LiveServer(env={"REDIS_URL": redis_url, "CELERY_TASK_ALWAYS_EAGER": "true"}, database_url=database)
        try:
            client = tab(owner.base_url)
            turn = start(client)  # owned by the first process
            watcher = Watcher(with_cookies_of(other.base_url, client), turn["assistant_message"]["id"])
            events = watcher.events_until_done()  # watched through the second
            read_past(events, watcher, 40)
            stop_until_done(with_cookies_of(other.base_url, client), turn, watcher, events, (owner, other))
            owner.wait_idle(within=10)  # the owning process stopped decoding
        finally:
            other.stop()
    finally:
        owner.stop()


def test_a_watcher_in_another_process_ends_when_the_owner_dies(redis_url: str) -> None:
    # Before: a watcher that had caught up with the answer only looked at the database for
    # its end; with the owning process killed mid-answer the message stayed "streaming"
    # and the watcher pinged forever — a page spinning for good on another node.
    redis_env = {"REDIS_URL": redis_url, "CELERY_TASK_ALWAYS_EAGER": "true"}
    owner = LiveServer(env=redis_env)
    try:
        database = owner.env.get("DATABASE_URL") or f"sqlite:///{owner.env['GHOSTGPT_DATA_DIR']}/ghostgpt.sqlite3"
        other = LiveServer(env={**redis_env, "GHOSTGPT_OWNER_STALE_SECONDS": "3"}, database_url=database)
        try:
            client = tab(owner.base_url)
            turn = start(client)
            watcher = Watcher(with_cookies_of(other.base_url, client), turn["assistant_message"]["id"])
            events = watcher.events_until_done()
            read_past(events, watcher, 40)
            saved_by = time.monotonic() + 1.5  # the owner saves every 0.5 s while it streams
            for _ in events:
                if time.monotonic() > saved_by:
                    break
            owner.process.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            assert drained_within(events, 30), "the watcher never ended after its owner died"
            assert watcher.done is not None and watcher.done["status"] == "failed"
            assert watcher.done["error"]["code"] == "interrupted"
            assert time.monotonic() - killed < 3 + 5 + 5  # stale + a ping + slack
            saved = with_cookies_of(other.base_url, client).get(f"/api/conversations/{turn['conversation']}").json()
            answer = next(m for m in saved["messages"] if m["id"] == turn["assistant_message"]["id"])
            # The end carries what was saved (the page replaces its text with it): at most
            # half a second (GHOSTGPT_SAVE_EVERY_SECONDS) of shown text was never saved.
            assert answer["status"] == "failed" and answer["content"] == watcher.done["text"] != ""
        finally:
            other.stop()
    finally:
        owner.stop()


def _drop_blocked_reads(redis_url: str, at_least: int) -> int:
    """Close, from Redis's side, every connection of the test database blocked in a read
    (the channel layer's BZPOPMIN), once `at_least` are; how many were closed."""
    import redis

    admin = redis.Redis.from_url(redis_url)
    db = str(admin.connection_pool.connection_kwargs.get("db", 0))
    deadline = time.monotonic() + 15
    while True:
        blocked = [c["id"] for c in admin.client_list() if c.get("db") == db and "b" in c.get("flags", "")]
        if len(blocked) >= at_least or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(blocked) >= at_least, f"only {len(blocked)} blocked reads"
    for client_id in blocked:
        admin.client_kill_filter(_id=client_id)
    return len(blocked)


def test_generations_survive_dropped_redis_connections(redis_url: str) -> None:
    # Before: a channel-layer read that failed (a dropped connection, or redis-py's 5 s read
    # timeout firing before the layer's 5 s blocking read returned, on a busy machine) ended
    # the owner's stop listener with the exception — and the generation with it: never
    # saved as ended, no "done", its watchers waiting forever. The watcher's stream broke too.
    owner = LiveServer(env={"REDIS_URL": redis_url, "CELERY_TASK_ALWAYS_EAGER": "true"})
    try:
        socket_timeout, blocking = manage(
            owner,
            "shell",
            "-c",
            "from channels.layers import get_channel_layer as g; layer = g(); "
            "print(layer.hosts[0]['socket_timeout'], layer.brpop_timeout)",
        ).split()[-2:]
        assert float(socket_timeout) > float(blocking)  # a read outlasts the blocking wait it reads
        database = owner.env.get("DATABASE_URL") or f"sqlite:///{owner.env['GHOSTGPT_DATA_DIR']}/ghostgpt.sqlite3"
        other = LiveServer(env={"REDIS_URL": redis_url, "CELERY_TASK_ALWAYS_EAGER": "true"}, database_url=database)
        try:
            client = tab(owner.base_url)
            turn = start(client)  # owned by the first process, watched through the second
            watcher = Watcher(with_cookies_of(other.base_url, client), turn["assistant_message"]["id"])
            events = watcher.events_until_done()
            read_past(events, watcher, 20)
            # The owner's stop listener and the watcher's read, at least.
            assert _drop_blocked_reads(redis_url, at_least=2) >= 2
            read_past(events, watcher, len(watcher.text) + 20)  # the watcher reads on
            _drop_blocked_reads(redis_url, at_least=2)  # and again, just before the stop
            stop_until_done(with_cookies_of(other.base_url, client), turn, watcher, events, (owner, other))
            owner.wait_idle(within=10)
        finally:
            other.stop()
    finally:
        owner.stop()


def test_a_generation_stops_when_its_account_is_deleted() -> None:
    # Before: the chat page's generations ignored revocation: an account the operator
    # deleted kept the model decoding for it until max_tokens.
    server = LiveServer(env={"GHOSTGPT_ADMIN_KEY": "operator-secret"})
    try:
        client = tab(server.base_url)
        turn = start(client)
        watcher = Watcher(with_cookies_of(server.base_url, client), turn["assistant_message"]["id"])
        events = watcher.events_until_done()
        for name, _ in events:
            if name == "delta" and len(watcher.text) > 20:
                break
        admin = httpx.Client(base_url=server.base_url, headers={"Authorization": "Bearer operator-secret"})
        users = admin.get("/admin/users").json()["users"]
        newest = max(users, key=lambda user: user["user_id"])  # the browser's account
        assert admin.post("/admin/users/delete", json={"user_id": newest["user_id"]}).status_code == 200
        for _ in events:
            pass
        assert watcher.done is not None and watcher.done["status"] == "failed"
        assert watcher.done["error"]["code"] == "api_key_revoked"
        server.wait_idle(within=5)  # the model stopped decoding for it
    finally:
        server.stop()
