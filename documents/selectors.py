"""Reads of documents, always with their owner (an account, and a person within it)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models import Q, QuerySet
from django.http import Http404

from chat.models import Conversation
from chat.web.selectors import uuid_or_404
from projects.models import Project

from .models import Document


def document_list(
    *, account_id: int, owner_id: int | None, project_id: Any = None, conversation_id: Any = None
) -> QuerySet[Document]:
    documents = Document.objects.filter(account_id=account_id, owner_id=owner_id)
    if project_id is not None:
        documents = documents.filter(project_id=uuid_or_404(project_id))
    if conversation_id is not None:
        documents = documents.filter(conversation_id=uuid_or_404(conversation_id))
    return documents.select_related("job", "account").order_by("created_at")


def document_get_for_owner(*, account_id: int, owner_id: int | None, document_id: Any) -> Document:
    document = (
        Document.objects.filter(pk=uuid_or_404(document_id), account_id=account_id, owner_id=owner_id)
        .select_related("job", "account")
        .first()
    )
    if document is None:
        raise Http404("No such document.")
    return document


def documents_in_context(*, conversation: Conversation, attached: Iterable[Any]) -> list[Document]:
    """The documents a turn of `conversation` reads: its project's files and the files
    attached on its branch (`attached`: their ids), the conversation owner's own only."""
    ids = []
    for value in attached:
        try:
            ids.append(uuid_or_404(value))
        except Http404:
            continue
    scope = Q(pk__in=ids)
    if conversation.project_id:
        scope |= Q(project_id=conversation.project_id)
    return list(
        Document.objects.filter(scope, account_id=conversation.account_id, owner_id=conversation.owner_id).order_by(
            "created_at"
        )
    )


def documents_of_project(*, project_id: Any) -> QuerySet[Document]:
    """A project's documents: its files and the files attached in its chats (all embedded by
    the project's model)."""
    return Document.objects.filter(Q(project_id=project_id) | Q(conversation__project_id=project_id))


def documents_behind(documents: QuerySet[Document], model: str) -> QuerySet[Document]:
    """Of `documents`, the ready ones embedded by another model than `model` (waiting to be
    embedded again)."""
    return documents.filter(status=Document.Status.READY).exclude(embedding_model=model)


def embedding_model_for(document: Document) -> str:
    """The model that should embed `document` now: its project's (a project file, or a file of
    a chat in a project), else the shipped one ("")."""
    project_id = document.project_id
    if project_id is None and document.conversation_id is not None:
        chat = Conversation.objects.filter(pk=document.conversation_id)
        project_id = chat.values_list("project_id", flat=True).first()
    if project_id is None:
        return ""
    return Project.objects.filter(pk=project_id).values_list("embedding_model", flat=True).first() or ""
