"""TOTP with real codes (pyotp, an implementation of RFC 6238 independent of allauth's),
recovery codes, and the operators' rule that staff use a second factor."""

from __future__ import annotations

import re
from typing import Any

import pyotp
import pytest
from allauth.mfa.models import Authenticator
from django.contrib.auth import get_user_model

from audit.models import AuditEvent

from .helpers import PASSWORD, csrf_client, post, sign_in, sign_up, submit, verify

pytestmark = pytest.mark.django_db
User = get_user_model()


def _enrol_totp(browser: Any, password: str = PASSWORD) -> str:
    page = browser.get("/accounts/2fa/totp/activate/")
    if page.status_code == 302 and page["Location"].startswith("/accounts/reauthenticate/"):
        # Signed in by the verification link, not a password: MFA changes ask for it first.
        assert submit(browser, page["Location"], {"password": password}).status_code == 302
        page = browser.get("/accounts/2fa/totp/activate/")
    assert page.status_code == 200, page.status_code
    secret = re.search(rb'id="authenticator_secret"[^>]*value="([A-Z2-7]+)"|value="([A-Z2-7]{16,})"', page.content)
    assert secret, "no TOTP secret on the activation page"
    value = (secret.group(1) or secret.group(2)).decode()
    # (A GET of the page would make a new secret: post with the cookie's token.)
    wrong = post(browser, "/accounts/2fa/totp/activate/", {"code": "000000"})
    assert wrong.status_code == 200 and b"Incorrect code" in wrong.content
    done = post(browser, "/accounts/2fa/totp/activate/", {"code": pyotp.TOTP(value).now()})
    assert done.status_code == 302, done.content[-2000:]
    return value


def test_totp_enrolment_and_sign_in_with_a_real_code(django_capture_on_commit_callbacks: Any) -> None:
    browser = csrf_client()
    sign_up(browser, "kim@example.com")
    verify(browser, "kim@example.com")
    with django_capture_on_commit_callbacks(execute=True):  # allauth announces it after the commit
        secret = _enrol_totp(browser)
    codes = Authenticator.objects.get(user__email="kim@example.com", type=Authenticator.Type.RECOVERY_CODES)
    recovery = codes.wrap().get_unused_codes()
    submit(browser, "/accounts/logout/", {}, page="/accounts/profile/")

    laptop = csrf_client()
    stage = sign_in(laptop, "kim@example.com")
    assert stage.status_code == 302 and stage["Location"] == "/accounts/2fa/authenticate/"
    assert laptop.get("/accounts/profile/").status_code == 302  # not signed in by the password alone
    wrong = submit(laptop, "/accounts/2fa/authenticate/", {"code": "123456"})
    assert wrong.status_code == 200 and b"Incorrect code" in wrong.content
    code = pyotp.TOTP(secret).now()
    assert submit(laptop, "/accounts/2fa/authenticate/", {"code": code}).status_code == 302
    assert laptop.get("/accounts/profile/").status_code == 200
    assert laptop.get("/console/api/session").json()["person"]["email"] == "kim@example.com"

    # The same code again (a replay from another machine) is refused.
    replay = csrf_client()
    sign_in(replay, "kim@example.com")
    assert b"Incorrect code" in submit(replay, "/accounts/2fa/authenticate/", {"code": code}).content
    assert replay.get("/accounts/profile/").status_code == 302

    # A recovery code stands in for the app, once.
    assert len(recovery) >= 8
    spare = csrf_client()
    sign_in(spare, "kim@example.com")
    assert submit(spare, "/accounts/2fa/authenticate/", {"code": recovery[0]}).status_code == 302
    again = csrf_client()
    sign_in(again, "kim@example.com")
    assert b"Incorrect code" in submit(again, "/accounts/2fa/authenticate/", {"code": recovery[0]}).content

    added = AuditEvent.objects.get(action="mfa.add", after__type="totp")
    assert added.target == f"user:{User.objects.get(email='kim@example.com').pk}"
    trail = "".join(str(v) for v in AuditEvent.objects.values_list("before", "after", "label", "target"))
    assert secret not in trail and code not in trail


def test_staff_are_operators_only_with_a_second_factor(settings: Any) -> None:
    root = User.objects.create_user("root", email="root@example.com", password="pw-" + "z" * 20, is_staff=True)
    root.emailaddress_set.create(email="root@example.com", verified=True, primary=True)
    browser = csrf_client()
    assert sign_in(browser, "root@example.com", "pw-" + "z" * 20).status_code == 302
    assert browser.get("/console/api/ops/models").status_code in (401, 403)
    assert browser.get("/console/api/session").json()["person"]["mfa_missing"] is True
    secret = _enrol_totp(browser, "pw-" + "z" * 20)
    submit(browser, "/accounts/logout/", {}, page="/accounts/profile/")

    ops = csrf_client()
    sign_in(ops, "root@example.com", "pw-" + "z" * 20)
    submit(ops, "/accounts/2fa/authenticate/", {"code": pyotp.TOTP(secret).now()})
    assert ops.get("/console/api/ops/models").status_code == 200
    # The Django admin's own login goes through allauth too (no way around the second factor).
    assert csrf_client().get("/admin/login/")["Location"].startswith("/accounts/login/")

    # An operator who turns the rule off lets staff in on a password.
    settings.PEOPLE = {**settings.PEOPLE, "MFA_REQUIRED_FOR_STAFF": False}
    User.objects.create_user("ops2", email="ops2@example.com", password="pw-" + "y" * 20, is_staff=True)
    User.objects.get(username="ops2").emailaddress_set.create(email="ops2@example.com", verified=True, primary=True)
    plain = csrf_client()
    sign_in(plain, "ops2@example.com", "pw-" + "y" * 20)
    assert plain.get("/console/api/ops/models").status_code == 200
