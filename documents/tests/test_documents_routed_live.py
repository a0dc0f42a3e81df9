"""A project whose files a routed embeddings model reads, against a live server and an
OpenAI-shaped upstream on loopback: the passages and the questions go to the upstream and are
billed by its count to the person, a balance too low is refused before the upstream is
called, and changing the model embeds the files again (the passages and their ids stay)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

import httpx
import numpy as np
import pytest
import redis

from chat.tests.live import (
    LiveServer,
    funded_account,
    manage,
    operator_call,
    server_books,
    server_rows,
    wait_for,
)
from chat.tests.loopback import Answer, Loopback, openai_stream
from tools.tests.test_worker_live import Worker

ADMIN_KEY = "sk-admin-routed-embeddings-0123456789"
PRICE = 20  # per million tokens (1,000 times text-embedding-3-small's $0.02: every token shows)
LENGTH = 64
# A harbour guide long enough not to fit the chat model's context whole: passages are chosen.
SECTIONS = [
    f"Section {n}. The quay keeps record {n} of the ferries, tides and the weather of that season." for n in range(200)
]
SECTIONS[137] = "Section 137. The red lantern hangs on the mast of the pilot boat Kestrel every night."
QUESTION = "Which boat carries the red lantern?"


def _vector(text: str) -> np.ndarray:
    """The upstream's model: words hashed into LENGTH buckets (texts sharing words are near)."""
    vector = np.zeros(LENGTH, dtype=np.float32)
    for word in re.findall(r"\w+", text.lower()):
        vector[hashlib.sha256(word.encode()).digest()[0] % LENGTH] += 1.0
    return vector / max(float(np.linalg.norm(vector)), 1e-9)


class Upstream(Loopback):
    """OpenAI's /v1/embeddings (usage: one token per word) and a chat model's stream."""

    def __init__(self) -> None:
        self.embedded: list[list[str]] = []
        self.tokens = 0
        self.lock = threading.Lock()
        super().__init__(self.answer)

    def answer(self, path: str, headers: Mapping[str, str], raw: bytes) -> Answer:
        body = json.loads(raw)
        if path.endswith("/chat/completions"):
            usage = {"prompt_tokens": 900, "completion_tokens": 3, "total_tokens": 903}
            return openai_stream(body["model"], {"role": "assistant", "content": "Kestrel [1]."}, "stop", usage)
        texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
        tokens = sum(len(re.findall(r"\w+", t)) for t in texts)
        with self.lock:
            self.embedded.append(texts)
            self.tokens += tokens
        base64_wanted = body.get("encoding_format") == "base64"
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": base64.b64encode(_vector(t).astype("<f4").tobytes()).decode()
                if base64_wanted
                else _vector(t).tolist(),
            }
            for i, t in enumerate(texts)
        ]
        answer = {"object": "list", "data": data, "model": body["model"], "usage": {"prompt_tokens": tokens}}
        return 200, "application/json", json.dumps(answer).encode()


def _routes(upstream: Upstream) -> dict[str, Any]:
    return {
        "upstreams": {"up": {"base_url": f"{upstream.url}/v1", "api_key": "sk-up"}},
        "models": {
            "text-embedding-3-small": {"embeddings": True, "deployments": [{"upstream": "up"}]},
            "chat-up": {"deployments": [{"upstream": "up", "model": "gpt-x"}], "context_length": 2048},
        },
    }


@pytest.fixture(scope="module")
def routed() -> Iterator[tuple[LiveServer, Upstream]]:
    upstream = Upstream()
    server = LiveServer(routes=_routes(upstream), env={"GHOSTGPT_ADMIN_KEY": ADMIN_KEY})
    manage(server, "set_price", "text-embedding-3-small", "--prompt", str(PRICE), "--completion", "0")
    yield server, upstream
    server.stop()
    upstream.close()


