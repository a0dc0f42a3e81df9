"""Tool endpoints. Thin: validate, create a job, wait for it (or answer 202), render."""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chat import tracing
from chat.accounts.drf import ApiKeyAuthentication
from chat.api.errors import ApiError, count_or_429, error_payload
from chat.api.metering import check_spend
from chat.billing.ratelimit import Limits
from chat.models import ApiKey
from chat.network import client_key

from .base import ToolError
from .models import Job
from .services import job_create, job_get

POLL_SECONDS = 0.1


def _accepted(job: Job) -> Response:
    return Response(job_body(job), status=202, headers={"Location": f"/api/jobs/{job.pk}"})


def job_body(job: Job) -> dict[str, Any]:
    return {
        "id": str(job.pk),
        "object": "tool.job",
        "tool": job.tool,
        "status": job.status,
        "progress": job.progress,
        "attempts": job.attempts,
        "result": job.result,
        "error": job.error,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }


def _finished(job: Job) -> Response:
    if job.status == Job.Status.SUCCEEDED:
        return Response(job.result)
    error = job.error or {}
    body = error_payload(
        error.get("message", "The tool failed."), error.get("type", "server_error"), code=error.get("code")
    )
    return Response(body, status=error.get("status", 500))


class ToolApi(APIView):
    """Open to anyone (rate limited per IP); a browser session or an API key gets its own,
    higher limit."""

    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [AllowAny]
    tool = ""

    def _limit(self, request: Request) -> None:
        config = settings.TOOLS
        if request.auth is not None and request.auth.kind == ApiKey.Kind.SESSION:
            limits = Limits(f"tools:session:{request.auth.pk}", config["RATE_SESSION"], None)
        elif request.auth is not None:  # per account: more keys do not multiply it
            limits = Limits(f"tools:account:{request.auth.account_id}", config["RATE_KEY"], None)
        else:
            limits = Limits(f"tools:ip:{client_key(request._request)}", config["RATE_ANONYMOUS"], None)
        count_or_429(limits, "tool requests")

    def start(self, request: Request, params: dict[str, Any], upload: Path | None = None) -> Response:
        attributes = {"ghostgpt.tool": self.tool, "http.request.method": request.method, "url.path": request.path}
        with tracing.serving(f"tool {self.tool}", attributes, request.headers) as span:
            response = self._start(request, params, upload)
            if span is not None:
                span.set_attribute("http.response.status_code", response.status_code)
            return response

    def _start(self, request: Request, params: dict[str, Any], upload: Path | None) -> Response:
        self._limit(request)
        if request.auth is not None:  # a key's account in debt or over a budget: 402, as for the models
            check_spend(request.auth)
        try:
            job = job_create(tool=self.tool, params=params, account=request.user, upload=upload)
        except ToolError as exc:
            raise ApiError(exc.status, exc.message, code=exc.code) from None
        wants_async = (
            request.headers.get("Prefer", "").lower() == "respond-async" or request.query_params.get("async") == "1"
        )
        if wants_async:  # 202 even when the job is done already (a small one in the web process may be)
            return _accepted(job)
        deadline = time.monotonic() + settings.TOOLS["SYNC_WAIT_SECONDS"]
        while True:
            job.refresh_from_db()
            if job.done:
                return _finished(job)
            if time.monotonic() >= deadline:
                return _accepted(job)
            time.sleep(POLL_SECONDS)


class FetchUrlApi(ToolApi):
    tool = "fetch-url"
    parser_classes = [JSONParser]

    def post(self, request: Request) -> Response:
        return self.start(request, {"url": request.data.get("url") if isinstance(request.data, dict) else None})


class WebResearchApi(ToolApi):
    tool = "web-research"
    parser_classes = [JSONParser]

    def post(self, request: Request) -> Response:
        return self.start(request, {"query": request.data.get("query") if isinstance(request.data, dict) else None})


def save_upload(request: Request, *, max_bytes: int, suffix: str) -> Path:
    """The multipart `file` field as a local temporary file, for validation here; job_create
    stores it in the database, where the workers read it."""
    upload = request.FILES.get("file")
    if upload is None:
        raise ApiError(400, "Send the file as multipart form field 'file'.", param="file", code="missing_file")
    if upload.size > max_bytes:
        raise ApiError(413, f"The file is larger than {max_bytes} bytes.", param="file", code="too_large")
    descriptor, name = tempfile.mkstemp(prefix="ghostgpt-upload-", suffix=suffix)
    with os.fdopen(descriptor, "wb") as handle:
        for chunk in upload.chunks():
            handle.write(chunk)
    return Path(name)


class UploadToolApi(ToolApi):
    parser_classes = [MultiPartParser]
    max_bytes_setting = ""
    suffix = ""

    def options_from(self, request: Request) -> dict[str, Any]:
        return {}

    def start_upload(self, request: Request) -> Response:
        options = self.options_from(request)
        path = save_upload(request, max_bytes=settings.TOOLS[self.max_bytes_setting], suffix=self.suffix)
        try:
            return self.start(request, options, upload=path)
        finally:
            path.unlink(missing_ok=True)


class ImportChatsApi(UploadToolApi):
    """Chats from an export (GhostGPT's, ChatGPT's conversations.json, Open WebUI's,
    LibreChat's) into the caller's account, as a job (chat.web.importer). Needs a session or
    a key: the chats become that person's."""

    tool = "import-chats"
    max_bytes_setting = "IMPORT_MAX_BYTES"
    suffix = ".import"

    def options_from(self, request: Request) -> dict[str, Any]:
        if request.auth is None:
            raise ApiError(
                401, "Importing needs a session or an API key: the chats become yours.", code="missing_api_key"
            )
        return {"account_id": request.user.pk, "owner_id": request.auth.user_id}

    def post(self, request: Request) -> Response:
        return self.start_upload(request)


class PdfExtractApi(UploadToolApi):
    tool = "pdf-extract"
    max_bytes_setting = "PDF_MAX_BYTES"
    suffix = ".pdf"

    def post(self, request: Request) -> Response:
        return self.start_upload(request)


class TranscribeApi(UploadToolApi):
    tool = "transcribe"
    max_bytes_setting = "TRANSCRIBE_MAX_BYTES"

    def options_from(self, request: Request) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if request.data.get("language"):
            options["language"] = request.data["language"]
        if request.data.get("language_hint"):  # the page's language: decides when detection is unsure
            options["language_hint"] = request.data["language_hint"]
        if request.data.get("prompt"):
            options["prompt"] = str(request.data["prompt"])[:2000]
        return options

    def post(self, request: Request) -> Response:
        return self.start_upload(request)


class JobApi(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [AllowAny]

    def get(self, request: Request, job_id: uuid.UUID) -> Response:
        return Response(job_body(job_get(job_id=job_id, account=request.user)))
