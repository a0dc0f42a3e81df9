"""Liveness and readiness probes against live servers: ready when every dependency answers;
with Redis and the broker unreachable, ready is a 503 naming them while live stays 200."""

from __future__ import annotations

import httpx

from .live import LiveServer, free_port


def test_ready_when_every_dependency_answers(redis_url: str) -> None:
    server = LiveServer(env={"REDIS_URL": redis_url, "CELERY_TASK_ALWAYS_EAGER": "false"})
    try:
        assert httpx.get(server.base_url + "/health/live").json() == {"status": "ok"}
        ready = httpx.get(server.base_url + "/health/ready", timeout=30)
        assert ready.status_code == 200, ready.text
        checks = ready.json()["checks"]
        assert checks["database"] == checks["redis"] == checks["broker"] == "ok"
        assert set(checks["models"].values()) == {"ready"}
    finally:
        server.stop()


def test_unreachable_redis_and_broker_make_ready_a_503_and_live_stays_200() -> None:
    gone = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    server = LiveServer(env={"REDIS_URL": gone, "CELERY_TASK_ALWAYS_EAGER": "false"})
    try:
        assert httpx.get(server.base_url + "/health/live").status_code == 200
        ready = httpx.get(server.base_url + "/health/ready", timeout=30)
        assert ready.status_code == 503 and ready.headers["retry-after"] == "5"
        body = ready.json()
        assert body["error"]["code"] == "not_ready" and body["checks"]["database"] == "ok"
        assert {"redis", "broker"} <= set(body["missing"]), body
    finally:
        server.stop()
