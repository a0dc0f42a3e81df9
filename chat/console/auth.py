"""Who is signed in to the console.

A key holder pastes an API key once: it is checked like any API request and exchanged for
Django's session cookie (HttpOnly, SameSite=Lax, Secure in production, a new session id at
every sign-in), which holds the key's id and a fingerprint of its hash. Every console
request loads the key again and checks it as the API would, so disabling, expiring or
deleting the key — or the account — signs its console out at once; what the console may
do is what the key may do (its scope: a key without management scope is read-only).

An operator signs in with GHOSTGPT_ADMIN_KEY (the session keeps a fingerprint of it, so
changing the admin key signs every operator out) or is a Django staff user signed in to
/admin/. State-changing console requests need Django's CSRF token (the X-CSRFToken header).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from django.conf import settings
from django.contrib.auth import logout
from django.http import HttpRequest
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from audit.context import act_as_admin, act_as_key
from chat.accounts.admin_views import Operator
from chat.api.auth import check_usable, session_csrf_error
from chat.api.errors import ApiError
from chat.models import Account, ApiKey, hash_api_key
from chat.selectors import api_key_get_for_auth_sync

KEY_SESSION = "console_key"
OPERATOR_SESSION = "console_operator"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def _fingerprint(secret_hash: str) -> str:
    """A value the session may hold for a secret: a hash of its hash, never the secret."""
    return hashlib.sha256(f"console:{secret_hash}".encode()).hexdigest()


def _check_csrf(request: HttpRequest) -> None:
    if request.method not in SAFE_METHODS and (error := session_csrf_error(request)) is not None:
        raise error


def _unauthorized(message: str, code: str) -> ApiError:
    return ApiError(401, message, error_type="authentication_error", code=code)


def console_sign_in(request: HttpRequest, *, secret: str) -> ApiKey:
    """The key behind `secret`, if it may sign in (an API key that works), now this
    session's; raises 401 otherwise."""
    _check_csrf(request)
    key = api_key_get_for_auth_sync(secret=secret.strip()) if secret.strip() else None
    if key is None or key.kind != ApiKey.Kind.API:
        raise _unauthorized("Incorrect API key provided.", "invalid_api_key")
    check_usable(key)
    request.session.cycle_key()  # no session fixation: a new id for the signed-in session
    request.session[KEY_SESSION] = {"id": key.pk, "fingerprint": _fingerprint(key.key_hash)}
    return key


def operator_sign_in(request: HttpRequest, *, admin_key: str) -> None:
    _check_csrf(request)
    configured = settings.GHOSTGPT["ADMIN_KEY"]
    if not configured:
        raise ApiError(
            403,
            "The operator console is off: set GHOSTGPT_ADMIN_KEY, or sign in to /admin/ as staff.",
            error_type="permission_error",
            code="admin_disabled",
        )
    if not hmac.compare_digest(admin_key.strip().encode(), configured.encode()):
        raise _unauthorized("Incorrect admin key.", "invalid_admin_key")
    request.session.cycle_key()
    request.session[OPERATOR_SESSION] = _fingerprint(hash_api_key(configured))


def console_sign_out(request: HttpRequest) -> None:
    _check_csrf(request)
    user = getattr(request, "person", None)
    if user is not None and user.is_authenticated:
        logout(request)  # a person: the whole sign-in goes (their browser key with it)
    else:
        request.session.flush()


def _person_key(request: HttpRequest) -> ApiKey | None:
    """A signed-in person's console runs on their browser key for this session (people/):
    their own account, no key to paste."""
    user = getattr(request, "person", None)
    if user is None or not user.is_authenticated:
        return None
    from people.services import browser_key_for

    key = browser_key_for(request)
    try:
        if key is not None:
            check_usable(key)
    except ApiError:
        return None
    return key


def signed_in_key(request: HttpRequest) -> ApiKey | None:
    """The session's key, if it still works as an API key; a key that no longer does signs
    the session out. A person signed in without a pasted key gets their own."""
    held = request.session.get(KEY_SESSION)
    if not isinstance(held, dict):
        return _person_key(request)
    key = ApiKey.objects.select_related("account__tier", "tier").filter(pk=held.get("id"), kind="api").first()
    try:
        if key is None or not hmac.compare_digest(_fingerprint(key.key_hash), str(held.get("fingerprint"))):
            raise _unauthorized("The key this console was signed in with no longer exists.", "invalid_api_key")
        check_usable(key)
    except ApiError:
        request.session.pop(KEY_SESSION, None)
        return None
    return key


def staff_mfa_missing(request: HttpRequest) -> bool:
    """A staff person signed in without a second factor, where operators require one
    (GHOSTGPT_MFA_REQUIRED_FOR_STAFF): they are not an operator until they use one."""
    user = getattr(request, "person", None)
    if user is None or not user.is_authenticated or not user.is_staff:
        return False
    if not settings.PEOPLE["MFA_REQUIRED_FOR_STAFF"]:
        return False
    from allauth.account.authentication import get_authentication_records

    return not any(record.get("method") == "mfa" for record in get_authentication_records(request, user))


def is_operator(request: HttpRequest) -> bool:
    user = getattr(request, "person", None)
    if user is not None and user.is_active and user.is_staff and not staff_mfa_missing(request):
        return True
    configured = settings.GHOSTGPT["ADMIN_KEY"]
    held = request.session.get(OPERATOR_SESSION)
    return bool(configured and held) and hmac.compare_digest(str(held), _fingerprint(hash_api_key(configured)))


class ConsoleKeyAuthentication(BaseAuthentication):
    """request.user is the key's Account, request.auth the ApiKey the console signed in with."""

    def authenticate(self, request: Request) -> tuple[Account, ApiKey] | None:
        key = signed_in_key(request._request)
        if key is None:
            return None
        _check_csrf(request._request)
        if key.kind == ApiKey.Kind.API:  # a pasted key acts; a signed-in person acts as themselves
            act_as_key(key)
        return key.account, key

    def authenticate_header(self, request: Request) -> str:
        return 'Session realm="ghostgpt-console"'


class ConsoleOperatorAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Operator, None] | None:
        if not is_operator(request._request):
            return None
        _check_csrf(request._request)
        user = getattr(request._request, "person", None)
        if (user is None or not user.is_authenticated) and settings.GHOSTGPT["ADMIN_KEY"]:
            act_as_admin(settings.GHOSTGPT["ADMIN_KEY"])
        return Operator(), None

    def authenticate_header(self, request: Request) -> str:
        return 'Session realm="ghostgpt-console-ops"'


class SignedIn(BasePermission):
    message = "Sign in to the console first: POST /console/api/session with your API key."

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.auth, ApiKey)


class SignedInOperator(BasePermission):
    message = "Sign in as the operator first: POST /console/api/ops/session with the admin key."

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.user, Operator)
