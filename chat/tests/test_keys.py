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
