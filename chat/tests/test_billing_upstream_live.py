"""Money in front of upstreams, on a live server: aliases cost what their model costs, a
short balance or TPM is refused before the upstream hears anything, nonsense usage is
clamped, and the ledger always sums to the balance."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from openai import OpenAI, RateLimitError

from .fake_upstream import FakeUpstream
from .live import LiveServer
from .test_billing_live import manage, operator

ADMIN_KEY = "adm-billing-" + "k" * 30
PRICE = 1_000_000  # 1 unit per token, prompt and completion
BALANCE = 100_000


@pytest.fixture(scope="module")
def gateway(fake: FakeUpstream) -> Iterator[LiveServer]:
    def upstream(mode: str) -> dict[str, Any]:
        return {"base_url": f"{fake.url}/{mode}/v1", "api_key": "sk-upstream"}

    routes = {
        "upstreams": {"ok": upstream("ok"), "absurd": upstream("absurd")},
        "models": {
            "gpt-4o": {"aliases": ["mini"], "deployments": [{"upstream": "ok"}]},
            "absurd": {"deployments": [{"upstream": "absurd"}]},
        },
    }
    server = LiveServer(routes=routes, env={"GHOSTGPT_ADMIN_KEY": ADMIN_KEY, "GHOSTGPT_PRICE_CACHE_SECONDS": "0"})
    for model in ("gpt-4o", "absurd"):
        manage(server, "set_price", model, "--prompt", str(PRICE), "--completion", str(PRICE))
    yield server
    server.stop()


def funded(server: LiveServer, name: str, amount: int) -> str:
    user = operator(server, "/admin/users/add", {"name": name, "tier": "unlimited"})
    if amount:
        operator(server, "/admin/topup", {"user_id": user["user_id"], "amount": str(amount), "idempotency_key": name})
    return str(user["token"])


def sdk(server: LiveServer, token: str) -> OpenAI:
    return OpenAI(base_url=server.base_url + "/v1", api_key=token, max_retries=0)


def ask(client: OpenAI, model: str, **extra: Any) -> Any:
    extra.setdefault("max_tokens", 256)
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Weather?"}], **extra)


def balance(server: LiveServer, token: str) -> float:
    return float(
        httpx.get(server.base_url + "/api/v1/balance", headers={"Authorization": f"Bearer {token}"}).json()["balance"]
    )


def test_an_alias_costs_what_its_model_costs(gateway: LiveServer) -> None:
    # Before: priced by the name sent, so `mini` cost 0 and /v1/models listed it at 0.
    token = funded(gateway, "alias", BALANCE)
    client = sdk(gateway, token)
    listed = {m.id: m.pricing for m in client.models.list().data}  # type: ignore[attr-defined]
    assert listed["mini"] == listed["gpt-4o"] and listed["mini"]["prompt_per_million"] == PRICE
    by_alias, by_id = ask(client, "mini"), ask(client, "gpt-4o")
    assert by_alias.usage.total_cost == by_id.usage.total_cost > 0  # type: ignore[union-attr]
    assert balance(gateway, token) == BALANCE - 2 * by_id.usage.total_cost  # type: ignore[union-attr]
    usage = httpx.get(
        gateway.base_url + "/api/v1/usage?group_by=model", headers={"Authorization": f"Bearer {token}"}
    ).json()["data"]
    assert [row["model"] for row in usage] == ["gpt-4o"] and usage[0]["requests"] == 2


def test_a_short_balance_is_402_before_the_upstream_hears_anything(gateway: LiveServer, fake: FakeUpstream) -> None:
    token = funded(gateway, "broke", 0)
    heard = len(fake.requests)
    response = httpx.post(
        gateway.base_url + "/v1/chat/completions",
        json={"model": "mini", "messages": [{"role": "user", "content": "x" * 5000}], "max_tokens": 16},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 402 and response.json()["error"]["code"] == "insufficient_balance"
    assert len(fake.requests) == heard, "the upstream was called before the 402"


def test_tpm_counts_the_worst_case_before_the_upstream(gateway: LiveServer, fake: FakeUpstream) -> None:
    token = funded(gateway, "tpm", BALANCE)
    made = httpx.post(
        gateway.base_url + "/api/v1/keys",
        json={"name": "small", "tpm": 300, "scope": "inference"},
        headers={"Authorization": f"Bearer {token}"},
    ).json()
    heard = len(fake.requests)
    with pytest.raises(RateLimitError):
        ask(sdk(gateway, made["key"]), "gpt-4o")  # 256 max_tokens + the prompt > 300
    assert len(fake.requests) == heard
    ask(sdk(gateway, made["key"]), "gpt-4o", max_tokens=100)
    widen = httpx.post(  # and an inference key cannot make itself a wider one
        gateway.base_url + "/api/v1/keys", json={"name": "wide"}, headers={"Authorization": f"Bearer {made['key']}"}
    )
    assert widen.status_code == 403 and widen.json()["error"]["code"] == "scope_exceeded"


def test_absurd_usage_is_clamped_and_never_mints_money(gateway: LiveServer) -> None:
    token = funded(gateway, "absurd", BALANCE)
    reply = ask(sdk(gateway, token), "absurd")
    cost = reply.usage.total_cost  # type: ignore[union-attr]
    assert 0 < cost <= 256 + 2_000  # completion capped at max_tokens, a negative prompt at 0
    assert balance(gateway, token) == BALANCE - cost
