"""Settings switch to the real services from the environment (Postgres, Redis) and fail loudly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, asyncio
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from channels.layers import get_channel_layer
from ghostgpt.celery import app

cache.set("probe", "cached", 30)

async def roundtrip():
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "probe", "text": "over redis"})
    return (await layer.receive(channel))["text"]

print(json.dumps({
    "db": connection.vendor,
    "db_ok": connection.cursor().execute("select 1").fetchone()[0] if connection.vendor == "postgresql" else None,
    "cache": cache.get("probe"),
    "layer": type(get_channel_layer()).__name__,
    "layer_roundtrip": asyncio.run(roundtrip()),
    "broker": app.conf.broker_url,
    "eager": app.conf.task_always_eager,
}))
"""


def run_manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=60
    )


def test_production_services_come_from_the_environment(postgres_url: str, redis_url: str, tmp_path: Path) -> None:
    redis.Redis.from_url(redis_url).flushdb()
    env = {"DATABASE_URL": postgres_url, "REDIS_URL": redis_url, "GHOSTGPT_DATA_DIR": str(tmp_path)}
    result = run_manage(env, "shell", "-c", PROBE)
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    assert probe["db"] == "postgresql" and probe["db_ok"] == 1
    assert probe["cache"] == "cached"
    assert probe["layer"] == "RedisChannelLayer" and probe["layer_roundtrip"] == "over redis"
    assert probe["broker"] == redis_url and probe["eager"] is False
    assert any(b"probe" in key for key in redis.Redis.from_url(redis_url).keys("*")), "the cache really lives in Redis"


def test_embedded_defaults_need_no_services(tmp_path: Path) -> None:
    env = {"GHOSTGPT_DATA_DIR": str(tmp_path), "DATABASE_URL": "", "REDIS_URL": ""}
    result = run_manage(env, "shell", "-c", PROBE)
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    assert probe["db"] == "sqlite" and probe["layer"] == "InMemoryChannelLayer"
    assert probe["broker"] == "memory://" and probe["eager"] is True
    assert (tmp_path / "secret_key").exists()


def test_production_refuses_to_start_without_secrets(tmp_path: Path) -> None:
    env = {"GHOSTGPT_ENV": "production", "DJANGO_SECRET_KEY": "", "GHOSTGPT_DATA_DIR": str(tmp_path)}
    result = run_manage(env, "check")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr
    result = run_manage({**env, "DJANGO_SECRET_KEY": "x" * 50}, "check")
    assert result.returncode != 0 and "GHOSTGPT_ALLOWED_HOSTS" in result.stderr


def test_bad_settings_values_fail_loudly(tmp_path: Path) -> None:
    result = run_manage({"GHOSTGPT_N_CTX": "lots", "GHOSTGPT_DATA_DIR": str(tmp_path)}, "check")
    assert result.returncode != 0 and "GHOSTGPT_N_CTX must be an integer" in result.stderr
