"""The console's Alerts tab in Debian's Chromium against a real server: a threshold saved, a
webhook endpoint added (its secret shown once), "Send test event" — the loopback receiver
verifies it with the reference library — and the delivery log shows it delivered."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from chat.tests.browser.conftest import Tab, browser, playwright, wait_until  # noqa: F401  (fixtures)
from chat.tests.live import LiveServer, manage

from .test_alerts import Receiver

ADMIN_KEY = "adm-alerts-browser-" + "k" * 30


@pytest.fixture(scope="module")
def hook() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.server.shutdown()


@pytest.fixture(scope="module")
def site(hook: Receiver) -> Iterator[LiveServer]:
    env = {"GHOSTGPT_FETCH_ALLOW": f"127.0.0.1:{hook.server.server_port}", "GHOSTGPT_ADMIN_KEY": ADMIN_KEY}
    server = LiveServer(env=env)
    yield server
    server.stop()


def test_a_webhook_added_in_the_console_receives_a_test_event(
    browser: Any,  # noqa: F811
    site: LiveServer,
    hook: Receiver,
) -> None:
    secret = manage(site, "create_api_key", "--name", "alerted", "--tier", "unlimited").strip().splitlines()[-1]
    tab = Tab(browser, site.base_url)
    page = tab.open("/console")
    page.fill("#signin-key", secret)
    page.click("#signin button[type=submit]")
    page.wait_for_selector("body[data-ready=true]")
    page.click("#tabs a[data-tab=alerts]")
    page.wait_for_selector("#webhooks-table tbody tr")  # the tab has loaded what is saved
    page.fill("#alert-balance", "5")
    page.click("#alert-settings button[type=submit]")
    wait_until(page, "document.getElementById('alert-saved').textContent.length > 0", 10_000)

    page.fill("#webhook-url", hook.url)
    page.check("#webhook-events input[value='balance.low']")
    page.click("#webhook-form button[type=submit]")
    page.wait_for_selector("#webhook-secret-value")
    hook.secret = page.inner_text("#webhook-secret-value")
    assert page.input_value("#alert-balance") == "5"  # saved: read back when the tab reloaded
    page.click("#webhooks-table button.send-test")
    page.wait_for_selector("#deliveries-table td[data-status=delivered]", timeout=15_000)
    assert [event["type"] for event in hook.received] == ["test"]
    tab.shot("console-alerts")
    tab.close()
    assert tab.errors == []

    # The operators' endpoint, in the ops console (upstream events, and a test event).
    ops_tab = Tab(browser, site.base_url)
    ops = ops_tab.open("/console/ops")
    ops.fill("#signin-key", ADMIN_KEY)
    ops.click("#signin button[type=submit]")
    ops.wait_for_selector("body[data-ready=true]")
    ops.click("#tabs a[data-tab=webhooks]")
    ops.wait_for_selector("#ops-webhooks-table tbody tr")
    ops.fill("#ops-webhook-url", hook.url)
    ops.click("#ops-webhook-form button[type=submit]")
    ops.wait_for_selector("#ops-webhook-secret code")
    hook.secret = ops.inner_text("#ops-webhook-secret code")
    ops.click("#ops-webhooks-table button.send-test")
    wait_until(
        ops, "document.querySelector('#ops-webhooks-table td.deliveries').textContent.includes('delivered')", 15_000
    )
    assert [event["type"] for event in hook.received] == ["test", "test"]
    ops_tab.close()
    assert ops_tab.errors == []
