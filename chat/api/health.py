"""Probes for orchestrators and load balancers:

- `/health`: the models only — each public id and its state (503 while one loads or failed);
  `?details=1` adds counters and deployments for a loopback client or the metrics token;
- `/health/live`: the process answers — no dependency is touched (a liveness probe must not
  restart a web process because the database blinked);
- `/health/ready`: the database, Redis (when configured), the Celery broker (when tasks are
  not run in the web process) and every model answer; 503 naming what is missing. Each check
  has its own deadline, so a hung dependency is reported, not waited for.
"""

from __future__ import annotations

import asyncio
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from chat import db
from chat.backends import registry
from chat.metrics import allowed as metrics_allowed
from documents.store import readiness as documents_readiness

from .errors import error_payload

CHECK_SECONDS = 3.0


@csrf_exempt
async def live(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "ok"})


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _redis() -> None:
    import redis

    client = redis.Redis.from_url(
        settings.REDIS_URL, socket_connect_timeout=CHECK_SECONDS, socket_timeout=CHECK_SECONDS
    )
    try:
        client.ping()
    finally:
        client.close()


def _broker() -> None:
    from ghostgpt.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=CHECK_SECONDS)


async def _check(run: Any) -> str:
    try:
        await asyncio.wait_for(run(), CHECK_SECONDS)
    except TimeoutError:
        return "timeout"
    except Exception as exc:  # what failed, by kind; details stay in the logs, not the probe
        return f"failed ({type(exc).__name__})"
    return "ok"


@csrf_exempt
async def ready(request: HttpRequest) -> HttpResponse:
    checks: dict[str, Any] = {"database": await _check(lambda: db.run(_database))}
    checks["redis"] = (
        await _check(lambda: sync_to_async(_redis, thread_sensitive=False)())
        if settings.REDIS_URL
        else "not configured"
    )
    if settings.CELERY_TASK_ALWAYS_EAGER:
        checks["broker"] = "not used (tasks run in the web process)"
    else:
        checks["broker"] = await _check(lambda: sync_to_async(_broker, thread_sensitive=False)())
    models = {info.id: backend.readiness()[0] for info, backend in registry.all_models()}
    checks["models"] = models
    missing = [
        name
        for name in ("database", "redis", "broker")
        if checks[name] not in ("ok",) and not checks[name].startswith("not ")
    ]
    missing += [f"model {model} ({state})" for model, state in models.items() if state != "ready"]
    # Documents need pgvector on PostgreSQL: without it the rest serves, and this says why
    # documents are refused (503 documents_unavailable) — never a silent slow path.
    documents_ready, reason = (True, "") if checks["database"] != "ok" else await db.run(documents_readiness)
    checks["documents"] = "ok" if documents_ready else f"unavailable: {reason}"
    if not missing:
        ready: dict[str, Any] = {"status": "ready", "checks": checks}
        if not documents_ready:
            ready["degraded"] = ["documents"]
        return JsonResponse(ready)
    body = error_payload(f"Not ready: {', '.join(missing)}.", "service_unavailable_error", code="not_ready")
    response = JsonResponse({**body, "status": "unavailable", "missing": missing, "checks": checks}, status=503)
    response["Retry-After"] = "5"
    return response


async def models(request: HttpRequest) -> HttpResponse:
    """`/health`: each public model id and its state; 503 while one is loading or failed.

    The public answer names nothing else: upstream deployments, probe errors and counters are
    for operators, in `/health?details=1` — served on the terms of `/metrics` (a loopback
    client or the metrics token) — in the metrics and on the ops console."""
    details = "details" in request.GET and metrics_allowed(request)
    states: dict[str, dict[str, Any]] = {}
    problems = []
    for info, backend in registry.all_models():
        state, message = backend.readiness()
        states[info.id] = {"state": state, **backend.stats()} if details else {"state": state}
        if state != "ready":
            problems.append((info.id, state, message))
    if not problems:
        return JsonResponse({"status": "ok", "models": states})
    model, state, message = problems[0]
    if not details:  # a load error may name a path or an address: the public gets its kind
        message = f"The model {model} is {'still loading' if state == 'loading' else 'unavailable'}; retry shortly."
    body = error_payload(
        message, "service_unavailable_error", code="model_loading" if state == "loading" else "model_unavailable"
    )
    response = JsonResponse({**body, "status": state, "models": states}, status=503)
    response["Retry-After"] = "5"
    return response
