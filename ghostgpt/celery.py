"""Celery application. Eager (in-process) by default; a Redis broker when REDIS_URL is set."""

from __future__ import annotations

import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ghostgpt.settings")

app = Celery("ghostgpt")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.worker_init.connect
def _trace(**_: object) -> None:
    """A worker exports traces as the web tier does: a tool job continues the trace of the
    request that started it (chat.tracing). (The SDK's exporter restarts its thread in
    each forked pool process by itself.)"""
    from chat import tracing

    tracing.setup()
