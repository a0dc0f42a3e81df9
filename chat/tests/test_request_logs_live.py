"""Request logs through a running server: with GHOSTGPT_REQUEST_LOGS on, a request's body and
its answer are kept redacted — the operator reads them whole in the ops console, the key
holder only the excerpts GHOSTGPT_CONSOLE_REQUEST_TEXT allows — blanked by the beat task
after GHOSTGPT_REQUEST_LOG_DAYS, and gone when the account is deleted."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest
from openai import OpenAI

from .live import LiveServer, funded_account, manage, operator_call, server_rows

ADMIN_KEY = "sk-admin-request-logs-0123456789"
SECRET_PROMPT = (
    "I am ann.lee@example.org, my card is 4111 1111 1111 1111, call +44 20 7946 0958, "
    "and my OpenAI key is sk-proj-AbCdEfGhIjKlMnOpQrStUvWx0123. Say hello."
)
LEAKS = ("ann.lee@example.org", "4111 1111 1111 1111", "7946 0958", "sk-proj-AbCdEfGhIjKlMnOpQrStUvWx0123")
EXCERPT = 20


@pytest.fixture(scope="module")
def site() -> Iterator[LiveServer]:
    server = LiveServer(
        env={
            "GHOSTGPT_ADMIN_KEY": ADMIN_KEY,
            "GHOSTGPT_REQUEST_LOGS": "true",
            "GHOSTGPT_REQUEST_LOG_DAYS": "7",
            "GHOSTGPT_CONSOLE_REQUEST_TEXT": str(EXCERPT),
        }
    )
    yield server
    server.stop()


@contextlib.contextmanager
def _signed_in(server: LiveServer, path: str, body: dict[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        client.get("/console")
        signed = client.post(path, json=body, headers={"X-CSRFToken": client.cookies["csrftoken"]})
        assert signed.status_code == 201, signed.text
        yield client


def _texts(server: LiveServer, account: int) -> list[tuple[str, str, str]]:
    return server_rows(
        server,
        "select prompt_text, answer_text, request_body from chat_usagerecord where account_id = %s order by id",
        (account,),
    )


def _age(server: LiveServer, usage_id: int, *, days: int) -> None:
    """Make a usage row `days` older, in the server's own database."""
    if server.env.get("DATABASE_URL", "").startswith("postgres"):
        sql = "update chat_usagerecord set created_at = created_at - make_interval(days => %s) where id = %s"
        server_rows(server, sql, (days, usage_id))
    else:
        sql = "update chat_usagerecord set created_at = datetime(created_at, %s) where id = %s"
        server_rows(server, sql, (f"-{days} days", usage_id))


def test_logs_are_redacted_shown_to_operators_and_excerpted_for_key_holders(site: LiveServer) -> None:
    account, key = funded_account(site.base_url, ADMIN_KEY, "logged", Decimal("1"))
    client = OpenAI(base_url=site.base_url + "/v1", api_key=key, max_retries=0)
    answer = client.chat.completions.create(
        model="ghostgpt", messages=[{"role": "user", "content": SECRET_PROMPT}], max_tokens=24, seed=1
    )
    [(prompt, logged_answer, body)] = _texts(site, account)
    for leak in LEAKS:
        assert leak not in prompt + logged_answer + body, leak
    assert "[email]" in prompt and "[card]" in prompt and "[phone]" in prompt and "[secret]" in prompt
    assert json.loads(body)["messages"][0]["content"] == prompt  # the whole body, redacted, still JSON
    assert logged_answer == answer.choices[0].message.content

    with _signed_in(site, "/console/api/ops/session", {"admin_key": ADMIN_KEY}) as ops:
        log = ops.get(f"/console/api/ops/accounts/{account}/requests").json()
        assert ops.get("/console/api/ops/accounts/999999/requests").status_code == 404
    assert log["logs"] is True and log["days"] == 7
    [row] = log["data"]
    assert (row["prompt"], row["answer"], row["body"]) == (prompt, logged_answer, body)

    with _signed_in(site, "/console/api/session", {"key": key}) as holder:
        [mine] = holder.get("/console/api/requests").json()["data"]
        assert holder.get(f"/console/api/ops/accounts/{account}/requests").status_code == 401
    assert mine["prompt"] == prompt[:EXCERPT] and mine["answer"] == logged_answer[:EXCERPT]
    assert "body" not in mine


def test_old_logs_are_blanked_by_the_beat_task_and_deleted_with_their_account(site: LiveServer) -> None:
    account, key = funded_account(site.base_url, ADMIN_KEY, "purged", Decimal("1"))
    client = OpenAI(base_url=site.base_url + "/v1", api_key=key, max_retries=0)
    for _ in range(2):
        client.chat.completions.create(model="ghostgpt", messages=[{"role": "user", "content": "Hi"}], max_tokens=8)
    first = server_rows(site, "select min(id) from chat_usagerecord where account_id = %s", (account,))[0][0]
    _age(site, first, days=8)
    purged = manage(site, "shell", "-c", "from chat.tasks import purge_request_text; print(purge_request_text())")
    assert purged.strip().splitlines()[-1] == "1"
    texts = _texts(site, account)
    assert texts[0] == ("", "", "") and all(texts[1]), "only the old request's text goes; its row stays"
    assert len(texts) == 2

    operator_call(site.base_url, ADMIN_KEY, "/admin/users/delete", {"user_id": account})
    assert _texts(site, account) == []
