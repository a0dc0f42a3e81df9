"""Documents through /api/documents (jobs run as under `make run`), on the database the suite
runs on — SQLite with sqlite-vec, or PostgreSQL with pgvector: indexing by kind, clear
errors with nothing half-indexed, search by meaning and by words, what a turn reads."""

from __future__ import annotations

import io
import itertools
import json
import time
from typing import Any

import numpy as np
import pytest
from asgiref.sync import async_to_sync
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection, transaction
from django.test import Client

from chat.api.auth import Principal, principal_for_key
from chat.models import Account, ApiKey, Conversation, Message
from chat.services import account_create_with_key
from documents import context, store
from documents.embedding import embed_texts
from documents.models import Document, Passage
from projects.models import Project
from tools.tests.fixtures import text_pdf
from tools.tests.test_tools_api import allow_site, site  # noqa: F401  (fixtures: a loopback site the fetcher may reach)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_rate_limits")]

PAGES = [
    "The lighthouse of Varnholm was built in 1871 from grey granite quarried on the island.",
    "Fishing boats leave the harbour at dawn; the catch is mostly cod and herring in winter.",
    "The annual lantern festival is held on the first Saturday of August by the old pier.",
]


def _client(name: str = "reader") -> tuple[Client, Account]:
    key, secret = account_create_with_key(name=name)
    return Client(HTTP_AUTHORIZATION=f"Bearer {secret}"), key.account


def _principal(account: Account) -> Principal:
    return principal_for_key(ApiKey.objects.filter(account=account).values_list("pk", flat=True).first())


def _upload(client: Client, name: str, data: bytes, content_type: str, **fields: Any) -> Any:
    return client.post("/api/documents", {"file": SimpleUploadedFile(name, data, content_type), **fields})


