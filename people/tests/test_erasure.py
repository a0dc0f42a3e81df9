""" "Delete my data" through its page, with CSRF on as in a browser: the chats, projects, files
and shares go (the account stays); the whole account goes — refused while the balance is
negative or the person owns an organization; the ledger, usage and audit rows stay, with the
person replaced by a pseudonym, so the books and the audit chain stay whole."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from audit import verify as audit_verify
from audit.models import AuditEvent
from chat.billing import wallet
from chat.models import Account, ApiKey, Conversation, LedgerEntry, Message, Share, UsageRecord
from people.models import Membership, Organization, Role
from projects.models import Project
from tools.models import Job

from .helpers import PASSWORD, api, signed_in, submit

pytestmark = pytest.mark.django_db
User = get_user_model()
PAGE = "/accounts/delete/"


def _person(email: str) -> Client:
    client = signed_in(email)
    # Deleting asks for the password again (allauth's reauthentication), whatever the sign-in's age.
    assert client.get(PAGE)["Location"].startswith("/accounts/reauthenticate/")
    assert submit(client, "/accounts/reauthenticate/", {"password": PASSWORD}).status_code == 302
    return client


def _chat_with_project(client: Client) -> tuple[str, str]:
    project = api(client, "POST", "/api/projects", {"name": "Thesis", "instructions": "Cite."}).json()
    chat = api(client, "POST", "/api/conversations", {"title": "Chapter 1", "project_id": project["id"]}).json()
    conversation = Conversation.objects.get(pk=chat["id"])
    Message.objects.create(conversation=conversation, role="user", content="What is a lantern?")
    api(client, "POST", "/api/conversations", {"title": "Loose chat"})
    return project["id"], chat["id"]


def _books(account: Account) -> None:
    """A top-up and a request's usage, as the ledger holds them."""
    wallet.wallet_top_up(account_id=account.pk, amount=Decimal("5"), idempotency_key=f"erasure-{account.pk}")
    UsageRecord.objects.create(
        account=account,
        model="gpt-x",
        prompt_tokens=10,
        completion_tokens=5,
        prompt_cost=Decimal("0.01"),
        completion_cost=Decimal("0.02"),
        prompt_text="my secret question",
    )


def test_deleting_my_data_keeps_the_account_and_its_keys() -> None:
    client = _person("ada@example.com")
    user = User.objects.get(email="ada@example.com")
    account = Account.objects.get(user=user)
    _chat_with_project(client)
    Share.objects.create(pk="s" * 32, account=account, title="t", snapshot=[], size=2)
    Job.objects.create(tool="pdf-extract", account=account, result={"text": "the pdf's text"})
    Account.objects.filter(pk=account.pk).update(storage_used=500)
    _books(account)

    page = client.get(PAGE)
    assert page.status_code == 200 and b'href="/api/export"' in page.content  # the export is offered first
    assert b"You have 2 chats here." in page.content
    unconfirmed = submit(client, PAGE, {"what": "data"})
    assert unconfirmed.status_code == 400 and Conversation.objects.count() == 2
    done = submit(client, PAGE, {"what": "data", "confirm": "yes"})
    assert done.status_code == 200
    assert b"Deleted 2 chats, 1 projects, 1 files and 1 shares." in done.content
    assert not Conversation.objects.exists() and not Project.objects.exists()
    assert not Share.objects.exists() and not Job.objects.exists()
    account.refresh_from_db()
    assert account.user_id == user.pk and account.is_active and account.balance == Decimal("5")
    assert account.storage_used == 500 - len(b"What is a lantern?")
    assert UsageRecord.objects.get(account=account).prompt_text == ""  # the request logs' text goes too
    # Still signed in, still chatting.
    assert api(client, "GET", "/api/conversations").status_code == 200


def test_deleting_my_account_keeps_the_books_under_a_pseudonym() -> None:
    client = _person("bea@example.com")
    user = User.objects.get(email="bea@example.com")
    account = Account.objects.get(user=user)
    _chat_with_project(client)
    _books(account)
    ledger_before = list(LedgerEntry.objects.filter(account=account).values_list("amount", "balance_after"))
    assert ApiKey.objects.filter(account=account).exists()  # the browser's key

    mismatch = submit(client, PAGE, {"what": "account", "email": "someone@example.com"})
    assert mismatch.status_code == 400 and User.objects.filter(pk=user.pk).exists()
    gone = submit(client, PAGE, {"what": "account", "email": "BEA@example.com"})
    assert gone.status_code == 200 and b"erasure-gone" in gone.content

    assert not User.objects.filter(pk=user.pk).exists()
    account.refresh_from_db()
    assert account.user_id is None and not account.is_active
    assert account.name.startswith("deleted-") and "bea" not in account.name
    assert not ApiKey.objects.filter(account=account).exists()
    assert not Conversation.objects.exists() and not Project.objects.exists()
    assert list(LedgerEntry.objects.filter(account=account).values_list("amount", "balance_after")) == ledger_before
    usage = UsageRecord.objects.get(account=account)
    assert usage.prompt_tokens == 10 and usage.prompt_text == ""
    mine = AuditEvent.objects.filter(actor=f"user:{user.pk}")
    assert mine.exists() and not mine.filter(label__icontains="bea").exists()
    checked, problems = audit_verify.verify()
    assert checked > 0 and problems == []
    # The browser is signed out: the chat API no longer takes its cookie.
    assert client.get("/api/conversations").status_code in (401, 403)


def test_an_account_with_a_debt_or_an_organization_is_not_deleted() -> None:
    client = _person("cy@example.com")
    user = User.objects.get(email="cy@example.com")
    Account.objects.filter(user=user).update(balance=Decimal("-0.25"))
    page = client.get(PAGE)
    assert b"settle it before deleting" in page.content and b'id="erase-account"' not in page.content
    refused = submit(client, PAGE, {"what": "account", "email": "cy@example.com"})
    assert refused.status_code == 400 and b"settle it" in refused.content
    assert User.objects.filter(pk=user.pk).exists()

    Account.objects.filter(user=user).update(balance=Decimal("0"))
    organization = Organization.objects.create(
        slug="acme", account=Account.objects.create(name="Acme", tier=Account.objects.get(user=user).tier)
    )
    Membership.objects.create(organization=organization, user=user, role=Role.OWNER)
    refused = submit(client, PAGE, {"what": "account", "email": "cy@example.com"})
    assert refused.status_code == 400 and b"Acme" in refused.content
    assert User.objects.filter(pk=user.pk).exists()


def test_the_page_needs_a_signed_in_person() -> None:
    response = Client().get(PAGE)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
