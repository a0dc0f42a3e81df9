"""Money corners on a live server, on SQLite and on PostgreSQL (the suite's two runs): a key
deleted while its request streams, a process killed between reserve and settle, a JSON
request dropped before its answer is complete."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest

from .live import LiveServer, funded_account, manage, server_books, server_rows, wait_for

ADMIN_KEY = "adm-corners-" + "k" * 30
BUDGET = Decimal(100_000)


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    live = LiveServer(env={"GHOSTGPT_ADMIN_KEY": ADMIN_KEY, "GHOSTGPT_PRICE_CACHE_SECONDS": "0"})
    manage(live, "set_price", "ghostgpt", "--prompt", "1000000", "--completion", "1000000")  # 1 a token
    yield live
    live.stop()


def test_deleting_a_key_mid_stream_keeps_the_settlement(server: LiveServer) -> None:
    account, owner = funded_account(server.base_url, ADMIN_KEY, "deleted-key", BUDGET)
    made = httpx.post(
        server.base_url + "/api/v1/keys", json={"name": "doomed"}, headers={"Authorization": f"Bearer {owner}"}
    )
    assert made.status_code == 201, made.text
    doomed, doomed_id = made.json()["key"], made.json()["id"]
    body = {"model": "ghostgpt", "prompt": "1, 2, 3, 4, 5,", "max_tokens": 300, "temperature": 0, "stream": True}
    chunks = 0
    with httpx.stream(
        "POST", server.base_url + "/v1/completions", json=body, headers={"Authorization": f"Bearer {doomed}"}
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if not line.startswith("data: {"):
                continue
            chunks += 1
            if chunks == 5:
                deleted = httpx.delete(
                    f"{server.base_url}/api/v1/keys/{doomed_id}", headers={"Authorization": f"Bearer {owner}"}
                )
                assert deleted.status_code in (200, 204), deleted.text
    rows = wait_for(
        lambda: server_rows(
            server,
            "select key_id, prompt_tokens, completion_tokens from chat_usagerecord where account_id = %s",
            (account,),
        ),
        "the deleted key's request to be settled",
        within=15,
    )
    [(key_id, prompt, completion)] = rows
    assert key_id == doomed_id and prompt > 0 and completion >= 5
    balance, ledger, kinds = server_books(server, account)
    assert ledger == balance, kinds
    assert balance == BUDGET - prompt - completion, "the reservation was settled, not kept"
