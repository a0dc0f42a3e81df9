from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _ensure_store(using: str = "default", **_: Any) -> None:
    from .store import schema_ensure

    schema_ensure(using)


class DocumentsConfig(AppConfig):
    name = "documents"
    verbose_name = "Documents (files split into passages, embedded and searched)"

    def ready(self) -> None:
        # The vector and text indexes are not Django fields: made (where missing) after
        # every migrate, so installing pgvector later and migrating again enables them.
        post_migrate.connect(_ensure_store, sender=self, dispatch_uid="documents.store")
