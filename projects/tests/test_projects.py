"""Projects: chats grouped under a name with instructions every chat in them gets; pinned
chats; search within a project or everywhere that says which message matched; projects in
the export and back through the import."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import pytest
from django.test import Client

from chat.models import Account, Conversation, Message
from chat.services import account_create_with_key
from chat.web import services as web_services
from chat.web.importer import import_chats
from projects.models import Project

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_rate_limits")]


def _client(name: str = "owner") -> tuple[Client, Account]:
    key, secret = account_create_with_key(name=name)
    return Client(HTTP_AUTHORIZATION=f"Bearer {secret}"), key.account


def _post(client: Client, path: str, body: Any) -> Any:
    return client.post(path, json.dumps(body), content_type="application/json")


def _patch(client: Client, path: str, body: Any) -> Any:
    return client.patch(path, json.dumps(body), content_type="application/json")


def _chat(account: Account, title: str, *texts: str, project: Project | None = None) -> Conversation:
    conversation = Conversation.objects.create(account=account, title=title, project=project)
    parent = None
    for i, text in enumerate(texts):
        parent = Message.objects.create(
            conversation=conversation, parent=parent, role="user" if i % 2 == 0 else "assistant", content=text
        )
    conversation.current_leaf = parent.pk if parent else None
    conversation.save()
    return conversation


def test_a_project_is_made_renamed_instructed_archived_and_listed_with_its_chats() -> None:
    client, account = _client()
    made = _post(client, "/api/projects", {"name": "  Thesis   on lanterns ", "instructions": "Cite sources."})
    assert made.status_code == 201, made.content
    project = made.json()
    assert project["name"] == "Thesis on lanterns" and project["instructions"] == "Cite sources."
    assert project["archived"] is False and project["conversations"] == 0

    chat = _post(client, "/api/conversations", {"title": "Chapter 1", "project_id": project["id"]}).json()
    assert chat["project_id"] == project["id"] and chat["pinned"] is False
    _chat(account, "Elsewhere", "not in a project")

    listed = client.get("/api/projects").json()["data"]
    assert [(p["name"], p["conversations"]) for p in listed] == [("Thesis on lanterns", 1)]
    inside = client.get(f"/api/conversations?project={project['id']}").json()["data"]
    assert [c["title"] for c in inside] == ["Chapter 1"]
    outside = client.get("/api/conversations?project=none").json()["data"]
    assert [c["title"] for c in outside] == ["Elsewhere"]
    assert {c["title"] for c in client.get("/api/conversations").json()["data"]} == {"Chapter 1", "Elsewhere"}

    renamed = _patch(client, f"/api/projects/{project['id']}", {"name": "Thesis", "instructions": "Be exact."})
    assert renamed.json()["name"] == "Thesis" and renamed.json()["instructions"] == "Be exact."
    archived = _patch(client, f"/api/projects/{project['id']}", {"archived": True})
    assert archived.json()["archived"] is True
    assert client.get("/api/projects").json()["data"] == []
    assert [p["name"] for p in client.get("/api/projects?archived=1").json()["data"]] == ["Thesis"]
    # An archived project takes no new chats until it is restored.
    refused = _post(client, "/api/conversations", {"project_id": project["id"]})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "project_id"
    assert _patch(client, f"/api/projects/{project['id']}", {"archived": False}).json()["archived"] is False


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "name"),
        ({"name": "   "}, "name"),
        ({"name": 7}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "ok", "instructions": ["no"]}, "instructions"),
        ({"name": "ok", "instructions": "x" * 20_001}, "instructions"),
    ],
)
def test_a_malformed_project_is_a_400_naming_the_field(body: dict[str, Any], param: str) -> None:
    client, _ = _client()
    response = _post(client, "/api/projects", body)
    assert response.status_code == 400 and response.json()["error"]["param"] == param
    assert not Project.objects.exists()


def test_a_person_keeps_at_most_the_servers_number_of_projects(settings: Any) -> None:
    settings.WEB = {**settings.WEB, "PROJECTS_MAX": 2}
    client, _ = _client()
    for name in ("One", "Two"):
        assert _post(client, "/api/projects", {"name": name}).status_code == 201
    refused = _post(client, "/api/projects", {"name": "Three"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "project_limit"
    assert Project.objects.count() == 2


def test_archived_must_be_a_boolean() -> None:
    client, _ = _client()
    project = _post(client, "/api/projects", {"name": "P"}).json()
    response = _patch(client, f"/api/projects/{project['id']}", {"archived": "yes"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "archived"


def test_instructions_are_refused_where_the_operator_forbids_system_prompts(settings: Any) -> None:
    settings.WEB = {**settings.WEB, "ALLOW_SYSTEM_PROMPT": False}
    client, _ = _client()
    response = _post(client, "/api/projects", {"name": "P", "instructions": "Be rude."})
    assert response.status_code == 403 and response.json()["error"]["param"] == "instructions"
    assert _post(client, "/api/projects", {"name": "P"}).status_code == 201


def test_nobody_sees_or_uses_anothers_project() -> None:
    owner, _ = _client("owner")
    stranger, stranger_account = _client("stranger")
    project = _post(owner, "/api/projects", {"name": "Mine"}).json()
    for method in ("get", "delete"):
        assert getattr(stranger, method)(f"/api/projects/{project['id']}").status_code == 404
    assert _patch(stranger, f"/api/projects/{project['id']}", {"name": "Theirs"}).status_code == 404
    assert stranger.get("/api/projects").json()["data"] == []
    # Nor may a stranger put a chat into it, or list its chats.
    chat = _chat(stranger_account, "Stranger's", "hello")
    moved = _patch(stranger, f"/api/conversations/{chat.pk}", {"project_id": project["id"]})
    assert moved.status_code == 400 and moved.json()["error"]["param"] == "project_id"
    made = _post(stranger, "/api/conversations", {"project_id": project["id"]})
    assert made.status_code == 400
    assert stranger.get(f"/api/conversations?project={project['id']}").json()["data"] == []
    assert Project.objects.get().name == "Mine"
    assert _post(stranger, "/api/conversations", {"project_id": "not-a-uuid"}).status_code == 400


def test_chats_move_in_and_out_and_pin() -> None:
    client, account = _client()
    project = _post(client, "/api/projects", {"name": "P"}).json()
    chat = _chat(account, "Loose", "hello")
    moved = _patch(client, f"/api/conversations/{chat.pk}", {"project_id": project["id"]})
    assert moved.status_code == 200 and moved.json()["project_id"] == project["id"]
    assert _patch(client, f"/api/conversations/{chat.pk}", {"project_id": None}).json()["project_id"] is None
    pinned = _patch(client, f"/api/conversations/{chat.pk}", {"pinned": True}).json()
    assert pinned["pinned"] is True
    assert Conversation.objects.get(pk=chat.pk).pinned_at is not None
    assert _patch(client, f"/api/conversations/{chat.pk}", {"pinned": "yes"}).status_code == 400
    assert _patch(client, f"/api/conversations/{chat.pk}", {"pinned": False}).json()["pinned"] is False


def test_deleting_a_project_deletes_its_chats_and_frees_their_storage() -> None:
    client, account = _client()
    project = _post(client, "/api/projects", {"name": "Doomed"}).json()
    inside = Project.objects.get(pk=project["id"])
    _chat(account, "In it", "hello there", "an answer", project=inside)
    kept = _chat(account, "Kept", "hi")
    Account.objects.filter(pk=account.pk).update(storage_used=1000)
    assert client.delete(f"/api/projects/{project['id']}").status_code == 204
    assert list(Conversation.objects.values_list("title", flat=True)) == ["Kept"]
    assert Message.objects.filter(conversation=kept).count() == 1
    assert Account.objects.get(pk=account.pk).storage_used == 1000 - len(b"hello there")


def test_search_within_a_project_or_everywhere_names_the_message_that_matched() -> None:
    client, account = _client()
    project = Project.objects.create(account=account, name="Lanterns")
    inside = _chat(account, "Chapter 1", "What is a lantern?", "A lantern is a portable light.", project=project)
    # The match is on a branch not on screen: an earlier answer, then a regeneration.
    question = inside.messages.get(role="user")
    hidden = Message.objects.create(
        conversation=inside, parent=question, role="assistant", content="Paper LANTERNS float on the river."
    )
    _chat(account, "Rivers", "Tell me about paper lanterns on rivers.")
    everywhere = client.get("/api/conversations?q=paper lantern").json()["data"]
    assert {c["title"] for c in everywhere} == {"Chapter 1", "Rivers"}
    found = next(c for c in everywhere if c["title"] == "Chapter 1")
    assert found["match"]["message_id"] == str(hidden.pk)
    assert "Paper LANTERNS float" in found["match"]["excerpt"]
    in_project = client.get(f"/api/conversations?q=paper lantern&project={project.pk}").json()["data"]
    assert [c["title"] for c in in_project] == ["Chapter 1"]
    # A title match alone has no message to jump to.
    titled = client.get("/api/conversations?q=rivers").json()["data"]
    assert titled[0]["title"] == "Rivers" and titled[0]["match"]["message_id"]
    only_title = client.get("/api/conversations?q=chapter").json()["data"]
    assert only_title[0]["match"] is None


def test_every_chat_in_a_project_gets_its_instructions_before_its_own_system_prompt() -> None:
    _, account = _client()
    project = Project.objects.create(account=account, name="P", instructions="Answer in French.")
    chat = _chat(account, "C", "Hello", "Bonjour", "How are you?", project=project)
    chat.system_prompt = "Be brief."
    chat.save()
    leaf = chat.messages.get(content="How are you?")
    assistant = Message.objects.create(conversation=chat, parent=leaf, role="assistant")
    history = web_services.prompt_messages(conversation=chat, assistant=assistant)
    assert history[0] == {"role": "system", "content": "Answer in French.\n\nBe brief."}
    assert [m["role"] for m in history] == ["system", "user", "assistant", "user"]
    # A first turn in the project (no conversation yet) is measured with them too.
    preview = web_services.turn_preview(
        conversation=None, body={"content": "Hi", "project_id": str(project.pk)}, account_id=account.pk
    )
    assert preview is not None and preview[0] == {"role": "system", "content": "Answer in French."}


def test_the_export_carries_projects_and_the_import_makes_them_again() -> None:
    client, account = _client("leaver")
    project = Project.objects.create(account=account, name="Lanterns", instructions="Cite.")
    chat = _chat(account, "Chapter 1", "What is a lantern?", "A light.", project=project)
    Conversation.objects.filter(pk=chat.pk).update(pinned_at="2026-12-01T00:00:00Z")
    Project.objects.create(account=account, name="Empty and archived", archived_at="2026-12-01T00:00:00Z")
    exported = b"".join(client.get("/api/export").streaming_content)
    with zipfile.ZipFile(io.BytesIO(exported)) as archive:
        projects = json.loads(archive.read("projects.json"))
        document = json.loads(archive.read(f"conversations/{chat.pk}.json"))
    assert [p["name"] for p in projects["projects"]] == ["Lanterns", "Empty and archived"]
    assert document["project_id"] == str(project.pk) and document["pinned"] is True

    _, new_account = _client("newcomer")
    result = import_chats(io.BytesIO(exported), account_id=new_account.pk, owner_id=None)
    assert result["projects"] == 2 and result["conversations"] == 1
    made = {p.name: p for p in Project.objects.filter(account=new_account)}
    assert set(made) == {"Lanterns", "Empty and archived"}
    assert made["Lanterns"].instructions == "Cite." and made["Lanterns"].pk != project.pk
    assert made["Empty and archived"].archived_at is not None
    copy = Conversation.objects.get(account=new_account)
    assert copy.project == made["Lanterns"] and copy.pinned_at is not None
