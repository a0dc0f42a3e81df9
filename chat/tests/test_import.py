"""Import: ChatGPT's conversations.json (its mapping tree, branches, missing files), Open
WebUI's and LibreChat's exports, and GhostGPT's own (export → import reproduces the chats and
their branches) — from small real-shaped files (chat/tests/fixtures/imports); a malformed
file names its first bad field and imports nothing; the upload runs as a job."""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path

import pytest
from django.test import Client

from chat.models import Account, Conversation, Message
from chat.services import account_create_with_key
from chat.web.importer import ENTRY_MAX_BYTES, ImportRefused, import_chats
from chat.web.selectors import branch_to, conversation_list

FIXTURES = Path(__file__).parent / "fixtures" / "imports"
pytestmark = pytest.mark.usefixtures("fresh_rate_limits")


def _import(account: Account, data: bytes) -> dict[str, object]:
    return import_chats(io.BytesIO(data), account_id=account.pk, owner_id=None)


def _on_screen(conversation: Conversation) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in branch_to(conversation=conversation, leaf_id=conversation.current_leaf)]


@pytest.mark.django_db
def test_a_chatgpt_export_becomes_the_message_tree_with_its_branches() -> None:
    key, _ = account_create_with_key(name="from-chatgpt")
    result = _import(key.account, (FIXTURES / "chatgpt-conversations.json").read_bytes())
    assert (result["conversations"], result["messages"]) == (2, 7)
    assert result["missing_attachments"] == ["file-service://file-Abc123", "notes.pdf"]
    lanterns = Conversation.objects.get(account=key.account, title="Ghost lanterns")
    # The hidden system message and the tool output are left out; the next question hangs
    # from the regenerated answer it followed.
    assert _on_screen(lanterns) == [
        ("user", "Why do lanterns glow in this photo?"),
        ("assistant", "A regenerated answer: phosphorescence."),
        ("user", "And in the rain?"),
        ("assistant", "Still, if the glass holds."),
    ]
    question = lanterns.messages.get(content__startswith="Why do lanterns")
    assert sorted(question.children.values_list("content", flat=True)) == [
        "A regenerated answer: phosphorescence.",
        "Because of the candle inside.",
    ]
    assert [a["name"] for a in question.attachments] == ["file-service://file-Abc123", "notes.pdf"]
    assert all(a["missing"] for a in question.attachments)
    assert lanterns.created_at.timestamp() == pytest.approx(1733500000.123)
    assert question.created_at.timestamp() == pytest.approx(1733500001.0)
    assert lanterns.messages.filter(role="assistant").first().model == "gpt-4o"
    # Imported chats are found by the search.
    assert list(conversation_list(account_id=key.account.pk, owner_id=None, query="phosphorescence")) == [lanterns]


@pytest.mark.django_db
def test_open_webui_and_librechat_exports_import() -> None:
    key, _ = account_create_with_key(name="from-others")
    assert _import(key.account, (FIXTURES / "open-webui-export.json").read_bytes())["conversations"] == 1
    assert _import(key.account, (FIXTURES / "librechat-export.json").read_bytes())["conversations"] == 1
    soup = Conversation.objects.get(account=key.account, title="Soup recipes")
    assert _on_screen(soup) == [("user", "A quick soup?"), ("assistant", "Miso soup: five minutes.")]
    lisbon = Conversation.objects.get(account=key.account, title="Trip to Lisbon")
    assert _on_screen(lisbon) == [
        ("user", "Three things to see in Lisbon?"),
        ("assistant", "Belém Tower, Alfama, the LX Factory."),
    ]


@pytest.mark.django_db
def test_export_then_import_into_a_fresh_account_reproduces_chats_and_branches() -> None:
    source, secret = account_create_with_key(name="leaving")
    _import(source.account, (FIXTURES / "chatgpt-conversations.json").read_bytes())
    archive = b"".join(Client(HTTP_AUTHORIZATION=f"Bearer {secret}").get("/api/export").streaming_content)
    target, _ = account_create_with_key(name="arriving")
    result = _import(target.account, archive)
    assert result["conversations"] == 2

    def shape(account: Account) -> list[tuple[str, list[tuple[str, str]], list[tuple[str, str, str | None]]]]:
        chats = []
        for conversation in Conversation.objects.filter(account=account).order_by("title"):
            by_id = {m.pk: m.content for m in conversation.messages.all()}
            tree = sorted((m.role, m.content, by_id.get(m.parent_id)) for m in conversation.messages.all())
            chats.append((conversation.title, _on_screen(conversation), tree))
        return chats

    assert shape(target.account) == shape(source.account)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("data", "path"),
    [
        (
            b'[{"title": "ok", "mapping": {}}, '
            b'{"title": "bad", "mapping": {"n1": {"message": {"author": {"role": 5}}}}}]',
            "[1].mapping.n1.message.author.role",
        ),
        (
            b'[{"chat": {"history": {"messages": {"m1": {"role": "user", "content": ["not text"]}}}}}]',
            "[0].chat.history.messages.m1.content",
        ),
        (
            b'{"conversationId": "c", "messages": [{"messageId": "x", "createdAt": "yesterday"}]}',
            "messages[0].createdAt",
        ),
        (b'[{"something": "else"}]', "[0]"),
        (
            b'[{"mapping": {"n": {"message": {"author": {"role": "user"}, "content": {"parts": ["hi"]}, '
            b'"metadata": ["not", "an", "object"]}}}}]',
            "[0].mapping.n.message.metadata",
        ),
    ],
)
def test_a_malformed_file_names_its_first_bad_field_and_imports_nothing(data: bytes, path: str) -> None:
    key, _ = account_create_with_key(name="careful")
    with pytest.raises(ImportRefused) as refused:
        _import(key.account, data)
    assert refused.value.path.lstrip(".") == path
    assert not Conversation.objects.filter(account=key.account).exists(), "nothing half-imported"
    assert not Message.objects.filter(conversation__account=key.account).exists()


@pytest.mark.django_db
def test_what_is_not_an_export_is_refused() -> None:
    key, _ = account_create_with_key(name="wrong-file")
    for data in (b"%PDF-1.7 ...", b"[1, 2", b"PK\x03\x04broken"):
        with pytest.raises(ImportRefused):
            _import(key.account, data)
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("conversations/big.json", b" " * (ENTRY_MAX_BYTES + 1))
    with pytest.raises(ImportRefused, match="unpacked"):
        _import(key.account, bomb.getvalue())


@pytest.mark.django_db(transaction=True)
def test_the_upload_runs_as_a_job_into_the_callers_account() -> None:
    key, secret = account_create_with_key(name="uploader")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
    sent = (FIXTURES / "chatgpt-conversations.json").read_bytes()
    response = client.post("/api/import?async=1", {"file": io.BytesIO(sent)})
    assert response.status_code == 202, response.content
    location = response["Location"]
    deadline = time.monotonic() + 30
    while (job := client.get(location).json())["status"] not in ("succeeded", "failed") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert job["status"] == "succeeded", job
    assert job["result"]["conversations"] == 2 and job["progress"] == 100
    assert Conversation.objects.filter(account=key.account).count() == 2

    bad = client.post("/api/import", {"file": io.BytesIO(b'[{"mapping": {"n": 3}}]')})
    assert bad.status_code == 400 and "[0].mapping.n" in json.loads(bad.content)["error"]["message"]
    assert Conversation.objects.filter(account=key.account).count() == 2
    assert Client().post("/api/import", {"file": io.BytesIO(sent)}).status_code == 401
