"""The per-process key cache (chat/keycache.py) against live servers: a key changed by any
process — here `manage.py shell`, a separate process like the admin, a worker or another
machine — counts on the very next request; only a change typed into the database behind
Django's back waits for GHOSTGPT_KEY_CACHE_SECONDS, which shows the cache is really used."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from chat.models import hash_api_key

from .live import LiveServer, manage

CACHE_SECONDS = 2.0


def change(server: LiveServer, code: str) -> None:
    """Run ORM code in another process against the server's database and settings."""
    manage(server, "shell", "-c", "from chat.models import ApiKey\n" + code)


def status(server: LiveServer, key: str) -> int:
    return httpx.get(server.base_url + "/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code


def fresh_key(server: LiveServer) -> tuple[str, str]:
    """A new key and its hash (how the shell code below finds its row)."""
    key = manage(server, "create_api_key", "--name", "cached", "--tier", "unlimited").strip().splitlines()[-1]
    return key, hash_api_key(key)


def check_changes_count_at_once(servers: list[LiveServer]) -> None:
    first = servers[0]
    key, digest = fresh_key(first)
    row = f"key = ApiKey.objects.get(key_hash={digest!r})\n"
    for server in servers:
        assert [status(server, key) for _ in range(3)] == [200, 200, 200]  # now cached everywhere

    change(first, row + "key.is_active = False\nkey.save()")
    assert [status(server, key) for server in servers] == [401] * len(servers)
    change(first, row + "key.is_active = True\nkey.save()")
    assert [status(server, key) for server in servers] == [200] * len(servers)

    change(first, row + "key.allowed_models = ['no-such-model']\nkey.save()")  # narrowed
    for server in servers:
        listed = httpx.get(server.base_url + "/v1/models", headers={"Authorization": f"Bearer {key}"}).json()
        assert listed["data"] == [], listed

    change(first, row + "key.delete()")
    assert [status(server, key) for server in servers] == [401] * len(servers)


def check_raw_sql_waits_for_the_cache_time(servers: list[LiveServer]) -> None:
    key, digest = fresh_key(servers[0])
    for server in servers:
        assert status(server, key) == 200
    sql = "UPDATE chat_apikey SET is_active = %s WHERE key_hash = %s"
    change(servers[0], f"from django.db import connection\nconnection.cursor().execute({sql!r}, [False, {digest!r}])")
    # No signal, no stamp: the cached key still works (so the database was not asked)...
    assert [status(server, key) for server in servers] == [200] * len(servers)
    time.sleep(CACHE_SECONDS + 0.2)
    # ...until its entry ages out.
    assert [status(server, key) for server in servers] == [401] * len(servers)


@pytest.fixture(scope="module")
def embedded() -> Iterator[LiveServer]:
    """One process, no Redis (`make run`): the stamp is a file in the data directory."""
    server = LiveServer(env={"GHOSTGPT_KEY_CACHE_SECONDS": str(int(CACHE_SECONDS))})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def two_processes(postgres_url: str, redis_url: str) -> Iterator[list[LiveServer]]:
    """Two web processes on one database and Redis, as on two machines: the stamp is in Redis."""
    env = {"REDIS_URL": redis_url, "GHOSTGPT_KEY_CACHE_SECONDS": str(int(CACHE_SECONDS))}
    first = LiveServer(postgres_url=postgres_url, env=env)
    second = LiveServer(database_url=first.env["DATABASE_URL"], env=env)
    yield [first, second]
    second.stop()
    first.stop()


def test_a_key_changed_by_another_process_counts_on_the_next_request(embedded: LiveServer) -> None:
    check_changes_count_at_once([embedded])


def test_a_key_changed_behind_djangos_back_counts_after_the_cache_time(embedded: LiveServer) -> None:
    check_raw_sql_waits_for_the_cache_time([embedded])


def test_across_processes_a_key_change_counts_on_the_next_request_in_each(two_processes: list[LiveServer]) -> None:
    check_changes_count_at_once(two_processes)


def test_across_processes_raw_sql_counts_after_the_cache_time(two_processes: list[LiveServer]) -> None:
    check_raw_sql_waits_for_the_cache_time(two_processes)
