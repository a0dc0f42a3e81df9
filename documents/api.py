"""The browser product's documents, for the signed-in person (or the browser's anonymous key):

POST   /api/documents              multipart `file` (+ `project_id` or `conversation_id`), or
                                   JSON {"url", "project_id"?, "conversation_id"?}: 202, indexed by a job
GET    /api/documents              ?project=<id> | ?conversation=<id>
GET    /api/documents/<id>         status, progress (0–100) and error while it is indexed
DELETE /api/documents/<id>
GET    /api/documents/<id>/file    the file as uploaded (the viewer draws it)
"""

from __future__ import annotations

import io
from typing import Any

from django.conf import settings
from django.http import FileResponse, Http404
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from chat.api.errors import ApiError
from chat.web.api import WebApi, json_object, limit_creation
from chat.web.selectors import message_get_for_account
from tools.base import ToolError, get_tool
from tools.services import job_get
from tools.views import save_upload

from . import services
from .context import sent_sources
from .embedding import MODEL_ID
from .models import Document, DocumentFile
from .selectors import document_get_for_owner, document_list


def document_body(document: Document) -> dict[str, Any]:
    status, progress, error = document.status, 100 if document.status == Document.Status.READY else 0, document.error
    job = document.job
    if job is not None and status in (Document.Status.QUEUED, Document.Status.INDEXING):
        job = job_get(job_id=job.pk, account=document.account)  # a job whose worker vanished reads as failed
        progress = job.progress
        if job.status == job.Status.FAILED:
            status, error = Document.Status.FAILED, job.error
    return {
        "id": str(document.pk),
        "object": "document",
        "name": document.name,
        "kind": document.kind,
        "url": document.url or None,
        "size": document.size,
        "pages": document.pages,
        "tokens": document.tokens,
        # The model that embedded it (the shipped one's id for the default), once it has been.
        "embedding_model": (document.embedding_model or MODEL_ID) if document.status == Document.Status.READY else None,
        "status": status,
        "progress": progress,
        "error": error,
        "project_id": str(document.project_id) if document.project_id else None,
        "conversation_id": str(document.conversation_id) if document.conversation_id else None,
        "created_at": document.created_at.isoformat(),
    }


class DocumentListApi(WebApi):
    parser_classes = [MultiPartParser, JSONParser]

    def get(self, request: Request) -> Response:
        rows = document_list(
            account_id=request.user.pk,
            owner_id=request.auth.user_id,
            project_id=request.query_params.get("project") or None,
            conversation_id=request.query_params.get("conversation") or None,
        )
        return Response({"object": "list", "data": [document_body(d) for d in rows[:500]]})

    def post(self, request: Request) -> Response:
        limit_creation(request, "document", owner_rate="CONVERSATION_RATE")
        owner = {"account": request.user, "owner_id": request.auth.user_id}
        if request.content_type.startswith("multipart/"):
            upload = save_upload(request, max_bytes=settings.DOCUMENTS["MAX_BYTES"], suffix=".document")
            file = request.FILES["file"]
            try:
                document = services.document_create(
                    **owner,
                    name=str(file.name or "document"),
                    content_type=str(file.content_type or ""),
                    upload=upload,
                    project_id=request.data.get("project_id"),
                    conversation_id=request.data.get("conversation_id"),
                    key_id=request.auth.pk,
                )
            finally:
                upload.unlink(missing_ok=True)
        else:
            data = json_object(request.data or {})
            try:  # what fetch-url accepts: http(s), at most 2,048 characters
                url = get_tool("fetch-url").validate({"url": data.get("url")})["url"]
            except ToolError as exc:
                raise ApiError(400, exc.message, param="url", code=exc.code) from None
            document = services.document_create(
                **owner,
                name=url[:255],
                content_type="text/html",
                url=url,
                project_id=data.get("project_id"),
                conversation_id=data.get("conversation_id"),
                key_id=request.auth.pk,
            )
        return Response(document_body(document), status=202)


class DocumentDetailApi(WebApi):
    def _get(self, request: Request, document_id: str) -> Document:
        return document_get_for_owner(
            account_id=request.user.pk, owner_id=request.auth.user_id, document_id=document_id
        )

    def get(self, request: Request, document_id: str) -> Response:
        return Response(document_body(self._get(request, document_id)))

    def delete(self, request: Request, document_id: str) -> Response:
        services.document_delete(document=self._get(request, document_id))
        return Response(status=204)


class DocumentFileApi(WebApi):
    def get(self, request: Request, document_id: str) -> FileResponse:
        document = document_get_for_owner(
            account_id=request.user.pk, owner_id=request.auth.user_id, document_id=document_id
        )
        stored = DocumentFile.objects.filter(document_id=document.pk).first()
        if stored is None:
            raise Http404("The file is not kept (the document is not indexed yet).")
        response = FileResponse(io.BytesIO(bytes(stored.data)), content_type=document.content_type)
        response["Content-Disposition"] = "inline"
        response["X-Content-Type-Options"] = "nosniff"
        response["Content-Security-Policy"] = "sandbox"  # an HTML file never runs as our origin
        return response


class SourcesApi(WebApi):
    """GET /api/messages/<id>/sources: what an answer was given from its documents, as the
    model read it (the line under the answer opens it)."""

    def get(self, request: Request, message_id: str) -> Response:
        message = message_get_for_account(
            account_id=request.user.pk, owner_id=request.auth.user_id, message_id=message_id
        )
        return Response({"object": "message.sources", "text": sent_sources(message)})
