"""Writes of projects: create, rename, instruct, archive, delete (with their chats)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from chat.api.auth import principal_for_key
from chat.api.errors import ApiError
from chat.web.services import conversations_delete
from documents.embedding import choose
from documents.selectors import documents_behind, documents_of_project
from documents.services import documents_delete, project_reembed

from .models import Project

NAME_LENGTH = 200
INSTRUCTIONS_LENGTH = 20_000


def _bad(message: str, param: str) -> ApiError:
    return ApiError(400, message, param=param, code="invalid_value")


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _bad("'name' must be a non-empty string.", "name")
    name = " ".join(value.split())
    if len(name) > NAME_LENGTH:
        raise _bad(f"'name' may be at most {NAME_LENGTH} characters.", "name")
    return name


def _instructions(value: Any) -> str:
    if not isinstance(value, str):
        raise _bad("'instructions' must be a string.", "instructions")
    if len(value) > INSTRUCTIONS_LENGTH:
        raise _bad(f"'instructions' may be at most {INSTRUCTIONS_LENGTH} characters.", "instructions")
    if value.strip() and not settings.WEB["ALLOW_SYSTEM_PROMPT"]:
        raise ApiError(403, "This server does not allow custom system prompts.", param="instructions", code="forbidden")
    return value


def _embedding_model(value: Any, key_id: int | None) -> str:
    """The model a choice names (documents.embedding.choose), checked against the key that pays."""
    if key_id is None:
        raise ApiError(403, "Choosing an embeddings model needs a key to bill.", param="embedding_model")
    return choose(value, principal_for_key(key_id))


def project_create(
    *,
    account_id: int,
    owner_id: int | None,
    name: Any,
    instructions: Any = "",
    embedding_model: Any = None,
    key_id: int | None = None,
) -> Project:
    """A new project; 403 project_limit once the person keeps GHOSTGPT_PROJECTS_MAX.
    `embedding_model`: a routed embeddings model for its files (one `key_id` may use)."""
    most = int(settings.WEB["PROJECTS_MAX"])
    if Project.objects.filter(account_id=account_id, owner_id=owner_id).count() >= most:
        raise ApiError(
            403, f"You keep {most} projects, the most this server allows: delete one first.", code="project_limit"
        )
    model = _embedding_model(embedding_model, key_id) if embedding_model not in (None, "") else ""
    return Project.objects.create(
        account_id=account_id,
        owner_id=owner_id,
        name=_name(name),
        instructions=_instructions(instructions),
        embedding_model=model,
    )


@transaction.atomic
def project_update(*, project: Project, changes: dict[str, Any], key_id: int | None = None) -> Project:
    """Rename (`name`), instruct (`instructions`), archive or restore (`archived`: a bool),
    choose the embeddings model of its files (`embedding_model`; null: the shipped one):
    its documents are embedded again by a job billed to `key_id`."""
    fields, reembed = [], False
    if "embedding_model" in changes:
        model = _embedding_model(changes["embedding_model"], key_id)
        if model != project.embedding_model:
            project.embedding_model = model
            fields.append("embedding_model")
        # Files embedded by another model (this change, or an earlier one whose job failed:
        # choosing the same model again retries it) are embedded again.
        reembed = documents_behind(documents_of_project(project_id=project.pk), model).exists()
    if "name" in changes:
        project.name = _name(changes["name"])
        fields.append("name")
    if "instructions" in changes:
        project.instructions = _instructions(changes["instructions"])
        fields.append("instructions")
    if "archived" in changes:
        archived = changes["archived"]
        if not isinstance(archived, bool):
            raise _bad("'archived' must be true or false.", "archived")
        if archived != (project.archived_at is not None):
            project.archived_at = timezone.now() if archived else None
            fields.append("archived_at")
    if fields:
        project.save(update_fields=[*fields, "updated_at"])
    if reembed:  # in this transaction: a job that cannot be queued undoes the change
        project_reembed(project_id=project.pk, account=project.account, key_id=key_id)
    return project


@transaction.atomic
def project_delete(*, project: Project) -> int:
    """The project and every chat in it (the page asks first); their bytes go back to the
    account's storage quota. Returns how many chats went."""
    chats = conversations_delete(conversations=project.conversations.all())
    documents_delete(documents=project.documents.all())
    project.delete()
    return chats
