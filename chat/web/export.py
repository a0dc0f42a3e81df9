"""Taking one's history away: a chat as Markdown (the branch on screen) or JSON (every
branch), and everything a person owns as one ZIP, written as it is read — conversation by
conversation, a bounded number of rows in memory at a time — so a large account never sits
in memory. The JSON shapes are the public contract in docs/export.md (`ghostgpt.export`,
version 1)."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from chat.jsonbytes import dumps
from chat.models import Account, Conversation, Message, Share
from documents.models import Document, DocumentFile
from projects.models import Project

from .selectors import branch_to
from .serializers import conversation_body, message_body

FORMAT = "ghostgpt.export"
VERSION = 1
ROWS_AT_ONCE = 500  # messages (and conversations) read per query while exporting


def conversation_document(conversation: Conversation) -> dict[str, Any]:
    """A conversation with every message of its tree (edits and regenerations are branches:
    each message names its parent), oldest first."""
    messages = conversation.messages.order_by("created_at", "id").iterator(chunk_size=ROWS_AT_ONCE)
    return {**conversation_body(conversation), "messages": [message_body(m) for m in messages]}


def conversation_markdown(conversation: Conversation) -> str:
    """The branch the page shows (root to the current leaf), as Markdown."""
    lines = [f"# {conversation.title or 'Untitled chat'}", ""]
    if conversation.model:
        lines += [f"Model: {conversation.model}  ", f"Exported: {timezone.now().isoformat(timespec='seconds')}", ""]
    if conversation.system_prompt:
        lines += ["## Instructions", "", conversation.system_prompt, ""]
    for message in branch_to(conversation=conversation, leaf_id=conversation.current_leaf):
        who = (
            "You"
            if message.role == Message.Role.USER
            else f"Assistant ({message.model})"
            if message.model
            else "Assistant"
        )
        lines += [f"## {who}", ""]
        names = [str(item.get("name") or item.get("kind")) for item in message.attachments if isinstance(item, dict)]
        if names:
            lines += [f"Attached: {', '.join(names)}", ""]
        lines += [message.content or ("*(no answer: " + message.status + ")*"), ""]
    return "\n".join(lines).rstrip() + "\n"


def filename(conversation: Conversation, extension: str) -> str:
    """A safe file name for a download: the title's letters, digits and dashes."""
    stem = "".join(c if c.isalnum() else "-" for c in (conversation.title or "chat"))[:60].strip("-") or "chat"
    return f"{stem}.{extension}"


class _Pipe:
    """A write-only file whose bytes are taken out as they come (zipfile writes a ZIP to an
    unseekable stream with data descriptors)."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = []
        self.written = 0

    def write(self, data: bytes) -> int:
        self.pieces.append(bytes(data))
        self.written += len(data)
        return len(data)

    def tell(self) -> int:
        return self.written

    def flush(self) -> None:
        return None

    def take(self) -> bytes:
        data, self.pieces = b"".join(self.pieces), []
        return data


def account_zip(*, account_id: int, owner_id: int | None) -> Iterator[bytes]:
    """The person's chats (every branch), projects, documents and the account's shares as a
    ZIP, chunk by chunk: conversations/<id>.json each, projects.json, documents.json with
    files/<document id>/<name> each, shares.json, manifest.json."""
    pipe = _Pipe()
    conversations = Conversation.objects.filter(account_id=account_id, owner_id=owner_id).order_by("created_at", "id")
    with zipfile.ZipFile(pipe, mode="w", compression=zipfile.ZIP_DEFLATED) as archive:  # type: ignore[call-overload]
        ids = []
        for conversation in conversations.iterator(chunk_size=ROWS_AT_ONCE):
            ids.append(str(conversation.pk))
            with archive.open(f"conversations/{conversation.pk}.json", "w", force_zip64=True) as entry:
                entry.write(dumps(_with_version(conversation_document(conversation))))
            yield pipe.take()
        projects = Project.objects.filter(account_id=account_id, owner_id=owner_id).order_by("created_at", "id")
        archive.writestr("projects.json", dumps(_with_version({"projects": [_project(p) for p in projects]})))
        yield pipe.take()
        # Documents: their list, then each file as uploaded, one at a time.
        documents = Document.objects.filter(account_id=account_id, owner_id=owner_id).order_by("created_at", "id")
        archive.writestr("documents.json", dumps(_with_version({"documents": [_document(d) for d in documents]})))
        yield pipe.take()
        for document in documents.filter(status=Document.Status.READY).iterator(chunk_size=ROWS_AT_ONCE):
            stored = DocumentFile.objects.filter(document_id=document.pk).first()
            if stored is None:
                continue
            with archive.open(_file_path(document), "w", force_zip64=True) as entry:
                entry.write(bytes(stored.data))
            yield pipe.take()
        # An organization's shares are its members' together (a share records no author):
        # only a personal account's go with its person.
        personal = Account.objects.filter(pk=account_id, organization__isnull=True).exists()
        shares = (
            Share.objects.filter(account_id=account_id).order_by("created_at") if personal else Share.objects.none()
        )
        archive.writestr("shares.json", dumps(_with_version({"shares": list(_shares(shares))})))
        yield pipe.take()
        manifest = {
            "exported_at": timezone.now().isoformat(),
            "account_id": account_id,
            "conversations": ids,
        }
        archive.writestr("manifest.json", dumps(_with_version(manifest)))
    yield pipe.take()


def _with_version(document: dict[str, Any]) -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, **document}


def _project(project: Project) -> dict[str, Any]:
    return {
        "id": str(project.pk),
        "name": project.name,
        "instructions": project.instructions,
        "embedding_model": project.embedding_model or None,  # None: the shipped model
        "archived": project.archived_at is not None,
        "created_at": project.created_at.isoformat(),
    }


def _file_path(document: Document) -> str:
    name = "".join(c if c.isalnum() or c in "._-" else "-" for c in document.name)[-100:].lstrip(".") or "file"
    return f"files/{document.pk}/{name}"


def _document(document: Document) -> dict[str, Any]:
    return {
        "id": str(document.pk),
        "name": document.name,
        "kind": document.kind,
        "content_type": document.content_type,
        "url": document.url or None,
        "status": document.status,
        "pages": document.pages,
        "embedding_model": document.embedding_model or None,
        "project_id": str(document.project_id) if document.project_id else None,
        "conversation_id": str(document.conversation_id) if document.conversation_id else None,
        "file": _file_path(document) if document.status == Document.Status.READY else None,
        "created_at": document.created_at.isoformat(),
    }


def _shares(shares: QuerySet[Share]) -> Iterator[dict[str, Any]]:
    for share in shares.iterator(chunk_size=ROWS_AT_ONCE):
        yield {
            "id": share.pk,
            "title": share.title,
            "created_at": share.created_at.isoformat(),
            "snapshot": share.snapshot,
        }
