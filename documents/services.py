"""Writes of documents: adding a file or a page (indexed by a job), attaching to a chat,
deleting (the storage it took given back)."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Sum
from django.db.models.functions import Greatest

from chat.api.errors import ApiError
from chat.models import Account, Conversation
from chat.web.selectors import conversation_get_for_account
from projects.selectors import project_get_for_owner
from tools.base import ToolError
from tools.services import job_create

from . import store
from .extract import IMAGE_TYPES, MEDIA_TYPES, kind_of
from .models import Document
from .selectors import documents_behind

logger = logging.getLogger(__name__)


def _ready_or_503() -> None:
    try:
        store.check_ready()
    except store.Unavailable as exc:
        raise ApiError(503, str(exc), error_type="server_error", code="documents_unavailable") from None


def _place(*, account_id: int, owner_id: int | None, project_id: Any, conversation_id: Any) -> dict[str, Any]:
    """Where a new document goes: a project's files, a chat's, or neither (a chat not started)."""
    if project_id not in (None, "") and conversation_id not in (None, ""):
        raise ApiError(400, "Add a document to a project or to a chat, not both.", param="project_id")
    place: dict[str, Any] = {}
    if project_id not in (None, ""):
        try:
            place["project"] = project_get_for_owner(account_id=account_id, owner_id=owner_id, project_id=project_id)
        except Exception:
            raise ApiError(400, "'project_id' must be one of your projects.", param="project_id") from None
    if conversation_id not in (None, ""):
        try:
            place["conversation"] = conversation_get_for_account(
                account_id=account_id, owner_id=owner_id, conversation_id=conversation_id
            )
        except Exception:
            raise ApiError(400, "'conversation_id' must be one of your chats.", param="conversation_id") from None
    return place


def _count_check(account_id: int, owner_id: int | None) -> None:
    limit = settings.DOCUMENTS["MAX_PER_PERSON"]
    if Document.objects.filter(account_id=account_id, owner_id=owner_id).count() >= limit:
        raise ApiError(
            403, f"You have {limit} documents, the most a person may keep: delete some first.", code="document_limit"
        )


def document_create(
    *,
    account: Account,
    owner_id: int | None,
    name: str,
    content_type: str,
    upload: Path | None = None,
    url: str = "",
    project_id: Any = None,
    conversation_id: Any = None,
    key_id: int | None = None,
) -> Document:
    """A document from an uploaded file (`upload`, a local temporary file) or a page
    (`url`), and the job that indexes it; 400/413/415 for what cannot be one. `key_id`: the
    key a routed embeddings model (the project's choice) bills for its passages."""
    _ready_or_503()
    place = _place(account_id=account.pk, owner_id=owner_id, project_id=project_id, conversation_id=conversation_id)
    if upload is not None:
        kind = kind_of(name, content_type)
        if kind is None:
            raise ApiError(
                415,
                f"'{name}' is not a kind of file GhostGPT reads: PDF, DOCX, text, Markdown, CSV, HTML or an image.",
                param="file",
                code="unsupported_file_type",
            )
        # What the file is served as (the viewer): never a type the uploader names for text
        # kinds, and for images only an image type.
        content_type = MEDIA_TYPES.get(kind) or (
            content_type if content_type in IMAGE_TYPES else "application/octet-stream"
        )
    else:
        kind = Document.Kind.HTML
    with transaction.atomic():
        _count_check(account.pk, owner_id)
        document = Document.objects.create(
            account=account,
            owner_id=owner_id,
            name=name[:255] or "document",
            kind=kind,
            content_type=content_type[:100],
            url=url,
            **place,
        )
        params: dict[str, Any] = {"document_id": str(document.pk), "key_id": key_id}
        if url:
            params["url"] = url
        try:
            job = job_create(tool="document-index", params=params, account=account, upload=upload)
        except ToolError as exc:
            raise ApiError(exc.status, exc.message, code=exc.code) from None
        document.job = job
        document.save(update_fields=["job"])
    return document


def _give_back(rows: Any) -> None:
    for account_id, size in (
        rows.filter(status=Document.Status.READY).values_list("account_id").annotate(size=Sum("size"))
    ):
        Account.objects.filter(pk=account_id).update(storage_used=Greatest(F("storage_used") - (size or 0), 0))


@transaction.atomic
def documents_delete(*, documents: Any) -> int:
    """Delete `documents` (a queryset) with their passages and vectors; their storage is
    given back to their accounts."""
    _give_back(documents)
    return documents.delete()[1].get(Document._meta.label, 0)


def document_delete(*, document: Document) -> None:
    documents_delete(documents=Document.objects.filter(pk=document.pk))


def documents_attach(*, conversation: Conversation, document_ids: list[uuid.UUID], key_id: int | None) -> None:
    """Documents added in the composer of a chat not started yet belong to it from its
    first turn on (deleted with it), embedded by its project's model (`key_id` pays)."""
    attached = Document.objects.filter(
        pk__in=document_ids,
        account_id=conversation.account_id,
        owner_id=conversation.owner_id,
        project__isnull=True,
        conversation__isnull=True,
    ).update(conversation=conversation)
    if attached:
        try:
            documents_follow(conversation=conversation, key_id=key_id)
        except ApiError:  # the turn goes on: the files stay searchable by the model that embedded them
            logger.warning("chat %s: re-embedding its files could not be queued", conversation.pk, exc_info=True)


def documents_follow(*, conversation: Conversation, key_id: int | None) -> None:
    """A chat given files, or moved into or out of a project: its ready files embedded by
    another model than its project's (or the shipped one, outside any) are embedded again,
    in a job billed to `key_id` (files still being indexed take the project's model then)."""
    model = conversation.project.embedding_model if conversation.project_id else ""
    if documents_behind(Document.objects.filter(conversation=conversation), model).exists():
        _reembed(params={"conversation_id": str(conversation.pk), "key_id": key_id}, account=conversation.account)


def project_reembed(*, project_id: Any, account: Account, key_id: int | None) -> None:
    """Embed the project's documents again by its (new) model, in a job billed to `key_id`."""
    _reembed(params={"project_id": str(project_id), "key_id": key_id}, account=account)


def _reembed(*, params: dict[str, Any], account: Account) -> None:
    try:
        job_create(tool="document-reembed", params=params, account=account)
    except ToolError as exc:
        raise ApiError(exc.status, exc.message, code=exc.code) from None
