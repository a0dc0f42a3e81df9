"""The flows in Debian's Chromium against a real server, with its mail going to a real SMTP
server on loopback (aiosmtpd): sign up → verify by the received mail → anonymous chat
claimed → TOTP enrolled with a real code → signed out → signed in with TOTP on a second
browser that sees the same chats → the console without a key; a passkey (Chromium's virtual
authenticator) signs in with no password."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from typing import Any

import pyotp
import pytest
from aiosmtpd.controller import Controller

from chat.tests.browser.conftest import Tab, browser, playwright, wait_until  # noqa: F401  (fixtures)
from chat.tests.live import LiveServer

PASSWORD = "a long passphrase 7"
LINK = re.compile(r"https?://\S+/accounts/confirm-email/\S+/")


class Inbox:
    """What the SMTP server received."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"

    def link_for(self, address: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in reversed(self.messages):
                body = (
                    message.get_payload(decode=True)
                    if not message.is_multipart()
                    else message.get_payload(0).get_payload(decode=True)
                )  # type: ignore[union-attr]
                if address in str(message["To"]) and (found := LINK.search(body.decode())):
                    return found.group(0)
            time.sleep(0.1)
        raise AssertionError(f"no verification mail for {address}: {[m['Subject'] for m in self.messages]}")


@pytest.fixture(scope="module")
def inbox() -> Iterator[tuple[Inbox, int]]:
    handler = Inbox()
    with socket.socket() as probe:  # a free port (aiosmtpd's own check cannot use port 0)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


@pytest.fixture(scope="module")
def site(inbox: tuple[Inbox, int]) -> Iterator[LiveServer]:
    _, port = inbox
    server = LiveServer(
        env={"GHOSTGPT_EMAIL_HOST": "127.0.0.1", "GHOSTGPT_EMAIL_PORT": str(port), "GHOSTGPT_EMAIL_SECURITY": "none"}
    )
    yield server
    server.stop()


def _tab(browser: Any, site: LiveServer) -> Tab:  # noqa: F811
    return Tab(browser, site.base_url)


def _new_conversation(page: Any, title: str) -> None:
    status = page.evaluate(
        """async (title) => {
            const csrf = document.cookie.match(/csrftoken=([^;]+)/)[1];
            const headers = {'Content-Type': 'application/json', 'X-CSRFToken': csrf};
            const r = await fetch('/api/conversations', {method: 'POST', headers, body: JSON.stringify({title})});
            return r.status; }""",
        title,
    )
    assert status == 201


def _sign_up(page: Any, mails: Inbox, email: str) -> None:
    """From the chat page: sign up, then the link from the mail the SMTP server got; back on the chat."""
    page.click("#sign-in")
    page.click("a[href*='/accounts/signup/']")
    fill_sign_up(page, mails, email)


def fill_sign_up(page: Any, mails: Inbox, email: str) -> None:
    """On the sign-up page: the form, then the link from the mail the SMTP server got."""
    page.fill("input[name=email]", email)
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.click("form[action*='/accounts/signup/'] button[type=submit]")
    page.wait_for_url("**/accounts/confirm-email/")
    page.goto(mails.link_for(email))
    page.click("main form button[type=submit]")
    page.wait_for_selector("body[data-ready=true]")


def _sign_in(page: Any, email: str, password: str = PASSWORD) -> None:
    page.goto("/accounts/login/")
    page.fill("input[name=login]", email)
    page.fill("input[name=password]", password)
    page.click("form[action='/accounts/login/'] button[type=submit]")


def _totp_stage(page: Any, secret: str) -> None:
    page.wait_for_url("**/accounts/2fa/authenticate/")
    page.fill("input[name=code]", pyotp.TOTP(secret).now())
    page.click("main form button[type=submit]")


def test_sign_up_verify_totp_and_a_second_browser(
    browser: Any,  # noqa: F811
    site: LiveServer,
    inbox: tuple[Inbox, int],
) -> None:
    mails, _ = inbox
    laptop = _tab(browser, site)
    page = laptop.open("/")
    _new_conversation(page, "asked before signing up")
    _sign_up(page, mails, "mia@example.com")
    page.wait_for_selector("#conversations li:has-text('asked before signing up')", timeout=15_000)
    assert page.inner_text("#person") == "mia@example.com"

    page.goto("/accounts/2fa/totp/activate/")
    if "/accounts/reauthenticate/" in page.url:
        page.fill("input[name=password]", PASSWORD)
        page.click("main form button[type=submit]")
        page.wait_for_url("**/accounts/2fa/totp/activate/")
    secret = page.input_value("#authenticator_secret")
    page.fill("input[name=code]", pyotp.TOTP(secret).now())
    page.click("form[action*='totp/activate'] button[type=submit]")
    page.wait_for_url("**/recovery-codes/**")
    page.goto("/accounts/profile/")
    assert "totp" in page.inner_text("main")
    laptop.shot("people-profile")
    page.click("header form[action='/accounts/logout/'] button")
    page.wait_for_selector("#sign-in")

    # A second browser: the password, then the app's code; the same chats.
    phone = _tab(browser, site)
    other = phone.open("/")
    _sign_in(other, "mia@example.com")
    _totp_stage(other, secret)
    other.wait_for_selector("#conversations li:has-text('asked before signing up')", timeout=15_000)
    # The console opens on the person's own account: nothing to paste.
    other.goto("/console")
    other.wait_for_selector("#signin", state="hidden", timeout=15_000)
    # (the sign-in section starts hidden: wait for the session's line, not just for that)
    wait_until(other, "document.body.innerText.includes('mia@example.com')", 15_000)
    for tab in (laptop, phone):
        tab.close()
    assert laptop.errors == [] and phone.errors == []


def test_a_passkey_signs_in_without_a_password(browser: Any, site: LiveServer, inbox: tuple[Inbox, int]) -> None:  # noqa: F811
    mails, _ = inbox
    # WebAuthn takes no IP address as the relying party's id: the same server, as localhost.
    tab = Tab(browser, site.base_url.replace("127.0.0.1", "localhost"))
    page = tab.open("/accounts/signup/")
    cdp = tab.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    page.fill("input[name=email]", "noa@example.com")
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.click("form[action*='/accounts/signup/'] button[type=submit]")
    page.wait_for_url("**/accounts/confirm-email/")
    page.goto(mails.link_for("noa@example.com").replace("127.0.0.1", "localhost"))
    page.click("main form button[type=submit]")
    page.wait_for_selector("body[data-ready=true]")

    page.goto("/accounts/2fa/webauthn/add/?passwordless")
    if "/accounts/reauthenticate/" in page.url:
        page.fill("input[name=password]", PASSWORD)
        page.click("main form button[type=submit]")
        page.wait_for_url("**/accounts/2fa/webauthn/add/**")
    page.fill("input[name=name]", "laptop passkey")
    page.check("input[name=passwordless]")
    page.click("#mfa_webauthn_add")
    page.wait_for_url(lambda url: "/webauthn/add" not in url, timeout=20_000)
    page.goto("/accounts/profile/")
    page.click("header form[action='/accounts/logout/'] button")
    page.wait_for_selector("#sign-in")

    page.goto("/accounts/login/")
    page.click("#passkey_login")
    page.wait_for_url(lambda url: "/accounts/login/" not in url, timeout=20_000)
    page.goto("/accounts/profile/")
    assert page.inner_text("#person-email") == "noa@example.com"
    tab.close()
    assert tab.errors == []


def test_delete_my_data_offers_the_export_then_deletes_the_account(
    browser: Any,  # noqa: F811
    site: LiveServer,
    inbox: tuple[Inbox, int],
) -> None:
    mails, _ = inbox
    tab = _tab(browser, site)
    try:
        page = tab.open("/")
        _sign_up(page, mails, "leo@example.com")
        _new_conversation(page, "to be deleted")

        page.goto("/accounts/profile/")
        page.click("#erasure-link")
        page.wait_for_url("**/accounts/reauthenticate/**")  # the password again, however recent the sign-in
        page.fill("input[name=password]", PASSWORD)
        page.click("main form button[type=submit]")
        page.wait_for_url("**/accounts/delete/")
        assert page.get_attribute("#erasure-export", "href") == "/api/export"  # the copy is offered first
        with page.expect_download() as download:
            page.click("#erasure-export")
        assert download.value.suggested_filename.endswith(".zip")
        tab.shot("people-delete-my-data")

        page.fill("#erase-account input[name=email]", "leo@example.com")
        page.click("#erase-account button[type=submit]")
        page.wait_for_selector("#erasure-gone")
        page.goto("/")
        page.wait_for_selector("body[data-ready=true]")
        assert page.is_visible("#sign-in") and page.locator("#conversations li").count() == 0
        _sign_in(page, "leo@example.com")  # the sign-in is gone too
        page.wait_for_selector("main form .errorlist, main [role=alert], main .error", timeout=10_000)
        assert "/accounts/login/" in page.url
    finally:
        tab.close()
