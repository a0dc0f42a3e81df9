"""Sign-up, verification, sign-in and sign-out through allauth's pages, with CSRF on
as in a browser, and what they do to the chat's account and keys."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from allauth.account.models import EmailConfirmationHMAC
from django.contrib.auth import get_user_model
from django.core import mail, signing

from audit.models import AuditEvent
from chat.models import Account, ApiKey, Conversation

from .helpers import PASSWORD, api, bootstrap, csrf_client, last_link, sign_in, sign_up, submit, token, verify

pytestmark = pytest.mark.django_db
User = get_user_model()


def _key(client: Any) -> ApiKey:
    from chat.models import hash_api_key

    return ApiKey.objects.get(key_hash=hash_api_key(client.cookies["gg_sess"].value))


def _person(email: str) -> Any:
    return User.objects.get(email=email)


def test_sign_up_verify_and_the_anonymous_chats_move_in() -> None:
    browser = csrf_client()
    bootstrap(browser)
    anonymous = _key(browser)
    assert api(browser, "POST", "/api/conversations", {"title": "before signing up"}).status_code == 201

    response = sign_up(browser, "ann@example.com")
    assert response.status_code == 302 and response["Location"] == "/accounts/confirm-email/"
    assert mail.outbox[-1].to == ["ann@example.com"] and "/accounts/confirm-email/" in mail.outbox[-1].body
    # Verification is mandatory: no sign-in before it.
    assert sign_in(csrf_client(), "ann@example.com")["Location"] == "/accounts/confirm-email/"

    response = verify(browser, "ann@example.com")
    assert response.status_code == 302
    person = _person("ann@example.com")
    account = Account.objects.get(user=person)
    assert (account.tier.name, account.balance) == ("free", 0)
    own = _key(browser)
    assert (own.account_id, own.user_id, own.kind) == (account.pk, person.pk, ApiKey.Kind.SESSION)
    anonymous.refresh_from_db()
    assert not anonymous.is_active  # claimed once: the old cookie is dead
    titles = [c["title"] for c in api(browser, "GET", "/api/conversations").json()["data"]]
    assert titles == ["before signing up"]
    assert Conversation.objects.get(title="before signing up").account_id == account.pk

    # A second device signing in sees the same history, on a key of its own.
    phone = csrf_client()
    bootstrap(phone)
    assert sign_in(phone, "ann@example.com").status_code == 302
    assert _key(phone).pk != own.pk and _key(phone).account_id == account.pk
    assert [c["title"] for c in api(phone, "GET", "/api/conversations").json()["data"]] == ["before signing up"]

    # The console opens with no key pasted: the person's own account.
    who = browser.get("/console/api/session").json()
    assert who["person"]["email"] == "ann@example.com" and who["account"]["id"] == account.pk
    assert browser.get("/console/api/overview").status_code == 200
    actions = list(AuditEvent.objects.values_list("action", flat=True))
    assert {"signup", "email.verify", "signin.success"} <= set(actions)


def test_signing_out_revokes_the_key_and_leaves_a_fresh_anonymous_session() -> None:
    browser = csrf_client()
    sign_up(browser, "bob@example.com")
    verify(browser, "bob@example.com")
    own = _key(browser)
    response = submit(browser, "/accounts/logout/", {}, page="/accounts/profile/")
    assert response.status_code == 302
    own.refresh_from_db()
    assert not own.is_active
    assert browser.cookies["gg_sess"].value == ""  # cleared: the page bootstraps a new one
    fresh = bootstrap(browser)
    assert fresh["created"] and _key(browser).account.user_id is None


def test_changing_the_password_signs_the_other_browsers_out() -> None:
    laptop, phone = csrf_client(), csrf_client()
    sign_up(laptop, "cy@example.com")
    verify(laptop, "cy@example.com")
    sign_in(phone, "cy@example.com")
    laptop_key, phone_key = _key(laptop), _key(phone)
    new = "another long passphrase 9"
    response = submit(
        laptop, "/accounts/password/change/", {"oldpassword": PASSWORD, "password1": new, "password2": new}
    )
    assert response.status_code == 302
    laptop_key.refresh_from_db()
    phone_key.refresh_from_db()
    assert laptop_key.is_active and not phone_key.is_active
    assert phone.get("/api/conversations").status_code in (401, 403)


def test_ending_a_session_from_the_list_revokes_its_key() -> None:
    laptop, phone = csrf_client(), csrf_client()
    sign_up(laptop, "di@example.com")
    verify(laptop, "di@example.com")
    sign_in(phone, "di@example.com")
    phone_key = _key(phone)
    page = laptop.get("/accounts/sessions/")
    assert page.status_code == 200
    response = submit(laptop, "/accounts/sessions/", {"action": "logout"})  # "sign out other sessions"
    assert response.status_code == 302
    phone_key.refresh_from_db()
    assert not phone_key.is_active
    assert _key(laptop).is_active


def test_no_account_enumeration() -> None:
    browser = csrf_client()
    sign_up(browser, "eve@example.com")
    verify(browser, "eve@example.com")
    mail.outbox.clear()
    # Signing up again with a known address looks the same as a new one; the owner is told by mail.
    again = sign_up(csrf_client(), "eve@example.com")
    new = sign_up(csrf_client(), "someone-new@example.com")
    assert again.status_code == new.status_code == 302 and again["Location"] == new["Location"]
    # A reset for an unknown address looks the same as for a known one.
    known = submit(csrf_client(), "/accounts/password/reset/", {"email": "eve@example.com"})
    unknown = submit(csrf_client(), "/accounts/password/reset/", {"email": "nobody@example.com"})
    assert known.status_code == unknown.status_code == 302 and known["Location"] == unknown["Location"]
    # A wrong password reads the same for a known and an unknown address.
    wrong_known = sign_in(csrf_client(), "eve@example.com", "not the password 1")
    wrong_unknown = sign_in(csrf_client(), "nobody@example.com", "not the password 1")
    assert wrong_known.status_code == wrong_unknown.status_code == 200
    assert b"not correct" in wrong_known.content and b"not correct" in wrong_unknown.content


def test_wrong_passwords_are_limited_and_counted_in_the_trail() -> None:
    browser = csrf_client()
    sign_up(browser, "fay@example.com")
    verify(browser, "fay@example.com")
    answers = [sign_in(csrf_client(), "fay@example.com", f"wrong guess {n}") for n in range(7)]
    assert all(a.status_code == 200 for a in answers)
    assert b"Too many failed login attempts" in answers[-1].content
    # Even the right password is refused while the limit holds; nothing changed.
    assert b"Too many failed login attempts" in sign_in(csrf_client(), "fay@example.com").content
    failed = AuditEvent.objects.filter(action="signin.failed")
    assert 1 <= failed.count() <= 5 and sum(failed.values_list("count", flat=True)) >= 5
    assert not failed.filter(label__icontains="wrong guess").exists()  # no password reaches the trail


def test_reused_and_expired_links_change_nothing() -> None:
    browser = csrf_client()
    sign_up(browser, "gus@example.com")
    link = last_link("gus@example.com")
    # Expired: the key was issued longer ago than the expiry.
    confirmation = EmailConfirmationHMAC.from_key(link.rstrip("/").rsplit("/", 1)[-1])
    assert confirmation is not None
    later = time.time() + timedelta(days=4).total_seconds()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(signing.time, "time", lambda: later)  # the link's signature is 4 days old
        expired = browser.get(link)
    assert b"expired or is invalid" in expired.content
    assert not _person("gus@example.com").emailaddress_set.filter(verified=True).exists()
    # Used once, then again.
    assert submit(browser, link, {}).status_code == 302
    reused = csrf_client().get(link)
    assert reused.status_code == 200  # a page that says the link has been used, not a sign-in
    assert "_auth_user_id" not in csrf_client().session

    # A password-reset link works once.
    mail.outbox.clear()
    submit(csrf_client(), "/accounts/password/reset/", {"email": "gus@example.com"})
    reset = last_link("gus@example.com")
    stranger = csrf_client()
    follow = stranger.get(reset)
    assert follow.status_code == 302  # allauth moves the key into the session, then the form
    new = "a fresh passphrase 42"
    done = submit(stranger, follow["Location"], {"password1": new, "password2": new})
    assert done.status_code == 302
    replay = csrf_client().get(reset, follow=True)
    assert b"Bad Token" in replay.content or b"invalid" in replay.content
    assert sign_in(csrf_client(), "gus@example.com", new).status_code == 302


def test_forms_need_their_csrf_token() -> None:
    browser = csrf_client()
    browser.get("/accounts/signup/")
    forged = browser.post(
        "/accounts/signup/", {"email": "hal@example.com", "password1": PASSWORD, "password2": PASSWORD}
    )
    assert forged.status_code == 403
    assert not User.objects.filter(email="hal@example.com").exists()
    assert token(browser, "/accounts/login/")


def test_operators_can_close_sign_up_or_allow_some_domains(settings: Any) -> None:
    settings.PEOPLE = {**settings.PEOPLE, "SIGNUP_DOMAINS": ["corp.example"]}
    refused = sign_up(csrf_client(), "ivy@gmail.example")
    assert refused.status_code == 200 and b"corp.example" in refused.content
    assert sign_up(csrf_client(), "ivy@corp.example").status_code == 302
    settings.PEOPLE = {**settings.PEOPLE, "SIGNUP": False}
    closed = csrf_client().get("/accounts/signup/")
    assert b"Sign Up Closed" in closed.content or b"closed" in closed.content.lower()
    assert not User.objects.filter(email="jay@corp.example").exists()


def test_pages_render_in_russian() -> None:
    browser = csrf_client()
    page = browser.get("/accounts/login/", HTTP_ACCEPT_LANGUAGE="ru")
    assert page.status_code == 200
    assert "Войти".encode() in page.content