def _ready(client: Client, body: dict[str, Any], seconds: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while body["status"] in ("queued", "indexing"):
        assert time.monotonic() < deadline, body
        time.sleep(0.2)
        body = client.get(f"/api/documents/{body['id']}").json()
    return body


def _docx(paragraphs: list[tuple[str, str]]) -> bytes:
    import docx

    document = docx.Document()
    for style, text in paragraphs:
        if style == "heading":
            document.add_heading(text, level=1)
        else:
            document.add_paragraph(text)
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text, table.rows[0].cells[1].text = "Harbour master", "Ingrid Vale"
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def test_a_pdf_is_indexed_page_by_page_and_searchable_by_meaning_and_words() -> None:
    client, account = _client()
    response = _upload(client, "varnholm.pdf", text_pdf(PAGES), "application/pdf")
    assert response.status_code == 202, response.content
    body = _ready(client, response.json())
    assert body["status"] == "ready" and body["pages"] == 3 and body["kind"] == "pdf", body
    passages = list(Passage.objects.filter(document_id=body["id"]).order_by("ordinal"))
    assert [p.page for p in passages] == [1, 2, 3]
    assert client.get(f"/api/documents/{body['id']}/file").getvalue().startswith(b"%PDF-")
    account.refresh_from_db()
    assert account.storage_used >= body["size"] > 0

    key = store.document_key(passages[0].document_id)
    question = embed_texts(["When is the festival with lanterns?"])[0]
    assert store.nearest(question, [key], 3)[0] == passages[2].pk
    assert store.matching("which fish do the boats catch", [key], 3)[0] == passages[1].pk
    other, _ = _client("someone else")
    assert other.get(f"/api/documents/{body['id']}").status_code == 404
    assert other.get(f"/api/documents/{body['id']}/file").status_code == 404


@pytest.mark.parametrize(
    "name, data, content_type, expected",
    [
        (
            "notes.md",
            b"# Harbour\nBoats leave at dawn.\n\n## Festival\nLanterns in August.\n",
            "text/markdown",
            ["Harbour", "Festival"],
        ),
        ("plain.txt", "Caf\u00e9 au lait at the pier.".encode(), "text/plain", [""]),
        ("boats.csv", b"name,length\nSeagull,12 m\nTern,9 m\n", "text/csv", ["Rows 1\u20132"]),
        (
            "page.html",
            b"<html><head><title>Pier</title></head><body><article><p>The old pier is 300 metres long "
            b"and was rebuilt after the storm of 1953.</p></article></body></html>",
            "text/html",
            ["Pier"],
        ),
    ],
)
def test_text_kinds_keep_their_sections(name: str, data: bytes, content_type: str, expected: list[str]) -> None:
    client, _ = _client()
    body = _ready(client, _upload(client, name, data, content_type).json())
    assert body["status"] == "ready", body
    headings = list(
        Passage.objects.filter(document_id=body["id"]).order_by("ordinal").values_list("heading", flat=True)
    )
    assert headings == expected


def test_a_docx_is_read_with_its_headings_and_tables() -> None:
    client, _ = _client()
    data = _docx(
        [("heading", "History"), ("p", "The lighthouse dates from 1871."), ("heading", "People"), ("p", "Staff.")]
    )
    body = _ready(client, _upload(client, "guide.docx", data, "application/octet-stream").json())
    assert body["status"] == "ready" and body["kind"] == "docx", body
    rows = list(Passage.objects.filter(document_id=body["id"]).order_by("ordinal").values_list("heading", "text"))
    assert rows[0] == ("History", "The lighthouse dates from 1871.")
    assert rows[1][0] == "People" and "Harbour master | Ingrid Vale." in rows[1][1]


@pytest.mark.parametrize(
    "name, data, code",
    [
        ("locked.pdf", text_pdf(["secret"], password="hunter2"), "pdf_encrypted"),
        ("broken.pdf", b"%PDF-1.7\n" + b"garbage " * 100, "pdf_unreadable"),
        ("broken.docx", b"PK\x03\x04 not really a zip", "docx_unreadable"),
        ("blank.pdf", text_pdf(["", ""]), "no_text"),
        ("latin1.txt", "caf\xe9".encode("latin-1"), "not_text"),
    ],
)
def test_a_file_that_cannot_be_read_fails_clearly_and_leaves_nothing(name: str, data: bytes, code: str) -> None:
    client, account = _client()
    body = _ready(client, _upload(client, name, data, "application/octet-stream").json())
    assert body["status"] == "failed" and body["error"]["code"] == code, body
    assert not Passage.objects.filter(document_id=body["id"]).exists()
    account.refresh_from_db()
    assert account.storage_used == 0


def test_bad_requests_are_clear_4xx() -> None:
    client, _ = _client()
    response = _upload(client, "song.mp3", b"ID3", "audio/mpeg")
    assert response.status_code == 415 and response.json()["error"]["code"] == "unsupported_file_type"
    assert client.post("/api/documents", {}).status_code == 400
    response = client.post("/api/documents", json.dumps({"url": "ftp://x"}), content_type="application/json")
    assert response.status_code == 400 and response.json()["error"]["param"] == "url"
    stranger = Project.objects.create(account=_client("other")[1], name="theirs")
    response = _upload(client, "a.txt", b"text", "text/plain", project_id=str(stranger.pk))
    assert response.status_code == 400 and response.json()["error"]["param"] == "project_id"
    assert Client().post("/api/documents", {}).status_code == 401
    assert client.get("/api/documents/not-an-id").status_code == 404


def test_deleting_gives_the_storage_back_and_removes_vectors() -> None:
    client, account = _client()
    body = _ready(client, _upload(client, "v.pdf", text_pdf(PAGES), "application/pdf").json())
    key = store.document_key(Document.objects.get(pk=body["id"]).pk)
    assert store.nearest(embed_texts(["lighthouse"])[0], [key], 5)
    assert client.delete(f"/api/documents/{body['id']}").status_code == 204
    account.refresh_from_db()
    assert account.storage_used == 0
    assert store.nearest(embed_texts(["lighthouse"])[0], [key], 5) == []
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {store.VECTOR_TABLE}")
            assert cursor.fetchone()[0] == 0


def _turn(account: Account, question: str, *, documents: list[str], project: Project | None = None) -> tuple[Any, ...]:
    conversation = Conversation.objects.create(account=account, project=project, title="t")
    attachments = [{"kind": "document", "name": "x", "document_id": d} for d in documents]
    user = Message.objects.create(conversation=conversation, role="user", content=question, attachments=attachments)
    assistant = Message.objects.create(conversation=conversation, parent=user, role="assistant", status="streaming")
    return conversation, user, assistant


def test_a_turn_reads_the_whole_document_when_it_fits_and_the_best_passages_when_not() -> None:
    client, account = _client()
    body = _ready(client, _upload(client, "varnholm.pdf", text_pdf(PAGES), "application/pdf").json())
    conversation, user, assistant = _turn(account, "When is the lantern festival?", documents=[body["id"]])
    history = [{"role": "user", "content": user.content}]

    sent = async_to_sync(context.for_turn)(
        principal=_principal(account),
        conversation=conversation,
        assistant=assistant,
        branch=[user],
        history=history,
        context_length=8192,
        max_tokens=None,
    )
    assistant.refresh_from_db()
    assert assistant.retrieval["mode"] == "whole" and assistant.retrieval["pages_sent"] == 3
    assert "[3] varnholm.pdf, page 3:\nThe annual lantern festival" in sent[-1]["content"]

    sent = async_to_sync(context.for_turn)(
        principal=_principal(account),
        conversation=conversation,
        assistant=assistant,
        branch=[user],
        history=history,
        context_length=1200,
        max_tokens=1024,
    )
    assistant.refresh_from_db()
    record = assistant.retrieval
    assert record["mode"] == "passages" and record["pages_total"] == 3 and record["pages_sent"] < 3, record
    assert record["sources"][0] == {"n": 1, "document_id": body["id"], "name": "varnholm.pdf", "page": 3}
    assert "[1] varnholm.pdf, page 3:\nThe annual lantern festival" in sent[-1]["content"]
    # What went in, as the model read it, for the answer's owner only.
    shown = client.get(f"/api/messages/{assistant.pk}/sources").json()["text"]
    assert shown in sent[-1]["content"] and shown.startswith(context.INSTRUCTIONS)
    assert _client("someone else")[0].get(f"/api/messages/{assistant.pk}/sources").status_code == 404


def test_a_project_s_files_are_read_by_every_chat_in_it() -> None:
    client, account = _client()
    project = Project.objects.create(account=account, name="Island")
    body = _ready(
        client, _upload(client, "v.pdf", text_pdf(PAGES), "application/pdf", project_id=str(project.pk)).json()
    )
    assert body["project_id"] == str(project.pk)
    conversation, user, assistant = _turn(account, "Who catches cod?", documents=[], project=project)
    async_to_sync(context.for_turn)(
        principal=_principal(account),
        conversation=conversation,
        assistant=assistant,
        branch=[user],
        history=[{"role": "user", "content": "q"}],
        context_length=8192,
        max_tokens=None,
    )
    assistant.refresh_from_db()
    assert assistant.retrieval["files_total"] == 1
    listed = client.get(f"/api/documents?project={project.pk}").json()["data"]
    assert [d["id"] for d in listed] == [body["id"]]


def test_the_export_carries_the_files_and_the_import_indexes_them_again() -> None:
    import zipfile

    from chat.web.importer import import_chats

    client, account = _client()
    project = Project.objects.create(account=account, name="Island")
    _ready(client, _upload(client, "p.pdf", text_pdf(PAGES), "application/pdf", project_id=str(project.pk)).json())
    attached = _ready(client, _upload(client, "notes.md", b"# Boats\nCod in winter.\n", "text/markdown").json())
    conversation, _, _ = _turn(account, "What is caught?", documents=[attached["id"]])
    Document.objects.filter(pk=attached["id"]).update(conversation=conversation)

    archive = zipfile.ZipFile(io.BytesIO(b"".join(client.get("/api/export").streaming_content)))
    listed = json.loads(archive.read("documents.json"))["documents"]
    assert {d["name"] for d in listed} == {"p.pdf", "notes.md"}
    held = {d["name"]: archive.read(d["file"]) for d in listed}
    assert held["p.pdf"].startswith(b"%PDF-") and held["notes.md"] == b"# Boats\nCod in winter.\n"

    other, someone = _client("importer")
    buffer = io.BytesIO(b"".join(client.get("/api/export").streaming_content))
    result = import_chats(buffer, account_id=someone.pk, owner_id=None)
    assert result["documents"] == 2 and result["projects"] == 1
    copies = {d.name: d for d in Document.objects.filter(account=someone)}
    assert copies["p.pdf"].project.name == "Island" and copies["p.pdf"].project.account_id == someone.pk
    chat = Conversation.objects.get(account=someone, title="t")
    assert copies["notes.md"].conversation_id == chat.pk
    message = chat.messages.get(role="user")
    assert message.attachments[0]["document_id"] == str(copies["notes.md"].pk)
    for copy in copies.values():
        assert _ready(other, other.get(f"/api/documents/{copy.pk}").json())["status"] == "ready"


def test_whole_documents_say_a_sentence_carried_between_passages_once() -> None:
    client, account = _client()
    text = " ".join(f"Record {n} of the quay names a boat that sailed from the harbour." for n in range(80))
    body = _ready(client, _upload(client, "quay.txt", text.encode(), "text/plain").json())
    passages = list(Passage.objects.filter(document_id=body["id"]).order_by("ordinal"))
    carried = [b for a, b in itertools.pairwise(passages) if b.text.split(".")[0] in a.text]
    assert len(passages) > 1 and carried, "a short last sentence opens the next passage too"
    conversation, user, assistant = _turn(account, "Which boats sailed?", documents=[body["id"]])
    sent = async_to_sync(context.for_turn)(
        principal=_principal(account),
        conversation=conversation,
        assistant=assistant,
        branch=[user],
        history=[{"role": "user", "content": user.content}],
        context_length=32000,
        max_tokens=None,
    )
    content = sent[-1]["content"]
    assert all(content.count(f"Record {n} of the quay") == 1 for n in range(80))


@pytest.mark.parametrize(
    "path, status, expected",
    [
        ("/article", "ready", "Flying Dutchman"),
        ("/doc.pdf", "ready", "Page one text"),
        ("/gone", "failed", "upstream_status"),
    ],
)
def test_a_page_by_its_address_is_fetched_safely_and_indexed(
    allow_site: Any,  # noqa: F811  (the fixture)
    path: str,
    status: str,
    expected: str,
) -> None:
    client, _ = _client()
    response = client.post(
        "/api/documents", json.dumps({"url": allow_site.url + path}), content_type="application/json"
    )
    assert response.status_code == 202, response.content
    body = _ready(client, response.json())
    assert body["status"] == status, body
    if status == "ready":
        assert expected in " ".join(Passage.objects.filter(document_id=body["id"]).values_list("text", flat=True))
    else:
        assert body["error"]["code"] == expected


@pytest.mark.parametrize("dimensions", [64, 3072])  # 3,072 (text-embedding-3-large): past HNSW's `vector` limit
def test_a_routed_model_s_vectors_of_any_length_are_stored_searched_and_deleted(
    dimensions: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _ = _client()
    body = _ready(client, _upload(client, "v.pdf", text_pdf(PAGES), "application/pdf").json())
    document = Document.objects.get(pk=body["id"])
    passages = list(document.passages.order_by("ordinal"))
    vectors = np.random.default_rng(7).normal(size=(len(passages), dimensions)).astype(np.float32)
    key = store.document_key(document.pk)
    store.vectors_ready(dimensions)
    with transaction.atomic():  # what re-embedding does: the shipped model's vectors out, the routed model's in
        store.vectors_drop([p.pk for p in passages], dimensions=384)
        store.vectors_set([(p.pk, key, v) for p, v in zip(passages, vectors, strict=True)], dimensions=dimensions)
    assert store.nearest(embed_texts(["lighthouse"])[0], [key], 5) == [], "no vector left of the other model"
    near = vectors + np.random.default_rng(8).normal(scale=0.1, size=vectors.shape).astype(np.float32)
    for i, passage in enumerate(passages):
        assert store.nearest(near[i], [key], 3, dimensions=dimensions)[0] == passage.pk
    assert store.matching("which fish do the boats catch", [key], 3)[0] == passages[1].pk, "the text index stays"
    if connection.vendor == "postgresql":  # a scope past EXACT_MAX goes through the length's own HNSW index
        monkeypatch.setattr(store, "EXACT_MAX", 0)
        for i, passage in enumerate(passages):
            assert store.nearest(near[i], [key], 3, dimensions=dimensions)[0] == passage.pk
        _, hnsw = store._pg_routed_queries(dimensions)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("EXPLAIN " + hnsw, [[key], store._vector_text(near[0]), 3])
            plan = " ".join(row[0] for row in cursor.fetchall())
        assert f"documents_passage_embedding_{dimensions}" in plan, plan
    assert client.delete(f"/api/documents/{body['id']}").status_code == 204
    assert store.nearest(near[0], [key], 3, dimensions=dimensions) == []


def test_documents_whose_model_cannot_embed_the_question_are_searched_by_words_and_the_answer_says_so() -> None:
    client, account = _client()
    body = _ready(client, _upload(client, "varnholm.pdf", text_pdf(PAGES), "application/pdf").json())
    # Embedded by a routed model this server no longer serves (its routes changed since).
    Document.objects.filter(pk=body["id"]).update(embedding_model="text-embedding-gone", dimensions=64)
    conversation, user, assistant = _turn(account, "Which fish do the boats catch?", documents=[body["id"]])
    sent = async_to_sync(context.for_turn)(
        principal=_principal(account),
        conversation=conversation,
        assistant=assistant,
        branch=[user],
        history=[{"role": "user", "content": user.content}],
        context_length=1200,
        max_tokens=1024,
    )
    assistant.refresh_from_db()
    record = assistant.retrieval
    assert record["mode"] == "passages" and record["sources"][0]["page"] == 2, record
    [skipped] = record["words_only"]
    assert skipped["model"] == "text-embedding-gone" and "not a routed embeddings model" in skipped["reason"]
    assert "[1] varnholm.pdf, page 2:\nFishing boats" in sent[-1]["content"]


def test_a_chat_moved_out_of_a_project_has_its_files_embedded_by_the_shipped_model_again() -> None:
    client, account = _client()
    project = Project.objects.create(account=account, name="Island")
    chat = client.post("/api/conversations", {"project_id": str(project.pk)}, content_type="application/json").json()
    added = _upload(client, "v.pdf", text_pdf(PAGES), "application/pdf", conversation_id=chat["id"])
    body = _ready(client, added.json())
    assert body["status"] == "ready", body
    # As the project's routed model (no longer served here) had embedded it: 64-length vectors.
    Project.objects.filter(pk=project.pk).update(embedding_model="text-embedding-gone")
    document = Document.objects.get(pk=body["id"])
    passages = list(document.passages.order_by("ordinal"))
    key = store.document_key(document.pk)
    store.vectors_ready(64)
    with transaction.atomic():
        store.vectors_drop([p.pk for p in passages], dimensions=384)
        store.vectors_set([(p.pk, key, np.ones(64, dtype=np.float32)) for p in passages], dimensions=64)
        Document.objects.filter(pk=document.pk).update(embedding_model="text-embedding-gone", dimensions=64)

    moved = client.patch(f"/api/conversations/{chat['id']}", {"project_id": None}, content_type="application/json")
    assert moved.status_code == 200 and moved.json()["project_id"] is None, moved.content
    deadline = time.monotonic() + 60
    while Document.objects.get(pk=document.pk).embedding_model:
        assert time.monotonic() < deadline, "the file was not embedded again"
        time.sleep(0.2)
    assert client.get(f"/api/documents/{document.pk}").json()["embedding_model"] == "all-MiniLM-L6-v2"
    question = embed_texts(["When is the festival with lanterns?"])[0]
    assert store.nearest(question, [key], 3)[0] == passages[2].pk, "searched by the shipped model's vectors"
    assert store.nearest(np.ones(64, dtype=np.float32), [key], 3, dimensions=64) == []
    assert list(document.passages.order_by("ordinal")) == passages, "the same passages (answers cite their ids)"