def _client(server: LiveServer, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def _added(client: httpx.Client, project_id: str, name: str = "harbour.txt", text: bytes = b"") -> dict[str, Any]:
    text = text or "\n\n".join(SECTIONS).encode()
    response = client.post(
        "/api/documents", files={"file": (name, text, "text/plain")}, data={"project_id": project_id}
    )
    assert response.status_code == 202, response.text
    document_id = response.json()["id"]
    return wait_for(  # type: ignore[no-any-return]
        lambda: (body := client.get(f"/api/documents/{document_id}").json())["status"] in ("ready", "failed") and body,
        f"document {document_id} indexed",
        within=120,
    )


def _routed_project(client: httpx.Client, name: str) -> dict[str, Any]:
    """A new project whose files the routed model embeds."""
    made = client.post("/api/projects", json={"name": name, "embedding_model": "text-embedding-3-small"})
    assert made.status_code == 201, made.text
    return made.json()  # type: ignore[no-any-return]


def _passages(server: LiveServer, document_id: str) -> list[int]:
    query = "select id from documents_passage where document_id = %s order by ordinal"
    rows = server_rows(server, query, (document_id.replace("-", ""),))  # SQLite keeps a UUID as hex
    return [row[0] for row in rows]


def test_a_project_s_files_and_questions_are_embedded_by_its_routed_model_billed_to_the_person(
    routed: tuple[LiveServer, Upstream],
) -> None:
    server, upstream = routed
    account_id, key = funded_account(server.base_url, ADMIN_KEY, "reader", Decimal("1"))
    client = _client(server, key)
    project = _routed_project(client, "Harbour")
    assert project["embedding_model"] == "text-embedding-3-small"

    document = _added(client, project["id"])
    assert document["status"] == "ready" and document["embedding_model"] == "text-embedding-3-small", document
    passages = _passages(server, document["id"])
    embedded = [text for batch in upstream.embedded for text in batch]
    assert len(embedded) == len(passages) > 1, "every passage went to the routed model, once"
    balance, _, _ = server_books(server, account_id)
    assert balance == Decimal(1) - Decimal(upstream.tokens * PRICE) / 10**6, "billed by the upstream's own count"

    # A turn: the question is embedded by the same model (billed too) and the passage found.
    before = upstream.tokens
    turn = client.post(
        "/api/conversations/new/messages",
        json={"content": QUESTION, "model": "chat-up", "project_id": project["id"], "max_tokens": 32},
    )
    assert turn.status_code == 201, turn.text
    retrieval = turn.json()["assistant_message"]["retrieval"]
    assert retrieval["mode"] == "passages" and retrieval["words_only"] == [], retrieval
    assert upstream.embedded[-1][0] == QUESTION
    sources = client.get(f"/api/messages/{turn.json()['assistant_message']['id']}/sources").json()["text"]
    best = sources.split("[1] harbour.txt:\n")[1].split("\n")[0]  # one source (no pages), the best passage first
    assert "pilot boat Kestrel" in best, sources
    question_cost = Decimal((upstream.tokens - before) * PRICE) / 10**6
    balance_after = wait_for(
        lambda: (b := server_books(server, account_id)[0]) <= balance - question_cost and b, "the question billed"
    )
    assert balance_after < balance

    # Back to the built-in model: the file is embedded again (free), its passages kept.
    calls = len(upstream.embedded)
    patched = client.patch(f"/api/projects/{project['id']}", json={"embedding_model": "all-MiniLM-L6-v2"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["embedding_model"] == "all-MiniLM-L6-v2"
    wait_for(
        lambda: client.get(f"/api/projects/{project['id']}").json()["embedding_pending"] == 0,
        "the file embedded again",
        within=120,
    )
    assert client.get(f"/api/documents/{document['id']}").json()["embedding_model"] == "all-MiniLM-L6-v2"
    assert _passages(server, document["id"]) == passages and len(upstream.embedded) == calls

    # And routed again: embedded by the upstream once more, billed to whoever chose it.
    tokens, balance = upstream.tokens, server_books(server, account_id)[0]
    client.patch(f"/api/projects/{project['id']}", json={"embedding_model": "text-embedding-3-small"})
    wait_for(
        lambda: client.get(f"/api/projects/{project['id']}").json()["embedding_pending"] == 0,
        "the file embedded by the routed model again",
        within=120,
    )
    assert client.get(f"/api/documents/{document['id']}").json()["embedding_model"] == "text-embedding-3-small"
    assert len([t for batch in upstream.embedded[calls:] for t in batch]) == len(passages)
    again = Decimal((upstream.tokens - tokens) * PRICE) / 10**6
    assert server_books(server, account_id)[0] == balance - again

    # Only a routed embeddings model may be chosen.
    for wrong in ("chat-up", "no-such-model", 7):
        refused = client.patch(f"/api/projects/{project['id']}", json={"embedding_model": wrong})
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "embedding_model", refused.text


def test_a_file_past_the_account_s_tokens_per_minute_is_embedded_in_the_background(
    routed: tuple[LiveServer, Upstream],
) -> None:
    """The "regular" tier holds a request's worst case against 40,000 tokens a minute; a
    file's batch is held to its balance and budgets, not to that (its tokens count after)."""
    server, _ = routed
    user = operator_call(server.base_url, ADMIN_KEY, "/admin/users/add", {"name": "regular", "tier": "regular"})
    topup = {"user_id": user["user_id"], "amount": "10", "idempotency_key": "regular"}
    operator_call(server.base_url, ADMIN_KEY, "/admin/topup", topup)
    client = _client(server, user["token"])
    project = _routed_project(client, "Big")
    text = "\n\n".join(SECTIONS * 3).encode()
    assert len(text) > 40_000  # one batch's byte bound past the tier's tokens per minute
    document = _added(client, project["id"], "big.txt", text)
    assert document["status"] == "ready", document["error"]
    assert document["embedding_model"] == "text-embedding-3-small"


def test_a_balance_too_low_for_a_file_is_refused_before_the_upstream_is_called(
    routed: tuple[LiveServer, Upstream],
) -> None:
    server, upstream = routed
    _, key = funded_account(server.base_url, ADMIN_KEY, "poor", Decimal("0.000001"))
    client = _client(server, key)
    project = _routed_project(client, "P")
    calls = len(upstream.embedded)
    document = _added(client, project["id"])
    assert document["status"] == "failed" and document["error"]["code"] == "insufficient_balance", document
    assert len(upstream.embedded) == calls, "nothing was sent upstream"
    assert _passages(server, document["id"]) == [], "nothing half-indexed"


def test_on_postgresql_a_celery_worker_embeds_the_file_by_the_routed_model(postgres_url: str, redis_url: str) -> None:
    """As under `make up`: pgvector's column for routed vectors (and its HNSW index for their
    length), the passages embedded on a Celery worker, billed through Redis and PostgreSQL."""
    redis.Redis.from_url(redis_url).flushdb()
    upstream = Upstream()
    env = {"GHOSTGPT_ADMIN_KEY": ADMIN_KEY, "REDIS_URL": redis_url}
    server = LiveServer(routes=_routes(upstream), postgres_url=postgres_url, env=env)
    worker = Worker(server.env)
    try:
        manage(server, "set_price", "text-embedding-3-small", "--prompt", str(PRICE), "--completion", "0")
        account_id, key = funded_account(server.base_url, ADMIN_KEY, "worker-reader", Decimal("1"))
        client = _client(server, key)
        project = _routed_project(client, "H")
        document = _added(client, project["id"])
        assert document["status"] == "ready", document["error"]
        assert document["embedding_model"] == "text-embedding-3-small"
        passages = _passages(server, document["id"])
        assert len([t for batch in upstream.embedded for t in batch]) == len(passages) > 1
        balance, _, _ = server_books(server, account_id)
        assert balance == Decimal(1) - Decimal(upstream.tokens * PRICE) / 10**6
        [(dimensions,)] = server_rows(
            server, "select vector_dims(embedding_routed) from documents_passage where id = %s", (passages[0],)
        )
        assert dimensions == LENGTH
        turn = client.post(
            "/api/conversations/new/messages",
            json={"content": QUESTION, "model": "chat-up", "project_id": project["id"], "max_tokens": 32},
        )
        assert turn.status_code == 201, turn.text
        assert turn.json()["assistant_message"]["retrieval"]["mode"] == "passages"
        sources = client.get(f"/api/messages/{turn.json()['assistant_message']['id']}/sources").json()["text"]
        assert "pilot boat Kestrel" in sources.split("[1] harbour.txt:\n")[1].split("\n")[0], sources
    finally:
        worker.stop()
        server.stop()
        upstream.close()
