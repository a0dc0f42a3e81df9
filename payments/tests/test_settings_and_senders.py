"""Refusals that need no provider: a provider charging in another currency without the
operator's rate stops the server at start; a "YooKassa notification" from an address that is
not YooKassa's is refused before anything is fetched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.test import RequestFactory

from payments.providers.base import ProviderRefused
from payments.providers.yookassa_redirect import YooKassaProvider

ROOT = Path(__file__).resolve().parents[2]


def _check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_another_currency_without_a_rate_refuses_to_start() -> None:
    refused = _check({"GHOSTGPT_YOOKASSA_SHOP_ID": "1", "GHOSTGPT_YOOKASSA_SECRET_KEY": "s"})
    assert refused.returncode != 0 and "GHOSTGPT_YOOKASSA_RATE" in refused.stderr
    wrong = _check(
        {"GHOSTGPT_STRIPE_SECRET_KEY": "sk", "GHOSTGPT_STRIPE_WEBHOOK_SECRET": "w", "GHOSTGPT_STRIPE_RATE": "-1"}
    )
    assert wrong.returncode != 0 and "GHOSTGPT_STRIPE_RATE" in wrong.stderr
    unsigned = _check({"GHOSTGPT_STRIPE_SECRET_KEY": "sk"})
    assert unsigned.returncode != 0 and "GHOSTGPT_STRIPE_WEBHOOK_SECRET" in unsigned.stderr
    fine = _check(
        {"GHOSTGPT_YOOKASSA_SHOP_ID": "1", "GHOSTGPT_YOOKASSA_SECRET_KEY": "s", "GHOSTGPT_YOOKASSA_RATE": "0.011"}
    )
    assert fine.returncode == 0, fine.stderr


@pytest.mark.parametrize("sender", ["203.0.113.9", "185.71.78.1", "::1"])
def test_a_notification_from_elsewhere_is_refused(sender: str, settings: Any) -> None:
    config = {**settings.PAYMENTS["YOOKASSA"], "SHOP_ID": "1", "SECRET_KEY": "s", "API_URL": "http://127.0.0.1:9/v3"}
    provider = YooKassaProvider(config)  # YooKassa's documented addresses only
    request = RequestFactory().post(
        "/payments/webhooks/yookassa",
        data=b'{"type": "notification", "event": "payment.succeeded", "object": {"id": "x"}}',
        content_type="application/json",
        REMOTE_ADDR=sender,
    )
    with pytest.raises(ProviderRefused):
        provider.notifications(request)  # refused before the API (port 9: nothing there) is asked
