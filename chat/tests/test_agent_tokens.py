"""Agent tokens honour their expiry and the operator's switch, like API keys."""

from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.utils import timezone

from chat.agents.selectors import agent_key_get
from chat.agents.services import agent_token_create
from chat.models import ApiKey


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_an_expired_or_operator_disabled_agent_token_cannot_connect() -> None:
    key, secret = agent_token_create(name="worker")
    assert async_to_sync(agent_key_get)(secret=secret) is not None
    ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert async_to_sync(agent_key_get)(secret=secret) is None
    ApiKey.objects.filter(pk=key.pk).update(expires_at=None, disabled_by_operator=True)
    assert async_to_sync(agent_key_get)(secret=secret) is None
