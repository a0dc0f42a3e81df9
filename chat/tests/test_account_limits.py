"""A tier's limits are the account's: more keys never multiply them. A key's own rpm/tpm and
its own tier only narrow them; the number of API keys an account may hold is capped (browser
sessions and agent tokens aside); tool jobs are limited per account too."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from chat.billing import ratelimit
from chat.models import ApiKey, Tier
from chat.services import account_create_with_key, api_key_create

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@pytest.fixture(autouse=True)
def tiers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The seeded tiers (a transactional test starts from an empty database), and a fresh
    in-memory limiter (ids are reused after the flush)."""
    monkeypatch.setattr(ratelimit, "_limiter", None)
    for name, rpm, tpm in (("regular", 12, 40_000), ("vip", 60, 200_000), ("anonymous", 10, 30_000)):
        Tier.objects.get_or_create(name=name, defaults={"rpm": rpm, "tpm": tpm})


BAD_CHAT = {"model": "ghostgpt"}  # no messages: counted, then a 400, nothing generated


def status(secret: str) -> int:
    client = Client(headers={"Authorization": f"Bearer {secret}"})
    return int(client.post("/v1/chat/completions", BAD_CHAT, content_type="application/json").status_code)


def test_more_keys_do_not_multiply_the_account_rpm() -> None:
    key, first = account_create_with_key(name="multi")  # the regular tier: 12 a minute
    assert key.account.tier.rpm == 12
    secrets = [first] + [api_key_create(account=key.account, name=f"k{n}")[1] for n in range(3)]
    statuses = [status(secrets[n % 4]) for n in range(13)]
    assert statuses[:12] == [400] * 12 and statuses[12] == 429, statuses


def test_a_key_cap_narrows_and_a_wider_key_tier_does_not_widen() -> None:
    key, owner = account_create_with_key(name="narrow")
    capped, capped_secret = api_key_create(account=key.account, name="capped")
    ApiKey.objects.filter(pk=capped.pk).update(rpm_override=3)
    assert [status(capped_secret) for _ in range(4)] == [400, 400, 400, 429]
    assert status(owner) == 400  # the account still has room: 4 of its 12 used
    wide, wide_secret = api_key_create(account=key.account, name="wide")
    ApiKey.objects.filter(pk=wide.pk).update(tier=Tier.objects.get(name="vip"))  # 60 a minute
    results = [status(wide_secret) for _ in range(8)]
    assert results.count(400) == 7 and results[-1] == 429, results  # 5 + 7 = the account's 12


def test_the_number_of_api_keys_is_capped_per_account(settings: Any) -> None:
    settings.GHOSTGPT = {**settings.GHOSTGPT, "MAX_API_KEYS": 3}
    key, owner = account_create_with_key(name="many")
    client = Client(headers={"Authorization": f"Bearer {owner}"})
    made = [client.post("/api/v1/keys", {"name": f"k{n}"}, content_type="application/json") for n in range(3)]
    assert [r.status_code for r in made] == [201, 201, 429]
    error = made[-1].json()["error"]
    assert error["code"] == "too_many_keys" and "3" in error["message"]
    # Browser sessions are not API keys: they never count against it.
    assert Client().post("/api/session/bootstrap").status_code == 201
    # A tier may set its own cap.
    Tier.objects.filter(pk=key.account.tier_id).update(max_api_keys=5)
    assert client.post("/api/v1/keys", {"name": "k9"}, content_type="application/json").status_code == 201
