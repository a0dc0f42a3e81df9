"""Rate limits across processes over real Redis, and secrets kept out of every log line."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from .live import LiveServer
from .test_billing_live import QUICK

ADMIN_KEY = "adm-limits-" + "q" * 30
WINDOW = 3600


@pytest.fixture(scope="module")
def two_servers(postgres_url: str, redis_url: str) -> Iterator[tuple[LiveServer, LiveServer]]:
    redis.Redis.from_url(redis_url).flushdb()
    env = {
        "REDIS_URL": redis_url,
        "GHOSTGPT_ADMIN_KEY": ADMIN_KEY,
        "GHOSTGPT_RATE_WINDOW_SECONDS": str(WINDOW),
        "GHOSTGPT_QUEUE_MAX": "100",
    }
    first = LiveServer(postgres_url=postgres_url, env=env)
    second = LiveServer(database_url=first.env["DATABASE_URL"], env=env)
    yield first, second
    second.stop()
    first.stop()


def _regular_key(server: LiveServer) -> str:
    response = httpx.post(
        server.base_url + "/admin/users/add",
        json={"name": "limited", "tier": "regular"},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


def test_exactly_rpm_requests_pass_across_two_processes(two_servers: tuple[LiveServer, LiveServer]) -> None:
    if WINDOW - time.time() % WINDOW < 60:  # do not straddle a window boundary
        time.sleep(WINDOW - time.time() % WINDOW + 1)
    token = _regular_key(two_servers[0])

    async def burst() -> list[httpx.Response]:
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(headers=headers, timeout=120, limits=httpx.Limits(max_connections=50)) as session:
            return await asyncio.gather(
                *(session.post(two_servers[i % 2].base_url + "/v1/chat/completions", json=QUICK) for i in range(50))
            )

    responses = asyncio.run(burst())
    assert Counter(r.status_code for r in responses) == Counter({200: 12, 429: 38})
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert int(refused.headers["Retry-After"]) > 0
    assert refused.headers["x-ratelimit-limit-requests"] == "12"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    ok = next(r for r in responses if r.status_code == 200)
    assert int(ok.headers["x-ratelimit-remaining-requests"]) < 12
    assert ok.headers["x-ratelimit-limit-tokens"] == "40000"


def test_redis_limiter_counts_tokens(redis_url: str, settings: Any) -> None:
    from chat.billing.ratelimit import Limits, RedisLimiter

    settings.GHOSTGPT = {**settings.GHOSTGPT, "RATE_WINDOW_SECONDS": WINDOW}
    limits = Limits(subject=f"tokens-test-{time.time_ns()}", rpm=None, tpm=100)

    async def scenario() -> tuple[bool, bool, int]:
        limiter = RedisLimiter(redis_url)
        before = await limiter.hit(limits)
        await limiter.add_tokens(limits, 60)
        await limiter.add_tokens(limits, 40)
        after = await limiter.hit(limits, count=False)
        return before.over_tokens, after.over_tokens, after.tokens

    assert asyncio.run(scenario()) == (False, True, 100)


def test_no_key_prefix_or_admin_key_in_any_log_line() -> None:
    server = LiveServer(env={"GHOSTGPT_ADMIN_KEY": ADMIN_KEY, "GHOSTGPT_LOG_LEVEL": "DEBUG"})
    try:
        base, key = server.base_url, server.api_key
        added = httpx.post(base + "/admin/users/add", json={"admin_key": ADMIN_KEY, "name": "logged"}).json()
        token = added["token"]
        httpx.get(base + "/admin/users", params={"admin_key": ADMIN_KEY})
        httpx.get(base + "/admin/users", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        httpx.get(base + "/v1/models", params={"key": key})
        httpx.get(base + "/v1/models", headers={"x-api-key": key})
        httpx.post(base + "/v1/chat/completions", json=QUICK, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        httpx.post(base + "/v1/chat/completions", json=QUICK, headers={"Authorization": "Bearer gg-wrong" + key[8:]})
        httpx.get(base + "/api/v1/keys", headers={"Authorization": f"Bearer {token}"})
        httpx.post(base + "/api/v1/keys", json={"name": "x"}, headers={"Authorization": key})
        time.sleep(0.5)
        log = server.log()
    finally:
        server.stop()
    assert log.count("ghostgpt.access") >= 9, "the requests were logged"
    assert "[redacted]" in log
    for secret in (ADMIN_KEY, key, key[:10], token, token[:10], key[8:]):
        assert secret not in log, f"a secret reached the log: {secret[:4]}…"
