"""The "document-index" tool: a file (or a fetched page) read into sections, split into
passages, each passage embedded and stored with its vector and text index — all in one
transaction at the end, so a document is searchable whole or not at all. A file that cannot
be read (damaged, password-protected, no text in it) fails the document with that reason.

Runs as a tool job (tools.services): on a Celery worker under `make up`, on the web
process's tool pool under `make run`; progress 0–100 as pages are read and passages embedded.
"""

from __future__ import annotations

import io
import logging
from typing import Any

from django.conf import settings
from django.db import transaction

from chat.api.errors import ApiError
from chat.web.services import storage_take
from tools.base import Progress, ToolError, register

from . import store
from .embedding import embed_texts
from .extract import sections_of
from .models import Document, DocumentFile, Passage
from .passages import split

logger = logging.getLogger(__name__)
EMBED_BATCH = 64  # passages per embedding call (progress moves between them)


def _fail(document_id: str, error: dict[str, Any]) -> None:
    Document.objects.filter(pk=document_id).exclude(status=Document.Status.READY).update(
        status=Document.Status.FAILED, error=error
    )


def _fetched(url: str) -> tuple[str, bytes, str]:
    """(kind, body, content type) of a page fetched by URL, through the SSRF-safe fetcher."""
    from tools.fetch_url import _decode
    from tools.fetching import SafeFetcher

    page = SafeFetcher().fetch(url)
    kind = {"application/pdf": "pdf", "text/plain": "text"}.get(page.content_type, "html")
    body = page.body if kind == "pdf" else _decode(page.body, page.charset).encode()  # kept as UTF-8
    return kind, body, page.content_type


class DocumentIndexTool:
    name = "document-index"

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        if not Document.objects.filter(pk=params.get("document_id")).exists():
            raise ToolError("No such document.", status=404, code="not_found")
        return params

    def run(self, params: dict[str, Any], progress: Progress) -> dict[str, Any]:
        document_id = params["document_id"]
        document = Document.objects.filter(pk=document_id).first()
        if document is None:  # deleted before its turn came
            return {"document_id": document_id, "status": "deleted"}
        if document.status == Document.Status.READY:  # a redelivered job whose first run committed
            return {"document_id": document_id, "status": "ready", "pages": document.pages}
        try:
            return self._index(document, params, progress)
        except ToolError as exc:
            _fail(document_id, exc.as_dict())
            raise
        except Exception:
            _fail(document_id, ToolError("Indexing the file failed.", status=500, code="index_error").as_dict())
            raise

    def _index(self, document: Document, params: dict[str, Any], progress: Progress) -> dict[str, Any]:
        Document.objects.filter(pk=document.pk).update(status=Document.Status.INDEXING)
        kind, url = document.kind, params.get("url", "")
        if url:
            kind, body, content_type = _fetched(url)
            file: Any = io.BytesIO(body)
        else:
            file, content_type = params["file"], document.content_type
        sections = sections_of(kind, file, url=url, progress=lambda p: progress(p * 30 // 100))
        passages = split(sections)
        if not passages:
            raise ToolError(
                "No text was found in the file (a scanned document without a text layer?).",
                status=422,
                code="no_text",
            )
        limit = settings.DOCUMENTS["MAX_PASSAGES"]
        if len(passages) > limit:
            raise ToolError(
                f"The file makes {len(passages)} passages; at most {limit} are indexed per file.",
                status=413,
                code="too_many_passages",
            )
        vectors = []
        for start in range(0, len(passages), EMBED_BATCH):
            vectors.append(embed_texts([p.text for p in passages[start : start + EMBED_BATCH]]))
            progress(30 + 65 * min(start + EMBED_BATCH, len(passages)) // len(passages))
        file.seek(0)
        data = file.read()
        with transaction.atomic():
            if not Document.objects.select_for_update().filter(pk=document.pk).exists():
                return {"document_id": str(document.pk), "status": "deleted"}  # deleted while it was read
            try:  # the file counts against the account's storage, as chat turns do
                storage_take(account_id=document.account_id, size=len(data))
            except ApiError as exc:
                raise ToolError(exc.message, status=413, code="storage_quota_exceeded") from None
            made = Passage.objects.bulk_create(
                Passage(
                    document_id=document.pk,
                    ordinal=n,
                    page=p.page,
                    heading=p.heading,
                    text=p.text,
                    tokens=p.tokens,
                )
                for n, p in enumerate(passages)
            )
            key = store.document_key(document.pk)
            flat = [row for batch in vectors for row in batch]
            store.vectors_add([(row.pk, key, row.text, vector) for row, vector in zip(made, flat, strict=True)])
            DocumentFile.objects.update_or_create(document_id=document.pk, defaults={"data": data})
            pages = max((s.page or 0 for s in sections), default=0) or len(sections)
            Document.objects.filter(pk=document.pk).update(
                status=Document.Status.READY,
                kind=kind,
                content_type=content_type[:100],
                pages=pages,
                tokens=sum(p.tokens for p in passages),
                text_bytes=sum(len(p.text.encode()) for p in passages),
                size=len(data),
                error=None,
            )
        return {"document_id": str(document.pk), "status": "ready", "passages": len(passages), "pages": pages}


register(DocumentIndexTool())
