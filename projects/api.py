"""GET/POST /api/projects, GET/PATCH/DELETE /api/projects/<id> — the browser product's
projects, for the signed-in person (or the browser's anonymous key) like its chats: a name,
instructions, and the embeddings model of its files (`embedding_model`: a routed model, billed
to the person; the shipped all-MiniLM-L6-v2 by default)."""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.response import Response

from chat.web.api import WebApi, json_object, limit_creation
from documents.embedding import MODEL_ID
from documents.selectors import documents_behind, documents_of_project

from . import services
from .models import Project
from .selectors import project_get_for_owner, project_list


def project_body(project: Project, *, detail: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": str(project.pk),
        "object": "project",
        "name": project.name,
        "instructions": project.instructions,
        "embedding_model": project.embedding_model or MODEL_ID,
        "archived": project.archived_at is not None,
        "created_at": project.created_at.isoformat(),
        "updated_at": project.updated_at.isoformat(),
    }
    count = getattr(project, "conversation_count", None)
    body["conversations"] = count if count is not None else project.conversations.count()
    if detail:  # files still embedded by an earlier choice of model (being embedded again)
        pending = documents_behind(documents_of_project(project_id=project.pk), project.embedding_model)
        body["embedding_pending"] = pending.count()
    return body


class ProjectListApi(WebApi):
    def get(self, request: Request) -> Response:
        archived = str(request.query_params.get("archived", "")) in ("1", "true")
        rows = project_list(account_id=request.user.pk, owner_id=request.auth.user_id, archived=archived)
        return Response({"object": "list", "data": [project_body(p) for p in rows]})

    def post(self, request: Request) -> Response:
        data = json_object(request.data or {})
        limit_creation(request, "project", owner_rate="CONVERSATION_RATE")
        project = services.project_create(
            account_id=request.user.pk,
            owner_id=request.auth.user_id,
            name=data.get("name"),
            instructions=data.get("instructions", ""),
            embedding_model=data.get("embedding_model"),
            key_id=request.auth.pk,
        )
        return Response(project_body(project, detail=True), status=201)


class ProjectDetailApi(WebApi):
    def _get(self, request: Request, project_id: str) -> Project:
        return project_get_for_owner(account_id=request.user.pk, owner_id=request.auth.user_id, project_id=project_id)

    def get(self, request: Request, project_id: str) -> Response:
        return Response(project_body(self._get(request, project_id), detail=True))

    def patch(self, request: Request, project_id: str) -> Response:
        changes = json_object(request.data)
        if "embedding_model" in changes:  # may embed every file again: as many a minute as new files
            limit_creation(request, "document", owner_rate="CONVERSATION_RATE")
        project = self._get(request, project_id)
        project = services.project_update(project=project, changes=changes, key_id=request.auth.pk)
        return Response(project_body(project, detail=True))

    def delete(self, request: Request, project_id: str) -> Response:
        """Deletes the project with its chats: the page confirms first."""
        services.project_delete(project=self._get(request, project_id))
        return Response(status=204)
