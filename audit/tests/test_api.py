"""Who reads the trail: a key holder their account's (`GET /api/v1/audit`), an operator
everything (the ops console, filterable, CSV)."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from django.test import Client

from audit.models import AuditEvent
from chat.services import account_create_with_key, api_key_create

pytestmark = pytest.mark.django_db
ADMIN_KEY = "adm-" + "k" * 40


def _get(path: str, secret: str) -> Any:
    return Client().get(path, HTTP_AUTHORIZATION=f"Bearer {secret}")


def test_a_key_reads_its_own_accounts_trail_and_actions_name_the_key(settings: Any) -> None:
    settings.GHOSTGPT = {**settings.GHOSTGPT, "ADMIN_KEY": ADMIN_KEY}
    key, secret = account_create_with_key(name="acme")
    _, other_secret = account_create_with_key(name="other")
    made = Client().post(
        "/api/v1/keys", {"name": "ci"}, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {secret}"
    )
    assert made.status_code == 201, made.content
    body = _get("/api/v1/audit", secret).json()
    created = [row for row in body["data"] if row["action"] == "key.create" and row["actor_kind"] == "key"]
    assert created and created[0]["actor"] == f"key:{key.prefix}"
    assert made.json().get("key", "")[:12] not in str(body)  # the new secret is not in it
    # Another account sees none of it.
    assert all(row["account_id"] != key.account_id for row in _get("/api/v1/audit", other_secret).json()["data"])
    # Top-ups by the admin key name its fingerprint.
    topped = Client().post(
        "/admin/topup",
        {"user_id": key.account_id, "amount": "5", "idempotency_key": "t-1"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {ADMIN_KEY}",
    )
    assert topped.status_code in (200, 201), topped.content
    top_up = AuditEvent.objects.get(action="topup", account_id=key.account_id)
    assert top_up.actor_kind == "admin" and ADMIN_KEY not in top_up.actor


def test_an_inference_key_may_not_read_the_trail() -> None:
    key, _ = account_create_with_key(name="acme")
    _, inference = api_key_create(account=key.account, name="infer", scope="inference")
    response = _get("/api/v1/audit", inference)
    assert response.status_code == 403 and response.json()["error"]["type"]


def test_operators_filter_and_export_csv(settings: Any) -> None:
    settings.GHOSTGPT = {**settings.GHOSTGPT, "ADMIN_KEY": ADMIN_KEY}
    key, _ = account_create_with_key(name="acme")
    ops = Client()
    ops.get("/console/ops")
    token = ops.cookies["csrftoken"].value
    assert (
        ops.post(
            "/console/api/ops/session",
            {"admin_key": ADMIN_KEY},
            content_type="application/json",
            HTTP_X_CSRFTOKEN=token,
        ).status_code
        == 201
    )
    page = ops.get(f"/console/api/ops/audit?account={key.account_id}&action=key").json()
    assert page["data"] and {row["action"] for row in page["data"]} <= {"key.create", "key.update", "key.delete"}
    assert ops.get("/console/api/ops/audit?limit=0").status_code == 400
    export = ops.get("/console/api/ops/audit.csv?action=account")
    assert export.status_code == 200 and export["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(export.content.decode())))
    assert rows[0][:3] == ["seq", "at", "action"] and any(r[2] == "account.create" for r in rows[1:])
    assert Client().get("/console/api/ops/audit").status_code in (401, 403)  # no operator, no trail
