"""Money under concurrency, on a live server over real PostgreSQL.

Completion tokens are priced at 0 in the exactness tests, so every request costs exactly
its (identical) prompt and the balance pays for an exact number of requests.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest

from .live import LiveServer, books, funded_account, manage, operator_call

ADMIN_KEY = "adm-billing-" + "k" * 30
QUICK = {
    "model": "ghostgpt",
    "messages": [{"role": "user", "content": "Say something."}],
    "max_tokens": 32,
    "temperature": 0,
    "stop": [" ", "\n", "e", "a"],
}


@pytest.fixture(scope="module")
def billing_server(postgres_url: str) -> Iterator[LiveServer]:
    server = LiveServer(
        env={
            "DATABASE_URL": postgres_url,
            "GHOSTGPT_ADMIN_KEY": ADMIN_KEY,
            "GHOSTGPT_QUEUE_MAX": "400",
            "GHOSTGPT_PRICE_CACHE_SECONDS": "0",
        }
    )
    yield server
    server.stop()


def operator(server: LiveServer, path: str, body: dict[str, Any]) -> dict[str, Any]:
    return operator_call(server.base_url, ADMIN_KEY, path, body)


def prompt_tokens(server: LiveServer) -> int:
    manage(server, "set_price", "ghostgpt", "--prompt", "0", "--completion", "0")
    reply = httpx.post(
        server.base_url + "/v1/chat/completions",
        json=QUICK,
        headers={"Authorization": f"Bearer {server.api_key}"},
        timeout=60,
    )
    return int(reply.json()["usage"]["prompt_tokens"])


async def _fire(server: LiveServer, token: str, bodies: list[dict[str, Any]]) -> list[int]:
    limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=0)
    async with httpx.AsyncClient(
        base_url=server.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=300, limits=limits
    ) as session:

        async def one(body: dict[str, Any]) -> int:
            if not body.get("stream"):
                return (await session.post("/v1/chat/completions", json=body)).status_code
            async with session.stream("POST", "/v1/chat/completions", json=body) as response:
                if response.status_code == 200:
                    chunks = 0
                    async for line in response.aiter_lines():
                        chunks += line.startswith("data: {")
                        if chunks >= 3:  # abort mid-stream
                            break
                return response.status_code

        return await asyncio.gather(*(one(body) for body in bodies))


def test_200_concurrent_requests_against_a_balance_for_100(billing_server: LiveServer, postgres_url: str) -> None:
    per_request = prompt_tokens(billing_server)
    manage(billing_server, "set_price", "ghostgpt", "--prompt", "1000000", "--completion", "0")  # 1 per token
    user_id, token = funded_account(billing_server.base_url, ADMIN_KEY, "exact-100", Decimal(per_request * 100))

    statuses = Counter(asyncio.run(_fire(billing_server, token, [QUICK] * 200)))

    assert statuses == Counter({200: 100, 402: 100})
    balance, ledger_total, kinds = books(billing_server.env["DATABASE_URL"], user_id)
    assert balance == 0
    assert ledger_total == balance, "ledger entries sum to the balance"
    assert kinds == Counter({"topup": 1, "reserve": 100, "settle": 100})


def test_aborted_stream_mix_never_overspends(billing_server: LiveServer, postgres_url: str) -> None:
    per_request = prompt_tokens(billing_server)
    manage(billing_server, "set_price", "ghostgpt", "--prompt", "1000000", "--completion", "0")
    user_id, token = funded_account(billing_server.base_url, ADMIN_KEY, "abort-mix", Decimal(per_request * 50))
    long_stream = {
        **QUICK,
        "stop": None,
        "max_tokens": 4096,
        "stream": True,
        "messages": [{"role": "user", "content": "Say something."}],
    }
    bodies = [long_stream if i % 2 else QUICK for i in range(100)]

    statuses = Counter(asyncio.run(_fire(billing_server, token, bodies)))

    assert statuses == Counter({200: 50, 402: 50})
    billing_server.wait_idle(within=2.0)  # the last aborted generations stop within a token
    deadline = time.monotonic() + 5  # and settle as the server notices each disconnect
    while (kinds := books(billing_server.env["DATABASE_URL"], user_id)[2])[
        "settle"
    ] < 50 and time.monotonic() < deadline:
        time.sleep(0.05)
    balance, ledger_total, kinds = books(billing_server.env["DATABASE_URL"], user_id)
    assert balance == 0 and ledger_total == 0
    assert kinds["reserve"] == kinds["settle"] == 50


def test_disconnect_bills_the_tokens_delivered(billing_server: LiveServer, postgres_url: str) -> None:
    manage(
        billing_server, "set_price", "ghostgpt", "--prompt", "0", "--completion", "1000000"
    )  # 1 per completion token
    user_id, token = funded_account(billing_server.base_url, ADMIN_KEY, "disconnect", Decimal(100_000))
    body = {"model": "ghostgpt", "prompt": "1, 2, 3, 4, 5,", "max_tokens": 4096, "temperature": 0, "stream": True}
    delivered = 0
    with httpx.stream(
        "POST",
        billing_server.base_url + "/v1/completions",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: {"):
                delivered += 1
            if delivered == 10:
                break
    row = None
    deadline = time.monotonic() + 5
    while row is None and time.monotonic() < deadline:  # settlement runs as the stream closes
        with psycopg.connect(billing_server.env["DATABASE_URL"]) as conn:
            row = conn.execute(
                "select completion_tokens, estimated from chat_usagerecord where account_id = %s", (user_id,)
            ).fetchone()
        time.sleep(0.05)
    assert row is not None, "the aborted request was never settled"
    completion, estimated = row
    balance, ledger_total, _ = books(billing_server.env["DATABASE_URL"], user_id)
    assert completion == delivered, "billed exactly the tokens that reached the client"
    assert estimated is True
    assert balance == Decimal(100_000) - completion and ledger_total == balance
