"""Export: a chat as Markdown (the branch on screen) or JSON (every branch), and a person's
whole history as a streamed ZIP in the documented shape (docs/export.md) — never anyone
else's chats."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from django.test import Client

from chat.models import Account, Conversation, Message, Share
from chat.services import account_create_with_key

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_rate_limits")]


def _chat(account: Account, title: str = "Ghosts & lanterns") -> Conversation:
    """A question answered twice (a regeneration: two branches); the second is on screen."""
    conversation = Conversation.objects.create(
        account=account, title=title, model="ghostgpt", system_prompt="Be brief."
    )
    question = Message.objects.create(conversation=conversation, role="user", content="Do ghosts glow?")
    Message.objects.create(
        conversation=conversation, parent=question, role="assistant", content="First answer.", model="m"
    )
    second = Message.objects.create(
        conversation=conversation, parent=question, role="assistant", content="Second answer.", model="m"
    )
    conversation.current_leaf = second.pk
    conversation.save()
    return conversation


def _client(secret: str) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {secret}")


def test_a_chat_exports_as_markdown_of_its_branch_and_json_of_every_branch() -> None:
    key, secret = account_create_with_key(name="exporter")
    conversation = _chat(key.account)
    client = _client(secret)

    markdown = client.get(f"/api/conversations/{conversation.pk}/export?format=md")
    assert markdown.status_code == 200 and markdown["Content-Type"].startswith("text/markdown")
    assert 'filename="Ghosts---lanterns.md"' in markdown["Content-Disposition"]
    text = markdown.content.decode()
    assert text.startswith("# Ghosts & lanterns\n")
    assert "## Instructions\n\nBe brief." in text and "## You\n\nDo ghosts glow?" in text
    assert "Second answer." in text and "First answer." not in text  # the branch on screen only

    document = client.get(f"/api/conversations/{conversation.pk}/export").json()
    assert (document["format"], document["version"], document["title"]) == ("ghostgpt.export", 1, "Ghosts & lanterns")
    answers = [m for m in document["messages"] if m["role"] == "assistant"]
    question = next(m for m in document["messages"] if m["role"] == "user")
    assert sorted(m["content"] for m in answers) == ["First answer.", "Second answer."]
    assert all(m["parent_id"] == question["id"] for m in answers)
    assert document["current_leaf"] == next(m["id"] for m in answers if m["content"] == "Second answer.")

    assert client.get(f"/api/conversations/{conversation.pk}/export?format=pdf").status_code == 400


def test_nobody_exports_anothers_chat() -> None:
    owner, _ = account_create_with_key(name="owner")
    conversation = _chat(owner.account)
    _, stranger = account_create_with_key(name="stranger")
    assert _client(stranger).get(f"/api/conversations/{conversation.pk}/export").status_code == 404
    assert Client().get(f"/api/conversations/{conversation.pk}/export").status_code in (401, 403)


def test_the_whole_history_is_a_streamed_zip_in_the_documented_shape() -> None:
    key, secret = account_create_with_key(name="leaver")
    chats = [_chat(key.account, f"Chat {n}") for n in range(3)]
    Share.objects.create(id="s" * 22, account=key.account, title="Shared", snapshot=[{"a": 1}], size=10)
    _chat(account_create_with_key(name="someone else")[0].account, "Not mine")

    response = _client(secret).get("/api/export")
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "application/zip"
    chunks = list(response.streaming_content)
    assert len(chunks) >= 5, "written and sent conversation by conversation"
    archive = zipfile.ZipFile(io.BytesIO(b"".join(chunks)))
    names = sorted(archive.namelist())
    assert names == sorted(
        [
            "documents.json",
            "manifest.json",
            "projects.json",
            "shares.json",
            *(f"conversations/{c.pk}.json" for c in chats),
        ]
    )
    manifest = json.loads(archive.read("manifest.json"))
    assert (manifest["format"], manifest["version"]) == ("ghostgpt.export", 1)
    assert sorted(manifest["conversations"]) == sorted(str(c.pk) for c in chats)
    first = json.loads(archive.read(f"conversations/{chats[0].pk}.json"))
    assert first["title"] == "Chat 0" and len(first["messages"]) == 3
    assert json.loads(archive.read("shares.json"))["shares"][0]["title"] == "Shared"
    assert b"Not mine" not in b"".join(archive.read(name) for name in names)
