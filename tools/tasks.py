from __future__ import annotations

from celery import shared_task

from .services import job_execute, uploads_purge


@shared_task(name="tools.run_job", acks_late=True)
def run_job(job_id: str) -> None:
    """Tools are idempotent, so a job whose worker died is simply run again (acks_late)."""
    job_execute(job_id=job_id)


@shared_task(name="tools.purge_uploads")
def purge_uploads() -> int:
    """Uploads left by jobs that ended without cleaning up, or that waited over a day."""
    return uploads_purge()
