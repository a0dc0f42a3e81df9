"""API keys: hashed at rest, shown once, every header form accepted."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.test import RequestFactory

from chat.api.auth import presented_key
from chat.models import ApiKey, hash_api_key
from chat.selectors import api_key_is_active
from chat.services import account_create_with_key

pytestmark = pytest.mark.django_db


def test_keys_are_stored_hashed_with_a_display_prefix() -> None:
    key, secret = account_create_with_key(name="ci")
    row = ApiKey.objects.get(pk=key.pk)
    assert secret.startswith("gg-") and len(secret) > 40
    assert row.key_hash == hash_api_key(secret) and secret not in row.key_hash
    assert secret.startswith(row.prefix) and len(row.prefix) < len(secret) // 3
    assert not ApiKey.objects.filter(key_hash__contains=secret).exists()
    assert api_key_is_active(secret=secret)
    row.is_active = False
    row.save()
    assert not api_key_is_active(secret=secret)


def test_create_api_key_prints_the_key_alone_on_the_last_line() -> None:
    out, err = io.StringIO(), io.StringIO()
    call_command("create_api_key", "--name", "script", stdout=out, stderr=err)
    last = out.getvalue().strip().splitlines()[-1]
    assert last.startswith("gg-") and " " not in last
    assert api_key_is_active(secret=last)
    assert last not in err.getvalue()


def test_dev_api_key_is_created_once(settings: object, tmp_path: object) -> None:
    settings.DATA_DIR = tmp_path  # type: ignore[attr-defined]
    first, second = io.StringIO(), io.StringIO()
    call_command("dev_api_key", stdout=first)
    call_command("dev_api_key", stdout=second)
    assert first.getvalue() == second.getvalue()
    assert ApiKey.objects.filter(name="dev").count() == 1


@pytest.mark.parametrize(
    "headers, expected",
    [
        ({"HTTP_AUTHORIZATION": "Bearer gg-abc"}, "gg-abc"),
        ({"HTTP_AUTHORIZATION": "bearer   gg-abc "}, "gg-abc"),
        ({"HTTP_AUTHORIZATION": "gg-abc"}, "gg-abc"),
        ({"HTTP_X_API_KEY": "gg-abc"}, "gg-abc"),
        ({"HTTP_X_GOOG_API_KEY": "gg-abc"}, "gg-abc"),
        ({"HTTP_AUTHORIZATION": "Basic dXNlcjpwYXNz"}, None),
        ({"HTTP_AUTHORIZATION": "Bearer "}, None),
        ({}, None),
    ],
)
def test_presented_key_forms(headers: dict[str, str], expected: str | None) -> None:
    assert presented_key(RequestFactory().get("/v1/models", **headers)) == expected


def test_the_compiled_auth_query_reads_what_the_orm_reads() -> None:
    """/v1 authenticates with the ORM's query compiled once per thread: for every way a key
    gets its limits (its own tier, its account's, overrides, unlimited) and every state
    (expiry and membership times, disabled, allowed models) it sees what the ORM sees."""
    from datetime import timedelta

    from django.utils import timezone

    from chat.api.auth import Principal, check_usable
    from chat.api.errors import ApiError
    from chat.models import Account, Tier
    from chat.selectors import api_key_auth_sync, api_key_get_for_auth_sync

    slow = Tier.objects.create(name="slow", rpm=7, tpm=700)
    open_tier = Tier.objects.create(name="open", rpm=None, tpm=None)
    soon = timezone.now() + timedelta(days=3)
    cases = [
        {},
        {"tier": slow},
        {"tier": open_tier},
        {"tier": slow, "rpm_override": 3},
        {"tpm_override": 11},
        {"allowed_models": ["gpt-4o", "ghostgpt"], "expires_at": soon},
        {"expires_at": timezone.now() - timedelta(seconds=1)},
        {"is_active": False},
        {"disabled_by_operator": True},
    ]
    for number, fields in enumerate(cases):
        key, secret = account_create_with_key(name=f"case-{number}")
        ApiKey.objects.filter(pk=key.pk).update(**fields)
        if number == 2:
            Account.objects.filter(pk=key.account_id).update(tier=slow, membership_expires_at=soon)
        if number == 3:
            Account.objects.filter(pk=key.account_id).update(membership_expires_at=timezone.now())
        fast, orm = api_key_auth_sync(secret=secret), api_key_get_for_auth_sync(secret=secret)
        assert fast is not None and orm is not None
        assert Principal.authenticated(fast) == Principal.of(orm), fields
        assert fast.expires_at == orm.expires_at and fast.membership_expires_at == orm.account.membership_expires_at
        verdicts = []
        for row in (fast, orm):
            try:
                check_usable(row)
                verdicts.append("ok")
            except ApiError as error:
                verdicts.append(error.code)
        assert verdicts[0] == verdicts[1], (fields, verdicts)
    assert api_key_auth_sync(secret="gg-not-a-key") is None
