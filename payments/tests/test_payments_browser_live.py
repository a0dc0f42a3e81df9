"""Add funds in Debian's Chromium: the console's Overview → Add funds → the provider's payment
page (the loopback double's) → Pay → back in the console, the payment paid and the balance
up — through Stripe, and through YooKassa in roubles with a receipt address; the operator
sees both payments."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from chat.tests.browser.conftest import Tab, browser, playwright, wait_until  # noqa: F401  (fixtures)
from chat.tests.live import LiveServer, manage

from .doubles import StripeDouble, YooKassaDouble
from .test_payments_live import doubles, payment_env  # noqa: F401  (the doubles' fixture)

ADMIN_KEY = "adm-payments-" + "k" * 30


@pytest.fixture(scope="module")
def site(doubles: tuple[StripeDouble, YooKassaDouble]) -> Iterator[LiveServer]:  # noqa: F811
    stripe, yookassa = doubles
    server = LiveServer(env={**payment_env(stripe, yookassa), "GHOSTGPT_ADMIN_KEY": ADMIN_KEY})
    stripe.webhook_url = server.base_url + "/payments/webhooks/stripe"
    yookassa.webhook_url = server.base_url + "/payments/webhooks/yookassa"
    yield server
    server.stop()


def _balance(page: Any) -> str:
    return str(page.inner_text("#ov-balance"))


def test_add_funds_through_each_provider_and_back(
    browser: Any,  # noqa: F811
    site: LiveServer,
    doubles: tuple[StripeDouble, YooKassaDouble],  # noqa: F811
) -> None:
    secret = manage(site, "create_api_key", "--name", "payer", "--tier", "unlimited").strip().splitlines()[-1]
    budget = {"budget": {"amount": "30", "period": "month"}}  # shown on the Overview beside the balance
    headers = {"Authorization": f"Bearer {secret}"}
    assert httpx.put(site.base_url + "/api/v1/budget", json=budget, headers=headers).status_code == 200
    tab = Tab(browser, site.base_url)
    page = tab.open("/console")
    page.fill("#signin-key", secret)
    page.click("#signin button[type=submit]")
    page.wait_for_selector("#funds:not([hidden])")
    page.wait_for_selector("#budget-cards [data-budget=account] meter")
    assert "30.00" in page.inner_text("#budget-cards [data-budget=account]")
    before = _balance(page)

    page.click("#funds-presets button:has-text('10')")
    page.select_option("#funds-provider", "stripe")
    page.click("#funds-pay")
    page.wait_for_url(f"{doubles[0].base_url}/c/pay/**")
    assert "Pay 10.00 USD" in page.inner_text("h1")
    page.click("#pay")
    page.wait_for_url(f"{site.base_url}/console**")
    wait_until(page, "document.getElementById('funds-status').textContent.includes('Paid')", 15_000)
    wait_until(page, f"document.getElementById('ov-balance').textContent !== {before!r}", 15_000)
    assert "10" in _balance(page)
    page.wait_for_selector("#payments-table td[data-status=succeeded]")
    tab.shot("console-add-funds")

    page.fill("#funds-amount", "5.50")
    page.select_option("#funds-provider", "yookassa")
    assert page.is_visible("#funds-email-label")  # a receipt needs an address: a pasted key has none
    page.fill("#funds-email", "payer@example.com")
    page.click("#funds-pay")
    page.wait_for_url(f"{doubles[1].base_url}/pay/**")
    assert "Pay 500.00 RUB" in page.inner_text("h1")  # 5.50 / 0.011
    page.click("#pay")
    page.wait_for_url(f"{site.base_url}/console**")
    wait_until(page, "document.querySelectorAll('#payments-table td[data-status=succeeded]').length === 2", 15_000)
    assert "15.5" in _balance(page)

    # The receipt page of the first payment.
    page.click("#payments-table tbody tr:last-child a")
    page.wait_for_selector("#receipt")
    assert "10.00 USD" in page.inner_text("#receipt")

    ops_tab = Tab(browser, site.base_url)
    ops = ops_tab.open("/console/ops")
    ops.fill("#signin-key", ADMIN_KEY)
    ops.click("#signin button[type=submit]")
    wait_until(ops, "document.querySelectorAll('#ops-payments-table tbody tr[data-payment]').length === 2", 15_000)
    for opened in (tab, ops_tab):
        opened.close()
    assert tab.errors == [] and ops_tab.errors == []
