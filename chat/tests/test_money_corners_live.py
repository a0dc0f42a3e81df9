"""Money corners on a live server, on SQLite and on PostgreSQL (the suite's two runs): a key
deleted while its request streams, a process killed between reserve and settle, a JSON
request dropped before its answer is complete."""

from __future__ import annotations

import time
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


@pytest.mark.parametrize("policy", ["prompt", "refund"])
def test_a_reservation_orphaned_by_kill_9_is_closed_at_startup(policy: str) -> None:
    env = {
        "GHOSTGPT_ADMIN_KEY": ADMIN_KEY,
        "GHOSTGPT_PRICE_CACHE_SECONDS": "0",
        "GHOSTGPT_RESERVATION_TIMEOUT_SECONDS": "3",
        "GHOSTGPT_ORPHAN_POLICY": policy,
    }
    first = LiveServer(env=env)
    try:
        manage(first, "set_price", "ghostgpt", "--prompt", "1000000", "--completion", "1000000")
        account, key = funded_account(first.base_url, ADMIN_KEY, "orphaned", BUDGET)
        body = {
            "model": "ghostgpt",
            "messages": [{"role": "user", "content": "Write a long essay about the history of the sea."}],
            "max_tokens": 1000,
            "seed": 1,
            "stream": True,
        }
        with httpx.stream(
            "POST", first.base_url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
        ) as response:
            assert response.status_code == 200
            chunks = 0
            for line in response.iter_lines():
                chunks += line.startswith("data: {")
                if chunks == 5:  # the answer is under way
                    first.process.kill()  # SIGKILL between reserve and settle
                    break
            first.process.wait(timeout=10)
        balance, ledger, kinds = server_books(first, account)
        assert kinds["reserve"] == 1 and not kinds["settle"], server_rows(
            first, "select kind, amount, request_id, created_at from chat_ledgerentry where account_id = %s", (account,)
        )
        prompt_tokens = BUDGET - balance - 1000  # held: the counted prompt + max_tokens, at 1 a token
        time.sleep(3)  # older than GHOSTGPT_RESERVATION_TIMEOUT_SECONDS
        second = LiveServer(
            env={**env, "GHOSTGPT_DATA_DIR": first.env["GHOSTGPT_DATA_DIR"]},
            database_url=first.env.get("DATABASE_URL") or None,
        )
        try:
            closed = wait_for(
                lambda: server_rows(
                    second,
                    "select amount from chat_ledgerentry where account_id = %s and kind = 'reconcile'",
                    (account,),
                ),
                "the orphaned reservation to be closed",
                within=20,
            )
            assert len(closed) == 1
            balance, ledger, kinds = server_books(second, account)
            assert ledger == balance
            charged = prompt_tokens if policy == "prompt" else 0  # the prompt's counted size, or nothing
            assert prompt_tokens > 10 and balance == BUDGET - charged, (balance, kinds)
        finally:
            second.stop()
    finally:
        first.stop()


def test_a_json_request_dropped_before_its_answer_pays_for_its_prompt(server: LiveServer) -> None:
    # The same as a dropped stream: the admitted prompt's counted size plus what was generated.
    account, key = funded_account(server.base_url, ADMIN_KEY, "dropped-json", BUDGET)
    prompt = " ".join(f"{n}, ghost ship sails the sea." for n in range(400))  # ~3,000 tokens to prefill
    body = {"model": "ghostgpt", "messages": [{"role": "user", "content": prompt}], "max_tokens": 500, "seed": 1}
    with pytest.raises(httpx.ReadTimeout):  # the client gives up before the answer is complete
        httpx.post(
            server.base_url + "/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
            timeout=httpx.Timeout(30, read=1.0),
        )
    rows = wait_for(
        lambda: server_rows(
            server,
            "select prompt_tokens, completion_tokens, estimated from chat_usagerecord where account_id = %s",
            (account,),
        ),
        "the dropped request to be settled",
        within=30,
    )
    [(prompt_tokens, completion_tokens, estimated)] = rows
    assert prompt_tokens > 2000 and estimated, rows
    balance, ledger, _ = server_books(server, account)
    assert ledger == balance and balance == BUDGET - prompt_tokens - completion_tokens
