"""The production topology, brought up by `make up` exactly as an operator does (the
production env template filled in, supervisord, Debian's nginx, two web processes, a model
server, a Celery worker and beat, PostgreSQL and Redis). The test modules that drive it
import its fixtures (`topology`, `fake`): each module gets one topology of its own."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import require_service
from .fake_upstream import FakeUpstream
from .live import ROOT, _Database, free_base_port, free_port, wait_for

NGINX = "/usr/sbin/nginx"
AGENT_MODEL = "ghost-agent"
LONG = "Write a long essay about the history of the sea."  # with seed 1: thousands of tokens


class Topology:
    def __init__(self, postgres_url: str, redis_url: str, fake: FakeUpstream, folder: Path) -> None:
        self.folder = folder
        self.database = _Database.create(postgres_url)
        assert self.database is not None
        self.port = free_port()
        self.base_port = free_base_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.web = [f"http://127.0.0.1:{self.base_port + n}" for n in range(2)]
        self.admin_key = "adm-" + secrets.token_urlsafe(32)
        self.metrics_token = secrets.token_urlsafe(24)
        routes = folder / "operator-routes.json"
        routes.write_text(
            json.dumps(
                {
                    "upstreams": {
                        "fake": {"base_url": f"{fake.url}/ok/v1"},
                        "stall": {"base_url": f"{fake.url}/stall/v1"},
                    },
                    "models": {
                        "fake": {"deployments": [{"upstream": "fake", "model": "gpt-4o"}]},
                        "paid": {"deployments": [{"upstream": "fake", "model": "gpt-4o"}]},
                        "stall": {"deployments": [{"upstream": "stall", "model": "gpt-4o"}]},
                        "fake-embed": {
                            "embeddings": True,
                            "deployments": [{"upstream": "fake", "model": "text-embedding-3-small"}],
                        },
                    },
                }
            )
        )
        self.env_file = folder / "production.env"
        self.env_file.write_text(self._production_env())
        # What the processes run with, for the manage.py commands the tests run beside them.
        self.settings = dict(
            line.split("=", 1) for line in self.env_file.read_text().splitlines() if line and not line.startswith("#")
        )
        self.env = {
            **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")},
            "UP_ROUTES_FILE": str(routes),
        }
        self.make_vars = [
            f"UP_DIR={folder / 'up'}",
            f"UP_ENV={self.env_file}",
            f"UP_PORT={self.port}",
            f"UP_BASE_PORT={self.base_port}",
            f"UP_DATABASE_URL={self.database.url}",
            f"UP_REDIS_URL={redis_url}",
        ]
        result = self.make("up", timeout=600)
        assert "GhostGPT on " + self.url in result.stdout, result.stdout
        self.api_key = (
            self.manage("create_api_key", "--name", "topology", "--tier", "unlimited").strip().splitlines()[-1]
        )

    def _production_env(self) -> str:
        """The shipped template with every CHANGE-ME filled in, as an operator fills it."""
        text = (ROOT / "deploy" / "production.env.example").read_text()
        values = {
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "GHOSTGPT_ALLOWED_HOSTS": "127.0.0.1,localhost",
            # The public name behind a TLS front, as an operator writes it: a browser on
            # nginx's own address passes the origin check through the Host nginx forwards.
            "GHOSTGPT_CSRF_TRUSTED_ORIGINS": "https://ghostgpt.example",
            "GHOSTGPT_PUBLIC_BASE_URL": self.url,
            "GHOSTGPT_ADMIN_KEY": self.admin_key,
            "GHOSTGPT_MODEL_TIER_KEY": secrets.token_urlsafe(32),
            "GHOSTGPT_METRICS_TOKEN": self.metrics_token,
            "GHOSTGPT_DATA_DIR": str(self.folder / "data"),
        }
        lines = []
        for line in text.splitlines():
            name = line.split("=", 1)[0]
            lines.append(f"{name}={values[name]}" if name in values else line)
            if "CHANGE-ME" in lines[-1] and not line.startswith("#"):
                raise AssertionError(f"the template has a value this test does not fill: {line}")
        extra = {  # what these tests need beyond the template
            "GHOSTGPT_AGENT_MODEL": AGENT_MODEL,
            "GHOSTGPT_AGENT_HEARTBEAT_SECONDS": "1",
            "GHOSTGPT_MAX_TOKENS_MIN": "1",
            "GHOSTGPT_PRICE_CACHE_SECONDS": "0",
            "GHOSTGPT_DRAIN_SECONDS": "3",
            "GHOSTGPT_CELERY_VISIBILITY_TIMEOUT": "5",
            "GHOSTGPT_LOG_FORMAT": "plain",
        }
        lines = [line for line in lines if line.split("=", 1)[0] not in extra]
        return "\n".join([*lines, *(f"{k}={v}" for k, v in extra.items())]) + "\n"

    def make(self, target: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["make", "--no-print-directory", target, *self.make_vars],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise AssertionError(f"make {target} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
        return result

    def ctl(self, *args: str) -> str:
        conf = self.folder / "up" / "supervisord.conf"
        result = subprocess.run(
            [str(Path(sys.executable).with_name("supervisorctl")), "-c", str(conf), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        return result.stdout

    def pid(self, program: str) -> int:
        return int(self.ctl("pid", program).strip())

    def wait_running(self, program: str, within: float = 60) -> None:
        wait_for(lambda: "RUNNING" in self.ctl("status", program), f"{program} to run again", within)
        base = self.web[int(program.split("-")[1]) - 1] if program.startswith("web-") else None
        if base:
            wait_for(lambda: _answers(base + "/health/live"), f"{program} to listen", within)

    def manage(self, *args: str) -> str:
        env = {**self.env, **self.settings, "DATABASE_URL": self.database.url}
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout

    def metrics(self, base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = httpx.get(base + "/metrics", headers={"Authorization": f"Bearer {self.metrics_token}"}, timeout=10).text
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def down(self) -> None:
        try:
            self.make("down", timeout=180)
        finally:
            self.database.drop()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def brought_up(
    postgres_url: str, redis_url: str, fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Topology]:
    """The body of a module's `topology` fixture: `make up`, then `make down` after the module."""
    if not Path(NGINX).exists():
        require_service("Debian's nginx", f"{NGINX} is missing (make test installs it as root)")
    up = Topology(postgres_url, redis_url, fake, tmp_path_factory.mktemp("topology"))
    yield up
    up.down()
