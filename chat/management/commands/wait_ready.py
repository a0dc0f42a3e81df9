"""`manage.py wait_ready URL`: wait until URL/health/ready answers 200 — and, with
`--model-servers FILE`, each model server listed there (one base URL a line) answers 200 on
/health, i.e. has loaded its models (what `make up` waits for); on time-out, print what is
still missing and the end of the log, and fail."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from django.core.management.base import BaseCommand, CommandError

LOG_TAIL_BYTES = 4000


class Command(BaseCommand):
    help = "Wait until URL/health/ready is 200."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("url")
        parser.add_argument("--model-servers", default="", help="a file: one model server base URL a line")
        parser.add_argument("--seconds", type=float, default=180.0)
        parser.add_argument("--log", default="")

    def handle(self, *args: Any, url: str, model_servers: str, seconds: float, log: str, **options: Any) -> None:
        deadline = time.monotonic() + seconds
        pending = [url.rstrip("/") + "/health/ready"]
        if model_servers:
            servers = Path(model_servers).read_text().split()
            pending += [server.rstrip("/") + "/health" for server in servers]
        last = "no answer"
        while pending and time.monotonic() < deadline:
            target = pending[0]
            try:
                response = httpx.get(target, timeout=5)
            except httpx.HTTPError as exc:
                last = f"{target}: no answer ({type(exc).__name__})"
            else:
                if response.status_code == 200:
                    pending.pop(0)
                    continue
                last = f"{target}: {response.status_code} {response.text[:500]}"
            time.sleep(0.5)
        if not pending:
            return
        tail = ""
        if log and Path(log).exists():
            tail = Path(log).read_bytes()[-LOG_TAIL_BYTES:].decode(errors="replace")
        raise CommandError(f"{url} was not ready after {seconds:.0f}s: {last}\n--- log tail ---\n{tail}")
