"""Organizations in Debian's Chromium against a real server whose mail goes to a real SMTP
server on loopback: the owner invites by mail, the invited person signs up and accepts from
the link in the mail, makes a key on the organization's wallet and streams with it (from a
loopback upstream that sends a chunk every 0.2 s for a minute); the admin clicks "Disable
keys" and the member's running stream ends with `api_key_revoked`."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from chat.tests.browser.conftest import Tab, browser, playwright  # noqa: F401  (fixtures)
from chat.tests.conftest import fake  # noqa: F401  (the loopback upstream fixture)
from chat.tests.fake_upstream import FakeUpstream
from chat.tests.live import LiveServer, manage, operator_call

from .test_people_browser_live import Inbox, fill_sign_up, inbox  # noqa: F401  (the SMTP fixture)

ADMIN_KEY = "admin-key-for-organization-tests"
INVITATION = re.compile(r"https?://\S+/accounts/invitations/\S+/")


@pytest.fixture(scope="module")
def site(inbox: tuple[Inbox, int], fake: FakeUpstream) -> Iterator[LiveServer]:  # noqa: F811
    _, port = inbox
    routes = {
        "upstreams": {"stall": {"base_url": f"{fake.url}/stall/v1", "api_key": "sk-upstream-for-tests"}},
        "models": {"long-answer": {"deployments": [{"upstream": "stall"}]}},
    }
    server = LiveServer(
        routes=routes,
        env={
            "GHOSTGPT_EMAIL_HOST": "127.0.0.1",
            "GHOSTGPT_EMAIL_PORT": str(port),
            "GHOSTGPT_EMAIL_SECURITY": "none",
            "GHOSTGPT_ADMIN_KEY": ADMIN_KEY,
        },
    )
    yield server
    server.stop()


def _invitation_link(mails: Inbox, address: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in reversed(mails.messages):
            body = message.get_payload(decode=True) if not message.is_multipart() else b""
            if address in str(message["To"]) and (found := INVITATION.search(body.decode())):  # type: ignore[union-attr]
                return found.group(0)
        time.sleep(0.1)
    raise AssertionError(f"no invitation mailed to {address}")


def _sign_up(page: Any, mails: Inbox, email: str) -> None:
    page.goto("/accounts/signup/")
    fill_sign_up(page, mails, email)


def _stream(base_url: str, secret: str, out: dict[str, Any]) -> None:
    """A long streamed answer on the member's key; what it received and how it ended."""
    body = {
        "model": "long-answer",
        "stream": True,
        "max_tokens": 4000,
        "messages": [{"role": "user", "content": "Count from one to five thousand in words."}],
    }
    text, errors = [], []
    with httpx.stream(
        "POST", base_url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {secret}"}, timeout=120
    ) as response:
        out["status"] = response.status_code
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                errors.append(chunk["error"])
            for choice in chunk.get("choices", []):
                text.append(choice.get("delta", {}).get("content") or "")
                out["chunks"] = out.get("chunks", 0) + 1
    out["errors"], out["text"], out["ended"] = errors, "".join(text), time.monotonic()


def test_an_invitation_is_accepted_and_disabling_a_members_keys_ends_their_stream(
    browser: Any,  # noqa: F811
    site: LiveServer,
    inbox: tuple[Inbox, int],  # noqa: F811
) -> None:
    mails, _ = inbox
    owner_tab = Tab(browser, site.base_url)
    owner = owner_tab.open("/")
    _sign_up(owner, mails, "olga@example.com")
    owner.goto("/accounts/organizations/")
    owner.fill("input[name=name]", "Acme Research")
    owner.click("form[action='/accounts/organizations/'] button[type=submit]")
    owner.wait_for_selector("#organization-name")
    slug = owner.url.rstrip("/").rsplit("/", 1)[-1]
    shell = manage(
        site,
        "shell",
        "-c",
        f"from people.models import Organization; print(Organization.objects.get(slug={slug!r}).pk)",
    )
    account_id = int(shell.strip().splitlines()[-1])
    operator_call(
        site.base_url,
        ADMIN_KEY,
        "/admin/topup",
        {"user_id": account_id, "amount": str(Decimal(50)), "idempotency_key": "org"},
    )
    owner.fill("#invite input[name=email]", "max@example.com")
    owner.click("#invite button[type=submit]")
    owner.wait_for_selector("#invitations li:has-text('max@example.com')")

    member_tab = Tab(browser, site.base_url)
    member = member_tab.open("/")
    link = _invitation_link(mails, "max@example.com")
    _sign_up(member, mails, "max@example.com")
    member.goto(link)
    member.click("#accept")
    member.wait_for_selector("#organization-name")
    assert member.inner_text("#my-role") == "Member"
    member.fill("form[action$='/key/'] input[name=name]", "max's script")
    member.click("#make-key")
    secret = member.inner_text("#new-key")

    out: dict[str, Any] = {}
    streaming = threading.Thread(target=_stream, args=(site.base_url, secret, out))
    streaming.start()
    deadline = time.monotonic() + 60
    while out.get("chunks", 0) < 3 and time.monotonic() < deadline and streaming.is_alive():
        time.sleep(0.1)
    assert out.get("chunks", 0) >= 3, out  # the answer is streaming

    owner.reload()
    owner.click("tr[data-email='max@example.com'] button.keys-off")
    clicked = time.monotonic()
    owner.wait_for_selector("#keys li:has-text('(off)')")
    streaming.join(timeout=30)
    assert not streaming.is_alive()
    assert out["ended"] - clicked < 10  # ended by the click, not by finishing
    assert [error.get("code") for error in out["errors"]] == ["api_key_revoked"], out["errors"]
    refused = httpx.post(
        site.base_url + "/v1/chat/completions",
        json={"model": "ghostgpt", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert refused.status_code == 401
    owner_tab.shot("organization")
    for tab in (owner_tab, member_tab):
        tab.close()
    assert owner_tab.errors == [] and member_tab.errors == []
