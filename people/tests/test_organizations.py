"""Organizations through their pages, with CSRF on as in a browser: making one, inviting by
mail, accepting, roles, limits, disabling a member's keys, removing, leaving, transferring
ownership — and each refusal (someone else's invitation, an expired, withdrawn or used one, a
member trying an admin's action, a stranger) a clear error that changes nothing."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client
from django.utils import timezone

from audit.models import AuditEvent
from chat.models import ApiKey, Conversation, hash_api_key
from people.models import Invitation, Membership, Organization, Role

from .helpers import api, post, signed_in, submit

pytestmark = pytest.mark.django_db
User = get_user_model()


def _person(email: str) -> Client:
    return signed_in(email)


def _act(client: Client, slug: str, action: str, **data: Any) -> Any:
    return submit(client, f"/accounts/organizations/{slug}/{action}/", data, page=f"/accounts/organizations/{slug}/")


def _organization(owner: Client, name: str = "Acme Research") -> Organization:
    response = submit(owner, "/accounts/organizations/", {"name": name})
    assert response.status_code == 302
    return Organization.objects.get(account__name=name)


def _invite_and_join(owner: Client, organization: Organization, email: str, role: str = "member") -> Client:
    assert _act(owner, organization.slug, "invite", email=email, role=role).status_code == 302
    member = _person(email)
    link = _invitation_link(email)
    accepted = submit(member, link, {})
    assert accepted.status_code == 302, accepted.content
    return member


def _invitation_link(email: str) -> str:
    """The path of the last invitation mailed to `email` (sign-up mails come after it)."""
    for message in reversed(mail.outbox):
        if email in message.to and (found := re.search(r"https?://\S+(/accounts/invitations/\S+/)", message.body)):
            return found.group(1)
    raise AssertionError(f"no invitation to {email}")


def _membership(organization: Organization, email: str) -> Membership:
    return Membership.objects.get(organization=organization, user__email=email)


def _key_and_secret(client: Client, organization: Organization, name: str) -> tuple[ApiKey, str]:
    assert _act(client, organization.slug, "key", name=name).status_code == 302
    page = client.get(f"/accounts/organizations/{organization.slug}/").content.decode()
    secret = re.search(r'<code id="new-key">([^<]+)</code>', page)
    assert secret, "the new key is shown once"
    return ApiKey.objects.get(key_hash=hash_api_key(secret.group(1))), secret.group(1)


def _key_of(client: Client, organization: Organization, name: str) -> ApiKey:
    return _key_and_secret(client, organization, name)[0]


def test_an_invitation_by_mail_is_accepted_and_keys_bill_the_organization() -> None:
    owner = _person("olga@example.com")
    organization = _organization(owner)
    assert _membership(organization, "olga@example.com").role == Role.OWNER

    member = _invite_and_join(owner, organization, "max@example.com")
    assert _membership(organization, "max@example.com").role == Role.MEMBER
    key = _key_of(member, organization, "max's laptop")
    assert key.account_id == organization.pk  # the organization's wallet pays
    assert key.user.email == "max@example.com"  # and it records who made it
    assert key.scope == ApiKey.Scope.INFERENCE

    # The member sees their own usage and keys; the owner sees everyone's.
    member_page = member.get(f"/accounts/organizations/{organization.slug}/").content.decode()
    assert "olga@example.com" not in member_page and "Send invitation" not in member_page
    owner_page = owner.get(f"/accounts/organizations/{organization.slug}/").content.decode()
    assert "max@example.com" in owner_page and key.prefix in owner_page

    actions = set(AuditEvent.objects.filter(account_id=organization.pk).values_list("action", flat=True))
    assert {"organization.create", "member.invite", "member.join"} <= actions
    # The owner sees the organization's trail on its page; a member does not.
    assert 'id="trail"' in owner_page and "member.join" in owner_page
    assert 'id="trail"' not in member_page


def test_an_invitation_for_someone_else_expired_withdrawn_or_used_is_refused() -> None:
    owner = _person("olga@example.com")
    organization = _organization(owner)
    _act(owner, organization.slug, "invite", email="max@example.com", role="member")
    link = _invitation_link("max@example.com")
    eve = _person("eve@example.com")
    refused = submit(eve, link, {})
    assert refused.status_code == 403 and b"another address" in refused.content
    assert not Membership.objects.filter(organization=organization, user__email="eve@example.com").exists()

    max_ = _person("max@example.com")
    Invitation.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert submit(max_, link, {}).status_code == 410
    Invitation.objects.update(expires_at=timezone.now() + timedelta(days=1), revoked_at=timezone.now())
    assert submit(max_, link, {}).status_code == 404
    Invitation.objects.update(revoked_at=None)
    assert submit(max_, link, {}).status_code == 302
    assert submit(max_, link, {}).status_code == 410  # used
    assert Membership.objects.filter(organization=organization).count() == 2


def test_a_member_trying_an_admins_action_gets_403_and_nothing_changes() -> None:
    owner = _person("olga@example.com")
    organization = _organization(owner)
    member = _invite_and_join(owner, organization, "max@example.com")
    _invite_and_join(owner, organization, "ida@example.com")
    ida = _membership(organization, "ida@example.com")
    owner_key = _key_of(owner, organization, "olga's")
    before = list(Membership.objects.order_by("pk").values_list("user_id", "role"))
    for action, data in [
        ("invite", {"email": "x@example.com", "role": "admin"}),
        ("role", {"member": ida.pk, "role": "admin"}),
        ("remove", {"member": ida.pk}),
        ("keys_off", {"member": _membership(organization, "olga@example.com").pk}),
        ("limits", {"member": ida.pk, "rpm": "1"}),
        ("transfer", {"member": ida.pk}),
    ]:
        response = _act(member, organization.slug, action, **data)
        assert response.status_code == 403, action
    assert list(Membership.objects.order_by("pk").values_list("user_id", "role")) == before
    owner_key.refresh_from_db()
    assert owner_key.is_active
    assert not Invitation.objects.filter(email="x@example.com").exists()
    # A stranger learns nothing: 404, not 403.
    stranger = _person("sam@example.com")
    assert stranger.get(f"/accounts/organizations/{organization.slug}/").status_code == 404
    assert post(stranger, f"/accounts/organizations/{organization.slug}/leave/", {}).status_code == 404


def test_admins_disable_remove_and_limit_members_and_leaving_disables_ones_keys() -> None:
    owner = _person("olga@example.com")
    organization = _organization(owner)
    member = _invite_and_join(owner, organization, "max@example.com")
    admin = _invite_and_join(owner, organization, "ada@example.com", role="admin")
    max_ = _membership(organization, "max@example.com")

    first = _key_of(member, organization, "one")
    assert _act(admin, organization.slug, "limits", member=max_.pk, rpm="5", tpm="1000").status_code == 302
    max_.refresh_from_db()
    assert (max_.rpm, max_.tpm) == (5, 1000)  # one counter for all their keys (the next test)
    assert _act(admin, organization.slug, "keys_off", member=max_.pk).status_code == 302
    first.refresh_from_db()
    assert not first.is_active
    # An admin may not act on the owner.
    olga = _membership(organization, "olga@example.com")
    assert _act(admin, organization.slug, "remove", member=olga.pk).status_code == 403

    second = _key_of(member, organization, "two")
    assert _act(member, organization.slug, "leave").status_code == 302
    second.refresh_from_db()
    assert not second.is_active and not Membership.objects.filter(pk=max_.pk).exists()

    ada = _membership(organization, "ada@example.com")
    adas = _key_of(admin, organization, "ada's")
    User.objects.filter(email="ada@example.com").get().delete()  # a deleted person leaves too
    adas.refresh_from_db()
    assert not adas.is_active and adas.user_id is None
    assert not Membership.objects.filter(pk=ada.pk).exists()
    zoe_client = _invite_and_join(owner, organization, "zoe@example.com")
    zoes = _key_of(zoe_client, organization, "zoe's")
    zoe = _membership(organization, "zoe@example.com")
    assert _act(owner, organization.slug, "remove", member=zoe.pk).status_code == 302
    zoes.refresh_from_db()
    assert not zoes.is_active and not Membership.objects.filter(pk=zoe.pk).exists()
    assert not Membership.objects.filter(pk=ada.pk).exists()
    actions = list(AuditEvent.objects.filter(account_id=organization.pk).values_list("action", flat=True))
    for action in ("member.limits", "member.keys_disable", "member.leave", "member.remove"):
        assert action in actions


def test_ownership_is_transferred_before_the_owner_leaves() -> None:
    owner = _person("olga@example.com")
    organization = _organization(owner)
    _invite_and_join(owner, organization, "max@example.com")
    refused = _act(owner, organization.slug, "leave")
    assert refused.status_code == 400 and b"Transfer ownership" in refused.content
    max_ = _membership(organization, "max@example.com")
    assert _act(owner, organization.slug, "transfer", member=max_.pk).status_code == 302
    assert _membership(organization, "max@example.com").role == Role.OWNER
    assert _membership(organization, "olga@example.com").role == Role.ADMIN
    assert _act(owner, organization.slug, "leave").status_code == 302


def _wallet(client: Client, slug: str, next_: str = "/") -> Any:
    return submit(client, "/accounts/wallet/", {"organization": slug, "next": next_}, page="/accounts/organizations/")


def _conversations(client: Client) -> list[str]:
    return [c["title"] for c in api(client, "GET", "/api/conversations").json()["data"]]


def test_the_chat_and_console_switch_wallets_and_chats_stay_each_persons() -> None:
    owner = _person("olga@example.com")
    organization = _organization(owner)
    member = _invite_and_join(owner, organization, "max@example.com")
    _key_of(member, organization, "max's")
    assert owner.get("/console/api/session").json()["account"]["name"] == "olga@example.com"

    # The owner: the organization's console, every key.
    assert _wallet(owner, organization.slug, "/console")["Location"] == "/console"
    who = owner.get("/console/api/session").json()
    assert who["account"] == {"id": organization.pk, "name": "Acme Research"} and who["key"]["manage"]
    assert [k["name"] for k in owner.get("/console/api/keys").json()["data"]] == ["max's"]

    # The member: the chat pays from the organization; the console shows their own only.
    assert api(member, "POST", "/api/conversations", {"title": "personal plans"}).status_code == 201
    assert _wallet(member, organization.slug).status_code == 302
    session = ApiKey.objects.get(key_hash=hash_api_key(member.cookies["gg_sess"].value))
    assert session.account_id == organization.pk and session.scope == ApiKey.Scope.INFERENCE
    assert api(member, "POST", "/api/conversations", {"title": "work question"}).status_code == 201
    assert _conversations(member) == ["work question"]
    assert member.get("/console/api/keys").status_code == 403
    assert member.get("/console/api/session").json()["account"]["name"] == "Acme Research"
    assert "selected>Acme Research" in member.get("/").content.decode()

    # Another member of the same wallet never sees it.
    assert _conversations(owner) == []
    conversation = Conversation.objects.get(title="work question")
    assert api(owner, "GET", f"/api/conversations/{conversation.pk}").status_code == 404

    # Back on the personal wallet: the personal chats.
    assert _wallet(member, "").status_code == 302
    assert _conversations(member) == ["personal plans"]
    assert _wallet(owner, "", "/console")["Location"] == "/console"
    assert owner.get("/console/api/session").json()["account"]["name"] == "olga@example.com"


def test_billing_members_and_strangers_cannot_pay_from_the_wallet() -> None:
    owner = _person("olga@example.com")
    organization = _organization(owner)
    billing = _invite_and_join(owner, organization, "bea@example.com", role="billing")
    assert _wallet(billing, organization.slug).status_code == 403
    page = billing.get(f"/accounts/organizations/{organization.slug}/").content.decode()
    assert "Balance" in page and "Make a key" not in page
    stranger = _person("sam@example.com")
    assert _wallet(stranger, organization.slug).status_code == 404
    assert not ApiKey.objects.filter(
        account_id=organization.pk, user__email__in=["bea@example.com", "sam@example.com"]
    ).exists()


def test_csrf_less_organization_forms_change_nothing() -> None:
    owner = _person("olga@example.com")
    organization = _organization(owner)
    client = owner
    client.handler.enforce_csrf_checks = True
    response = client.post(f"/accounts/organizations/{organization.slug}/invite/", {"email": "x@example.com"})
    assert response.status_code == 403
    assert not Invitation.objects.exists()
    assert client.post("/accounts/organizations/", {"name": "Forged"}).status_code == 403
    assert not Organization.objects.filter(account__name="Forged").exists()
    assert User.objects.filter(email="olga@example.com").exists()


def test_admins_act_only_after_a_second_factor_where_the_operator_requires_it(settings: Any) -> None:
    owner = _person("olga@example.com")
    organization = _organization(owner)
    settings.PEOPLE = {**settings.PEOPLE, "MFA_REQUIRED_FOR_ORG_ADMINS": True}
    refused = _act(owner, organization.slug, "invite", email="max@example.com", role="member")
    assert refused.status_code == 403 and b"second factor" in refused.content
    assert not Invitation.objects.exists()


# Committed, because the gateway's async view reads the keys on a thread of its own.
@pytest.mark.django_db(transaction=True)
def test_a_members_limits_are_one_counter_for_all_their_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    from chat.billing import ratelimit
    from chat.models import Tier
    from chat.services import tier_get

    monkeypatch.setattr(ratelimit, "_limiter", None)  # a fresh in-memory limiter
    for name, rpm, tpm in (("free", 10, 30_000), ("unlimited", None, None), ("regular", 12, 40_000)):
        Tier.objects.get_or_create(name=name, defaults={"rpm": rpm, "tpm": tpm})
    owner = _person("olga@example.com")
    organization = _organization(owner)
    organization.account.tier = tier_get("unlimited")
    organization.account.save()
    member = _invite_and_join(owner, organization, "max@example.com")
    max_ = _membership(organization, "max@example.com")
    assert _act(owner, organization.slug, "limits", member=max_.pk, rpm="3").status_code == 302
    made = [_key_and_secret(*who) for who in ((member, organization, "one"), (member, organization, "two"))]
    made.append(_key_and_secret(owner, organization, "olga's"))
    (first, _), (second, _), (owners_key, _) = made
    secrets = {key.pk: secret for key, secret in made}

    def status(key: ApiKey) -> int:
        client = Client(headers={"Authorization": f"Bearer {secrets[key.pk]}"})
        return int(client.post("/v1/chat/completions", {"model": "x"}, content_type="application/json").status_code)

    # Counted, then a 400 (no messages): three in all across both keys, then 429.
    assert [status(first), status(second), status(first), status(second)] == [400, 400, 400, 429]
    assert status(owners_key) == 400  # the owner has no member limit
    assert _act(owner, organization.slug, "limits", member=max_.pk, rpm="").status_code == 302
    assert status(second) == 400  # lifted at once (every key cache forgets)


def test_bad_input_is_a_clear_refusal_and_changes_nothing(settings: Any) -> None:
    settings.PEOPLE = {**settings.PEOPLE, "INVITATIONS_PER_HOUR": 2, "MAX_ORGANIZATIONS": 1}
    owner = _person("olga@example.com")
    organization = _organization(owner)
    second = submit(owner, "/accounts/organizations/", {"name": "Another"})
    assert second.status_code == 429 and b"1 organizations" in second.content
    assert submit(owner, "/accounts/organizations/", {"name": " "}, page="/accounts/organizations/").status_code == 400
    for junk in ("not-an-address", "a@b", "x" * 300 + "@example.com"):
        assert _act(owner, organization.slug, "invite", email=junk, role="member").status_code == 400, junk
    assert _act(owner, organization.slug, "invite", email="a@example.com", role="owner").status_code == 400
    assert _act(owner, organization.slug, "invite", email="a@example.com", role="member").status_code == 302
    assert _act(owner, organization.slug, "invite", email="b@example.com", role="member").status_code == 302
    assert _act(owner, organization.slug, "invite", email="c@example.com", role="member").status_code == 429
    assert Invitation.objects.count() == 2
    for member in ("99999999999999999999999", "-1", "abc"):
        assert _act(owner, organization.slug, "remove", member=member).status_code == 400, member
    olga = _membership(organization, "olga@example.com")
    for rpm in ("0", "-5", "1000000001", "1.5"):
        assert _act(owner, organization.slug, "limits", member=olga.pk, rpm=rpm).status_code == 400, rpm
    settings.GHOSTGPT = {**settings.GHOSTGPT, "MAX_API_KEYS": 1}
    _key_of(owner, organization, "one")
    full = _act(owner, organization.slug, "key", name="two")
    assert full.status_code == 429 and b"limit of 1 API keys" in full.content
    assert Membership.objects.count() == 1 and Organization.objects.count() == 1


def test_an_admin_sets_a_members_budget_and_it_is_on_their_keys_path() -> None:
    from django.utils import timezone

    from chat.billing.budgets import exceeded
    from chat.billing.wallet import InsufficientBalance, wallet_reserve
    from chat.models import Budget
    from chat.selectors import api_key_auth_sync

    owner = _person("olga@example.com")
    organization = _organization(owner)
    organization.account.balance = Decimal(100)
    organization.account.save()
    member = _invite_and_join(owner, organization, "max@example.com")
    max_ = _membership(organization, "max@example.com")
    _, secret = _key_and_secret(member, organization, "max's")
    assert _act(member, organization.slug, "budget", member=max_.pk, amount="1").status_code == 403
    assert _act(owner, organization.slug, "budget", member=max_.pk, amount="2", period="week").status_code == 302
    budget = Budget.objects.get(scope="member", user__email="max@example.com")
    assert (budget.amount, budget.period) == (2, "week")
    auth = api_key_auth_sync(secret=secret)
    assert auth is not None and auth.budgets == (budget.pk,)
    wallet_reserve(account_id=organization.pk, amount=Decimal("1.5"), request_id="r1", budgets=auth.budgets)
    with pytest.raises(InsufficientBalance):
        wallet_reserve(account_id=organization.pk, amount=Decimal("1"), request_id="r2", budgets=auth.budgets)
    over = exceeded(auth.budgets, Decimal(1), timezone.now(), "UTC")
    assert over is not None and over.budget.scope == "member" and over.used == Decimal("1.5")
    page = owner.get(f"/accounts/organizations/{organization.slug}/").content.decode()
    assert "1.5 / 2" not in page and "0 / 2" in page  # held, not yet spent
    assert AuditEvent.objects.filter(action="budget.set", account_id=organization.pk).exists()
    assert _act(owner, organization.slug, "budget", member=max_.pk, amount="").status_code == 302
    assert not Budget.objects.filter(pk=budget.pk).exists()
