"""The "document-index" tool: a file (or a fetched page) read into sections, split into
passages, each passage embedded and stored with its vector and text index — all in one
transaction at the end, so a document is searchable whole or not at all. A file that cannot
be read (damaged, password-protected, no text in it) fails the document with that reason.

Runs as a tool job (tools.services): on a Celery worker under `make up`, on the web
process's tool pool under `make run`; progress 0–100 as pages are read and passages embedded.

Passages are embedded by the model of the document's project (documents.embedding): the
shipped one, or a routed model billed to the key that added the file (`key_id`). The
"document-reembed" tool embeds a project's documents again after the project changes its
model, one document at a time (each swaps its vectors in one transaction: searchable
throughout, by the model that embedded it).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction

from chat.api.auth import principal_for_key
from chat.api.errors import ApiError
from chat.backends.embeddings import DIMENSIONS
from chat.web.services import storage_take
from tools.base import Progress, ToolError, register

from . import store
from .embedding import ROUTED_BATCH, embed_routed, embed_texts, in_the_background, run_async
from .extract import sections_of
from .models import Document, DocumentFile, Passage
from .passages import split
from .selectors import documents_of_project, embedding_model_for
from .services import documents_follow, project_reembed

logger = logging.getLogger(__name__)
EMBED_BATCH = 64  # passages per embedding call (progress moves between them)


def _fail(document_id: str, error: dict[str, Any]) -> None:
    Document.objects.filter(pk=document_id).exclude(status=Document.Status.READY).update(
        status=Document.Status.FAILED, error=error
    )


def _tool_error(exc: ApiError) -> ToolError:
    return ToolError(exc.message, status=exc.status, code=exc.code or "embedding_failed", retryable=exc.status >= 500)


def embed_passages(
    texts: list[str], *, model: str, key_id: Any, purpose: str, progress: Callable[[int], None]
) -> tuple[np.ndarray, int]:
    """(vectors, their length) for `texts` from `model` ("" the shipped one; a routed model
    billed to the key `key_id`), `progress` told each batch's end (0–100)."""
    if model and key_id is None:
        raise ToolError(
            f"This project's files are embedded by '{model}', billed to whoever adds them: add the file again.",
            status=409,
            code="embedding_key_missing",
        )
    try:
        principal = in_the_background(principal_for_key(key_id)) if model else None
        batch = ROUTED_BATCH if model else EMBED_BATCH
        vectors = []
        for start in range(0, len(texts), batch):
            texts_now = texts[start : start + batch]
            if principal is None:
                vectors.append(embed_texts(texts_now))
            else:
                vectors.append(run_async(embed_routed(model, principal, texts_now, purpose=purpose)))
            progress(100 * min(start + batch, len(texts)) // len(texts))
    except ApiError as exc:
        raise _tool_error(exc) from None
    stacked = np.concatenate(vectors) if vectors else np.zeros((0, DIMENSIONS), dtype=np.float32)
    if len({v.shape[1] for v in vectors}) > 1:
        raise ToolError(f"The embeddings model '{model}' changed its vectors' length midway.", status=502)
    return stacked, int(stacked.shape[1])


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
        model = embedding_model_for(document)
        vectors, dimensions = embed_passages(
            [p.text for p in passages],
            model=model,
            key_id=params.get("key_id"),
            purpose=f"document-{document.pk.hex[:12]}",
            progress=lambda p: progress(30 + 65 * p // 100),
        )
        file.seek(0)
        data = file.read()
        store.vectors_ready(dimensions)
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
            store.vectors_add(
                [(row.pk, key, row.text, vector) for row, vector in zip(made, vectors, strict=True)],
                dimensions=dimensions,
            )
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
                embedding_model=model,
                dimensions=dimensions,
            )
        if embedding_model_for(document) != model:  # its project changed its model (or it moved) meanwhile
            _reembed_later(document, key_id=params.get("key_id"))
        return {"document_id": str(document.pk), "status": "ready", "passages": len(passages), "pages": pages}


register(DocumentIndexTool())


def _reembed_later(document: Document, *, key_id: Any) -> None:
    """Queue the re-embedding of where `document` belongs (a project's files, or a chat's):
    the job takes whatever is behind. The document stays searchable by the model that
    embedded it if the job cannot be queued (the next change of model queues one again)."""
    try:
        if document.project_id is not None:
            project_reembed(project_id=document.project_id, account=document.account, key_id=key_id)
        elif document.conversation_id is not None:
            documents_follow(conversation=document.conversation, key_id=key_id)
    except ApiError:
        logger.warning("document %s: its re-embedding could not be queued", document.pk, exc_info=True)


class DocumentReembedTool:
    """A project's ready documents (`project_id`), or a chat's (`conversation_id`), embedded
    again by their project's model where another embedded them: each document's passages
    re-embedded, then its vectors swapped in one transaction (the passages, their ids and
    text index stay — answers that cite them still do). A failure (402: the balance ran
    out) stops the job; the documents not reached keep the previous model's vectors and
    stay searchable by it."""

    name = "document-reembed"

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        return params

    def run(self, params: dict[str, Any], progress: Progress) -> dict[str, Any]:
        scope = (
            documents_of_project(project_id=params["project_id"])
            if params.get("project_id")
            else Document.objects.filter(conversation_id=params["conversation_id"])
        )
        done, pending = 0, list(scope.filter(status=Document.Status.READY).values_list("pk", flat=True))
        for n, document_id in enumerate(pending):
            document = Document.objects.filter(pk=document_id, status=Document.Status.READY).first()
            if document is None:
                continue
            model = embedding_model_for(document)
            if model == document.embedding_model:
                continue
            rows = list(document.passages.order_by("ordinal").values_list("pk", "text"))
            done_before = 100 * n

            def moved(p: int, done_before: int = done_before) -> None:
                progress((done_before + p) // len(pending))

            try:
                vectors, dimensions = embed_passages(
                    [text for _, text in rows],
                    model=model,
                    key_id=params.get("key_id"),
                    purpose=f"document-{document.pk.hex[:12]}",
                    progress=moved,
                )
            except ToolError as exc:
                Document.objects.filter(pk=document.pk).update(error=exc.as_dict())
                raise
            store.vectors_ready(dimensions)
            with transaction.atomic():
                locked = Document.objects.select_for_update().filter(pk=document.pk).first()
                if locked is None or embedding_model_for(locked) != model:
                    continue  # deleted, or the project changed its model again: a later job follows
                key = store.document_key(locked.pk)
                store.vectors_drop([pk for pk, _ in rows], dimensions=locked.dimensions)
                store.vectors_set(
                    [(pk, key, vector) for (pk, _), vector in zip(rows, vectors, strict=True)], dimensions=dimensions
                )
                Document.objects.filter(pk=locked.pk).update(embedding_model=model, dimensions=dimensions, error=None)
            done += 1
        return {"reembedded": done}


register(DocumentReembedTool())
