"""A GhostGPT export's documents brought back (chat.web.importer reads the ZIP): each file
becomes a document of the importer's again — in the imported project or chat it belonged
to — and is indexed anew by a job, as an upload is. Messages that attached it point at the
new document."""

from __future__ import annotations

import functools
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from chat.api.errors import ApiError
from chat.models import Account, Conversation
from chat.web.importer import ImportRefused, _list, _object, _text
from projects.models import Project

from . import store
from .models import Document
from .services import document_create


@dataclass
class DocumentSpec:
    key: str
    name: str
    content_type: str
    project: str | None
    conversation: str | None
    read: Callable[[], bytes] | None  # the file, when the export holds it


def document_specs(
    document: Any, path: str, archive: zipfile.ZipFile, entries: dict[str, zipfile.ZipInfo]
) -> list[DocumentSpec]:
    data = _object(document, path)
    specs = []
    limit = settings.DOCUMENTS["MAX_BYTES"]
    for i, item in enumerate(_list(data.get("documents"), f"{path}.documents")):
        where = f"{path}.documents[{i}]"
        entry = _object(item, where)
        file = _text(entry.get("file"), f"{where}.file") or None
        info = entries.get(file) if file else None
        if file and info is None:
            raise ImportRefused(f"{where}.file", f"the ZIP holds no {file[:80]!r}")
        if info is not None and info.file_size > limit:
            raise ImportRefused(f"{where}.file", f"larger than {limit} bytes unpacked")
        specs.append(
            DocumentSpec(
                key=_text(entry.get("id"), f"{where}.id"),
                name=(_text(entry.get("name"), f"{where}.name") or "document")[:255],
                content_type=_text(entry.get("content_type"), f"{where}.content_type")[:100],
                project=_text(entry.get("project_id"), f"{where}.project_id") or None,
                conversation=_text(entry.get("conversation_id"), f"{where}.conversation_id") or None,
                read=functools.partial(archive.read, info.filename) if info is not None else None,
            )
        )
    return specs


def documents_restore(
    specs: list[DocumentSpec], *, account_id: int, owner_id: int | None, projects: dict[str, Project]
) -> dict[str, Document]:
    """The export's files as new documents (by the export's id), each with its indexing job;
    none where this server cannot keep documents (its database lacks pgvector)."""
    if not specs or not store.readiness()[0]:
        return {}
    account = Account.objects.get(pk=account_id)
    made = {}
    for spec in specs:
        if spec.read is None:
            continue
        project = projects.get(spec.project or "")
        with tempfile.TemporaryDirectory(prefix="ghostgpt-import-") as folder:
            upload = Path(folder) / "file"
            upload.write_bytes(spec.read())
            try:
                made[spec.key] = document_create(
                    account=account,
                    owner_id=owner_id,
                    name=spec.name,
                    content_type=spec.content_type,
                    upload=upload,
                    project_id=project.pk if project else None,
                )
            except ApiError as exc:
                raise ImportRefused(spec.name, exc.message) from None
    return made


def attachments_remap(attachments: list[dict[str, Any]], made: dict[str, Document]) -> list[dict[str, Any]]:
    """A message's attachments with the documents it names as their new ids (a document the
    export did not hold stays, named, as a missing attachment)."""
    out = []
    for item in attachments:
        if item.get("kind") == "document":
            document = made.get(str(item.get("document_id")))
            item = {**item, "document_id": str(document.pk)} if document else {**item, "missing": True}
        out.append(item)
    return out


def documents_place(specs: list[DocumentSpec], made: dict[str, Document], *, source: str, chat: Conversation) -> None:
    """The documents the export's chat `source` held belong to its imported copy."""
    keys = [spec.key for spec in specs if spec.conversation == source and spec.key in made]
    Document.objects.filter(pk__in=[made[key].pk for key in keys]).update(conversation=chat)
