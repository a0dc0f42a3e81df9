"""Management API (/api/v1/...) and operator API (/admin/...), through Django's test client."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from chat.models import Account, ApiKey, LedgerEntry, UsageRecord
from chat.services import account_create_with_key, model_price_set

pytestmark = pytest.mark.django_db
ADMIN_KEY = "adm-" + "x" * 40


@pytest.fixture
def holder() -> Callable[..., tuple[Client, ApiKey, str]]:
    def make(name: str = "alice") -> tuple[Client, ApiKey, str]:
        key, secret = account_create_with_key(name=name)
        return Client(headers={"Authorization": f"Bearer {secret}"}), key, secret

    return make


@pytest.fixture
def operator(settings: Any) -> Client:
    settings.GHOSTGPT = {**settings.GHOSTGPT, "ADMIN_KEY": ADMIN_KEY}
    return Client(headers={"Authorization": f"Bearer {ADMIN_KEY}"})


def error_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]  # type: ignore[no-any-return]


def test_key_lifecycle(holder: Any) -> None:
    client, first, _ = holder()
    created = client.post("/api/v1/keys", {"name": "ci", "models": ["ghostgpt"]}, content_type="application/json")
    assert created.status_code == 201
    body = created.json()
    assert body["key"].startswith(body["prefix"]) and body["models"] == ["ghostgpt"]
    assert not ApiKey.objects.filter(key_hash__contains=body["key"]).exists()

    listed = client.get("/api/v1/keys").json()["data"]
    assert [k["id"] for k in listed] == [first.pk, body["id"]]
    assert all("key" not in k for k in listed), "secrets are shown once, at creation"

    expires = (timezone.now() + timedelta(days=7)).isoformat()
    patched = client.patch(
        f"/api/v1/keys/{body['id']}",
        {"name": "renamed", "active": False, "expires_at": expires},
        content_type="application/json",
    ).json()
    assert patched["name"] == "renamed" and patched["active"] is False and patched["expires_at"]
    new_key = Client(headers={"Authorization": f"Bearer {body['key']}"})
    assert error_of(new_key.get("/api/v1/balance"), 401)["code"] == "api_key_disabled"

    assert client.delete(f"/api/v1/keys/{body['id']}").json()["deleted"] is True
    assert not ApiKey.objects.filter(pk=body["id"]).exists()


def test_another_accounts_key_is_404(holder: Any) -> None:
    alice, _, _ = holder("alice")
    _, bobs_key, _ = holder("bob")
    assert error_of(alice.patch(f"/api/v1/keys/{bobs_key.pk}", {"name": "x"}, content_type="application/json"), 404)
    assert error_of(alice.delete(f"/api/v1/keys/{bobs_key.pk}"), 404)
    assert ApiKey.objects.filter(pk=bobs_key.pk, name="bob").exists()


@pytest.mark.parametrize(
    "body, param",
    [
        ({}, "name"),
        ({"name": "x", "models": "ghostgpt"}, "models"),
        ({"name": "x", "expires_at": "soon"}, "expires_at"),
    ],
)
def test_bad_key_input_is_400(holder: Any, body: dict[str, Any], param: str) -> None:
    client, _, _ = holder()
    error = error_of(client.post("/api/v1/keys", body, content_type="application/json"), 400)
    assert error["param"] == param and error["type"] == "invalid_request_error"


def test_malformed_json_is_400(holder: Any) -> None:
    client, _, _ = holder()
    error_of(client.post("/api/v1/keys", "{nope", content_type="application/json"), 400)


def test_expired_key_and_membership_are_401(holder: Any) -> None:
    client, key, _ = holder()
    key.expires_at = timezone.now() - timedelta(minutes=1)
    key.save()
    error = error_of(client.get("/api/v1/balance"), 401)
    assert error["code"] == "api_key_expired" and "expired" in error["message"]
    key.expires_at = None
    key.save()
    Account.objects.filter(pk=key.account_id).update(membership_expires_at=timezone.now() - timedelta(days=1))
    assert error_of(client.get("/api/v1/balance"), 401)["code"] == "membership_expired"
    assert error_of(Client().get("/api/v1/balance"), 401)["code"] == "missing_api_key"


def test_balance_membership_and_rates(holder: Any) -> None:
    client, key, _ = holder()
    Account.objects.filter(pk=key.account_id).update(balance=Decimal("12.5"))
    assert client.get("/api/v1/balance").json() == {"balance": 12.5, "currency": "USD"}
    membership = client.get("/api/v1/membership").json()
    assert membership["tier"] == "regular" and membership["rpm"] == 12 and membership["expires_at"] is None
    model_price_set(model="gpt-4o", prompt_per_million=Decimal("2.5"), completion_per_million=Decimal(10))
    rates = {row["model"]: row for row in Client().get("/api/v1/rates").json()["data"]}  # public
    assert rates["gpt-4o"]["completion_per_million"] == 10.0 and rates["gpt-4o"]["served"] is False


def test_usage_groups_by_day_model_and_key(holder: Any) -> None:
    client, key, _ = holder()
    for model, tokens in (("ghostgpt", 10), ("ghostgpt", 20), ("gpt-4o", 5)):
        UsageRecord.objects.create(
            account_id=key.account_id,
            key=key,
            model=model,
            prompt_tokens=tokens,
            completion_tokens=1,
            prompt_cost=Decimal("0.5"),
            completion_cost=Decimal(0),
        )
    by_model = client.get("/api/v1/usage", {"group_by": "model"}).json()["data"]
    assert by_model == [
        {
            "model": "ghostgpt",
            "requests": 2,
            "prompt_tokens": 30,
            "completion_tokens": 2,
            "total_tokens": 32,
            "cost": 1.0,
        },
        {"model": "gpt-4o", "requests": 1, "prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6, "cost": 0.5},
    ]
    by_day = client.get("/api/v1/usage").json()["data"]
    assert by_day[0]["day"] == str(timezone.now().date()) and by_day[0]["requests"] == 3
    assert client.get("/api/v1/usage", {"group_by": "key"}).json()["data"][0]["key"] == key.prefix
    assert client.get("/api/v1/usage", {"from": "2001-01-01", "to": "2001-01-31"}).json()["data"] == []
    assert error_of(client.get("/api/v1/usage", {"group_by": "hour"}), 400)["param"] == "group_by"
    assert error_of(client.get("/api/v1/usage", {"from": "2026-02-01", "to": "2026-01-01"}), 400)["param"] == "from"


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ({"to": "9999-12-31"}, "to"),
        ({"from": "0001-01-01"}, "from"),
        ({"from": "0001-01-01", "to": "2026-01-02"}, "from"),
        ({"to": "2026-13-01"}, "to"),
        ({"from": "2000-01-01", "to": "2026-01-01"}, "from"),  # past the range cap
    ],
)
def test_usage_dates_out_of_range_are_a_400_naming_the_parameter(
    holder: Any, query: dict[str, str], param: str
) -> None:
    client, _, _ = holder()
    assert error_of(client.get("/api/v1/usage", query), 400)["param"] == param


def test_operator_adds_tops_up_lists_and_deletes_users(operator: Client) -> None:
    added = operator.post("/admin/users/add", {"name": "carol", "tier": "vip"}, content_type="application/json").json()
    user_id, token = added["user_id"], added["token"]
    carol = Client(headers={"Authorization": f"Bearer {token}"})
    assert carol.get("/api/v1/membership").json()["tier"] == "vip"

    topup = {"user_id": user_id, "amount": "5.25", "idempotency_key": "invoice-1"}
    first = operator.post("/admin/topup", topup, content_type="application/json").json()
    again = operator.post("/admin/topup", topup, content_type="application/json").json()
    assert first["applied"] is True and again["applied"] is False
    assert again["balance"] == 5.25
    assert LedgerEntry.objects.filter(account_id=user_id, kind="topup").count() == 1

    users = operator.get("/admin/users").json()["users"]
    listed = next(u for u in users if u["user_id"] == user_id)
    assert listed["token"].endswith("…") and token not in listed["token"] and token.startswith(listed["token"][:-1])

    assert operator.post("/admin/users/delete", {"user_id": user_id}, content_type="application/json").json() == {
        "message": "User deleted"
    }
    assert error_of(carol.get("/api/v1/balance"), 401)["code"] == "invalid_api_key"
    assert error_of(operator.post("/admin/users/delete", {"user_id": user_id}, content_type="application/json"), 404)


def test_operator_auth_and_bad_input(operator: Client, settings: Any) -> None:
    anonymous = Client()
    assert error_of(anonymous.get("/admin/users"), 401)
    assert error_of(Client(headers={"Authorization": "Bearer wrong"}).get("/admin/users"), 401)
    assert anonymous.get("/admin/users", {"admin_key": ADMIN_KEY}).status_code == 200
    body = {"admin_key": ADMIN_KEY, "name": "dave"}
    assert anonymous.post("/admin/users/add", body, content_type="application/json").status_code == 201
    assert (
        error_of(
            operator.post(
                "/admin/topup", {"user_id": 1, "amount": "-3", "idempotency_key": "k"}, content_type="application/json"
            ),
            400,
        )["param"]
        == "amount"
    )
    assert (
        error_of(operator.post("/admin/users/add", {"tier": "gold"}, content_type="application/json"), 400)["param"]
        == "tier"
    )
    settings.GHOSTGPT = {**settings.GHOSTGPT, "ADMIN_KEY": ""}
    assert error_of(operator.get("/admin/users"), 403)


# --- scopes: a key never grants more than it was given ------------------------------------


def as_key(secret: str, form: str = "bearer") -> Client:
    headers = {
        "bearer": {"Authorization": f"Bearer {secret}"},
        "raw": {"Authorization": secret},
        "x-api-key": {"x-api-key": secret},
        "x-goog-api-key": {"x-goog-api-key": secret},
    }[form]
    return Client(headers=headers)


def make_key(client: Client, **body: Any) -> dict[str, Any]:
    response = client.post("/api/v1/keys", {"name": "k", **body}, content_type="application/json")
    assert response.status_code == 201, response.content
    return response.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize("form", ["bearer", "raw", "x-api-key", "x-goog-api-key"])
def test_a_restricted_key_cannot_mint_or_widen_keys(holder: Any, form: str) -> None:
    root, _, _ = holder()
    soon = timezone.now() + timedelta(days=1)
    narrow = make_key(root, models=["ghostgpt"], expires_at=soon.isoformat(), rpm=5)
    client = as_key(narrow["key"], form)
    # An unrestricted request inherits the maker's restrictions instead of escaping them.
    child = make_key(client)
    assert child["models"] == ["ghostgpt"] and child["rpm"] == 5 and child["expires_at"]
    refusals = [
        client.post("/api/v1/keys", {"name": "x", "models": ["gpt-4o"]}, content_type="application/json"),
        client.post(
            "/api/v1/keys",
            {"name": "x", "expires_at": (soon + timedelta(days=9)).isoformat()},
            content_type="application/json",
        ),
        client.post("/api/v1/keys", {"name": "x", "rpm": 6}, content_type="application/json"),
        client.patch(f"/api/v1/keys/{narrow['id']}", {"models": ["gpt-4o"]}, content_type="application/json"),
        client.patch(f"/api/v1/keys/{narrow['id']}", {"rpm": 1000}, content_type="application/json"),
        client.patch(f"/api/v1/keys/{root_id(root)}", {"name": "mine"}, content_type="application/json"),
        client.delete(f"/api/v1/keys/{root_id(root)}"),
    ]
    for response in refusals:
        assert error_of(response, 403)["type"] == "permission_error"
    # Clearing its own allow-list keeps it: an empty list means "the maker's models".
    cleared = client.patch(f"/api/v1/keys/{narrow['id']}", {"models": []}, content_type="application/json").json()
    assert cleared["models"] == ["ghostgpt"]
    assert ApiKey.objects.get(pk=narrow["id"]).allowed_models == ["ghostgpt"]


def root_id(client: Client) -> int:
    return min(k["id"] for k in client.get("/api/v1/keys").json()["data"])


def test_an_inference_key_cannot_manage_keys(holder: Any) -> None:
    root, _, _ = holder()
    inference = as_key(make_key(root, scope="inference")["key"])
    assert error_of(inference.get("/api/v1/keys"), 403)["code"] == "scope_exceeded"
    assert error_of(inference.post("/api/v1/keys", {"name": "x"}, content_type="application/json"), 403)
    assert inference.get("/api/v1/balance").status_code == 200  # reads of its own account still work


def test_a_key_the_operator_disabled_stays_disabled(holder: Any) -> None:
    root, _, _ = holder()
    made = make_key(root)
    ApiKey.objects.filter(pk=made["id"]).update(is_active=False, disabled_by_operator=True)
    error = error_of(root.patch(f"/api/v1/keys/{made['id']}", {"active": True}, content_type="application/json"), 403)
    assert "operator" in error["message"]
    ApiKey.objects.filter(pk=made["id"]).update(is_active=True)  # even with is_active on, the operator's flag wins
    assert error_of(as_key(made["key"]).get("/api/v1/balance"), 401)["code"] == "api_key_disabled"
