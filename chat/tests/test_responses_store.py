"""Stored Responses API responses expire: the periodic task removes them, and an expired
one is no longer readable even before it runs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.http import Http404
from django.utils import timezone

from chat.models import StoredResponse
from chat.selectors import stored_response_get
from chat.services import account_create_with_key
from chat.tasks import purge_expired_responses

pytestmark = pytest.mark.django_db


def stored(account_id: int, name: str, expires_in: timedelta) -> StoredResponse:
    return StoredResponse.objects.create(
        id=name, account_id=account_id, model="m", body={"id": name}, expires_at=timezone.now() + expires_in
    )


def test_the_periodic_task_removes_expired_responses_only() -> None:
    key, _ = account_create_with_key(name="owner")
    stored(key.account_id, "resp_old", timedelta(seconds=-1))
    stored(key.account_id, "resp_new", timedelta(days=1))
    assert purge_expired_responses.apply().get() == 1
    assert list(StoredResponse.objects.values_list("id", flat=True)) == ["resp_new"]


def test_an_expired_response_is_a_404_before_the_purge() -> None:
    key, _ = account_create_with_key(name="owner")
    stored(key.account_id, "resp_old", timedelta(seconds=-1))
    with pytest.raises(Http404):
        async_to_sync(stored_response_get)(account_id=key.account_id, response_id="resp_old")
    other, _ = account_create_with_key(name="other")
    stored(key.account_id, "resp_mine", timedelta(days=1))
    with pytest.raises(Http404):
        async_to_sync(stored_response_get)(account_id=other.account_id, response_id="resp_mine")
