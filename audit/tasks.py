from __future__ import annotations

from celery import shared_task

from . import services


@shared_task(name="audit.export_head")
def export_head() -> tuple[int, str]:
    return services.head_export()


@shared_task(name="audit.erase_expired")
def erase_expired() -> int:
    return services.erase_expired()
