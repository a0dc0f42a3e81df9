"""Jobs: create (validate, store, enqueue after commit), execute (in a worker), read."""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.http import Http404
from django.utils import timezone

from chat.executors import Busy, tool_pool
from chat.metrics import JOB_SECONDS, JOBS
from chat.models import Account

from .base import ToolError, get_tool
from .models import Job, Upload
from .uploads import open_upload, store_upload

logger = logging.getLogger(__name__)
MAX_ATTEMPTS = 3
PROGRESS_INTERVAL_SECONDS = 0.5


def job_create(*, tool: str, params: dict[str, Any], account: Account | None = None, upload: Path | None = None) -> Job:
    """Validate in the web process, store the job, and enqueue it once the row is committed.
    `upload`: a local file the tool works on (validated as `params["path"]`); it is stored
    with the job in the database, so a worker on any machine can read it."""
    clean = get_tool(tool).validate({**params, "path": str(upload)} if upload else params)
    with transaction.atomic():
        if upload is None:
            job = Job.objects.create(tool=tool, params=clean, account=account)
        else:
            stored = {name: value for name, value in clean.items() if name != "path"}
            job = Job.objects.create(tool=tool, params={**stored, "upload": True}, account=account)
            store_upload(job=job, path=upload)
        transaction.on_commit(lambda: _enqueue(str(job.pk)))
    return job


@contextlib.contextmanager
def _uploaded_file(job: Job) -> Iterator[dict[str, Any]]:
    """The job's params, with its stored upload (if any) as a file under `file` for the
    duration of the run, read from the database a piece at a time (tools.uploads): nothing is
    written to the worker's disk, so a worker killed mid-job leaves nothing behind."""
    if not job.params.get("upload"):
        yield job.params
        return
    with open_upload(job) as file:
        yield {**job.params, "file": file}


def _drop_upload(job_id: uuid.UUID | str) -> None:
    Upload.objects.filter(job_id=job_id).delete()


def uploads_purge(*, older_than: timedelta = timedelta(days=1)) -> int:
    """Uploads whose job has ended (a worker that died between finishing and cleaning up) or
    that waited longer than `older_than`. Run by beat."""
    ended = Upload.objects.filter(job__status__in=[Job.Status.SUCCEEDED, Job.Status.FAILED])
    stale = Upload.objects.filter(created_at__lt=timezone.now() - older_than)
    return ended.delete()[0] + stale.delete()[0]


def _enqueue(job_id: str) -> None:
    """To the Celery workers; in embedded mode (eager Celery, no broker) to the web process's
    bounded tool pool, so the request that made the job can still answer 202 at once."""
    from .tasks import run_job

    if not settings.CELERY_TASK_ALWAYS_EAGER:
        run_job.delay(job_id)
        return
    try:
        tool_pool.submit(_execute_here, job_id)
    except Busy:
        _fail(
            job_id,
            ToolError("The server is busy with other tool jobs; retry shortly.", status=503, code="busy").as_dict(),
        )


def _execute_here(job_id: str) -> None:
    try:
        job_execute(job_id=job_id, deadline=time.monotonic() + settings.CELERY_TASK_SOFT_TIME_LIMIT)
    except Exception:
        logger.exception("tool job %s failed", job_id)
    finally:
        connection.close()  # this pool thread's own connection


def _fail(job_id: uuid.UUID | str, error: dict[str, Any]) -> None:
    with transaction.atomic():  # whoever sees the job ended sees its upload gone
        Job.objects.filter(pk=job_id).exclude(status=Job.Status.SUCCEEDED).update(
            status=Job.Status.FAILED, error=error, finished_at=timezone.now()
        )
        _drop_upload(job_id)


def _progress_writer(job_id: str, deadline: float | None = None) -> Callable[[int], None]:
    """Writes progress at most every PROGRESS_INTERVAL_SECONDS; a short job writes none
    (its final update sets 100). Past `deadline` (monotonic) it raises SoftTimeLimitExceeded:
    a job run in the web process (embedded mode) has no Celery time limit to stop it, so the
    tools' own progress calls (per page, per segment) are where it stops."""
    last = [time.monotonic()]

    def write(percent: int) -> None:
        now = time.monotonic()
        if deadline is not None and now > deadline:
            raise SoftTimeLimitExceeded
        if percent < 100 and now - last[0] >= PROGRESS_INTERVAL_SECONDS:
            last[0] = now
            Job.objects.filter(pk=job_id).update(progress=max(0, percent))

    return write


def job_execute(*, job_id: str, deadline: float | None = None) -> None:
    """Run a job. Safe to call again for the same job (redelivery after a worker died).
    `deadline` (monotonic): where no Celery worker enforces the soft time limit."""
    claimed = Job.objects.filter(pk=job_id, status__in=[Job.Status.QUEUED, Job.Status.RUNNING]).update(
        status=Job.Status.RUNNING, started_at=timezone.now(), attempts=F("attempts") + 1
    )
    if not claimed:
        return
    job = Job.objects.get(pk=job_id)
    if job.attempts > MAX_ATTEMPTS:
        _fail(
            job_id,
            ToolError(
                f"The job was interrupted {MAX_ATTEMPTS} times; giving up.", status=500, code="job_abandoned"
            ).as_dict(),
        )
        return
    started, outcome = time.monotonic(), "succeeded"
    try:
        with _uploaded_file(job) as params:
            result = get_tool(job.tool).run(params, _progress_writer(job_id, deadline))
    except ToolError as exc:
        outcome = "failed"
        _fail(job_id, exc.as_dict())
    except SoftTimeLimitExceeded:
        outcome = "timeout"
        _fail(job_id, ToolError("The job took too long.", status=504, code="job_timeout").as_dict())
    except Exception:
        outcome = "error"
        logger.exception("tool job %s (%s) failed", job_id, job.tool)
        _fail(job_id, ToolError("The tool failed unexpectedly.", status=500, code="tool_error").as_dict())
    else:  # not over a job already failed meanwhile (timed out by job_get, say)
        with transaction.atomic():  # the result and the upload's removal are seen together
            Job.objects.filter(pk=job_id, status=Job.Status.RUNNING).update(
                status=Job.Status.SUCCEEDED, result=result, progress=100, finished_at=timezone.now()
            )
            _drop_upload(job_id)
    finally:
        JOBS.labels(job.tool, outcome).inc()
        JOB_SECONDS.labels(job.tool).observe(time.monotonic() - started)


def job_get(*, job_id: uuid.UUID, account: Account | None) -> Job:
    """The job, if `account` may read it (404 otherwise), after marking it failed if its
    worker vanished (never stuck 'running')."""
    job = Job.objects.filter(pk=job_id).first()
    if job is None or (job.account_id is not None and job.account_id != getattr(account, "pk", None)):
        raise Http404
    if job.status == Job.Status.RUNNING and job.started_at:
        running = (timezone.now() - job.started_at).total_seconds()
        if settings.CELERY_TASK_ALWAYS_EAGER and running > settings.CELERY_TASK_TIME_LIMIT:
            # In the web process no worker can be killed: past the hard limit the job is
            # failed for its caller, and whatever the thread still returns is discarded.
            _fail(job.pk, ToolError("The job took too long.", status=504, code="job_timeout").as_dict())
            job.refresh_from_db()
        elif running > settings.CELERY_TASK_TIME_LIMIT + 60:
            _fail(job.pk, ToolError("The worker running this job stopped.", status=500, code="worker_lost").as_dict())
            job.refresh_from_db()
    return job
