"""A real Celery worker over the local Redis runs tool jobs for a live server; a worker
killed mid-job does not lose the job."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from chat.tests.live import ROOT, LiveServer

from .fixtures import text_pdf


class Worker:
    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "ghostgpt",
                "worker",
                "--pool=solo",
                "--loglevel=INFO",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


def elsewhere(server: LiveServer) -> dict[str, str]:
    """The server's environment with a data directory of the worker's own: like a worker on
    another machine, it shares the database and the broker, not a filesystem."""
    folder = Path(server.env["GHOSTGPT_DATA_DIR"]) / "worker-node"
    folder.mkdir(exist_ok=True)
    return {**server.env, "GHOSTGPT_DATA_DIR": str(folder)}


@pytest.fixture(scope="module")
def server(postgres_url: str, redis_url: str) -> Iterator[LiveServer]:
    redis.Redis.from_url(redis_url).flushdb()
    live = LiveServer(
        postgres_url=postgres_url,
        env={
            "REDIS_URL": redis_url,
            "GHOSTGPT_CELERY_VISIBILITY_TIMEOUT": "3",
            "GHOSTGPT_TOOLS_SYNC_WAIT_SECONDS": "60",
            "GHOSTGPT_TOOLS_RATE_ANONYMOUS": "1000",
        },
    )
    yield live
    live.stop()


def _upload(server: LiveServer, data: bytes, **headers: str) -> httpx.Response:
    return httpx.post(
        server.base_url + "/api/pdf/extract",
        files={"file": ("doc.pdf", data, "application/pdf")},
        headers=headers,
        timeout=90,
    )


def _job(server: LiveServer, location: str) -> dict[str, Any]:
    return httpx.get(server.base_url + location, timeout=10).json()  # type: ignore[no-any-return]


def test_a_real_worker_runs_pdf_jobs(server: LiveServer) -> None:
    worker = Worker(server.env)
    try:
        response = _upload(server, text_pdf(["Worked on by a real worker", "Second page"]))
        assert response.status_code == 200, response.text
        assert response.json()["pages"] == 2 and "real worker" in response.json()["text"]
    finally:
        worker.stop()


def test_killing_the_worker_mid_job_does_not_lose_it(server: LiveServer) -> None:
    big = text_pdf([f"Page {n} of a long report about ghosts." for n in range(1500)])
    accepted = _upload(server, big, Prefer="respond-async")
    assert accepted.status_code == 202, accepted.text
    location = accepted.headers["Location"]
    assert _job(server, location)["status"] == "queued"  # no worker yet: the job waits in Redis

    worker = Worker(elsewhere(server))
    deadline = time.monotonic() + 60
    while _job(server, location)["status"] != "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    worker.kill()
    assert _job(server, location)["status"] == "running"

    time.sleep(4)  # past the visibility timeout: Redis hands the task out again
    restarted = Worker(elsewhere(server))
    try:
        deadline = time.monotonic() + 120
        while (job := _job(server, location))["status"] not in ("succeeded", "failed") and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        restarted.stop()
    assert job["status"] == "succeeded", job
    assert job["attempts"] == 2, "run again after the kill, not finished before it"
    assert job["result"]["pages"] == 1500 and "Page 1499 of a long report" in job["result"]["text"]
    assert stored_uploads(server) == 0, "the upload leaves the database with its job"


def stored_uploads(server: LiveServer) -> int:
    code = "from tools.models import Upload; print(Upload.objects.count())"
    return int(server._manage("shell", "-c", code).strip().splitlines()[-1])
