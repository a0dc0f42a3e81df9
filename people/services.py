"""What signing in and out does to accounts and keys.

A person (a Django user, signed in through allauth) pays from their own Account
(`Account.user`), made at their first sign-in with the tier GHOSTGPT_SIGNUP_TIER and no
money. Their chat runs on a browser-session key of that account (the `gg_sess` cookie), tied
to the Django session it was issued in: signing out, ending the session from the session
list, and changing or resetting the password revoke it (its live streams end, through
chat.revocation). The anonymous session a browser held before signing in hands its
conversations, shares and tool jobs to the person's account, once.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import F
from django.http import HttpRequest

from chat.api.auth import presented_session
from chat.models import Account, ApiKey, Conversation, Share, hash_api_key
from chat.selectors import session_key_get
from chat.services import DISPLAY_PREFIX_LENGTH, SESSION_PREFIX, tier_get
from tools.models import Job

# The Django session's entry naming its browser-session key.
SESSION_KEY_ID = "gg_key_id"


def person_account(user: AbstractBaseUser) -> Account:
    """The person's own account, made on first use."""
    account = Account.objects.select_related("tier").filter(user=user).first()
    if account is not None:
        return account
    name = getattr(user, "email", "") or user.get_username()
    try:
        with transaction.atomic():
            return Account.objects.create(user=user, name=name, tier=tier_get(settings.PEOPLE["SIGNUP_TIER"]))
    except IntegrityError:  # made meanwhile by a concurrent sign-in
        return Account.objects.select_related("tier").get(user=user)


def browser_key_issue(
    *,
    user: AbstractBaseUser,
    account: Account,
    web_session: str,
    expires_at: datetime,
    scope: str = ApiKey.Scope.FULL,  # type: ignore[assignment]
) -> tuple[ApiKey, str]:
    """A browser-session key of `account` for the signed-in Django session `web_session`,
    expiring with it."""
    secret = SESSION_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey.objects.create(
        account=account,
        kind=ApiKey.Kind.SESSION,
        # The console opens on it (signed-in people manage their account there); the
        # management API still takes API keys only.
        scope=scope,
        expires_at=expires_at,
        name="signed-in browser",
        prefix=secret[:DISPLAY_PREFIX_LENGTH],
        key_hash=hash_api_key(secret),
        user=user,  # type: ignore[misc]
        web_session=web_session,
    )
    return key, secret


def browser_key_for(request: HttpRequest) -> ApiKey | None:
    """The signed-in session's own browser key, while it works. The session's data names it
    (server-side: no one else can), so a session whose id Django cycled (a password
    change, a re-authentication) keeps it, re-bound to the new id."""
    key_id = request.session.get(SESSION_KEY_ID)
    user = getattr(request, "person", None)
    if not key_id or user is None or not user.is_authenticated:
        return None
    key = (
        ApiKey.objects.select_related("account__tier", "tier")
        .filter(pk=key_id, kind=ApiKey.Kind.SESSION, user=user, is_active=True)
        .first()
    )
    current = request.session.session_key or ""
    if key is not None and current and key.web_session != current:
        key.web_session = current
        key.save(update_fields=["web_session"])
    return key


def _revoke(keys: list[ApiKey]) -> int:
    """Switch keys off one by one (save, not a bulk update: chat.revocation's signal ends
    their streams in every process)."""
    for key in keys:
        key.is_active = False
        key.save(update_fields=["is_active"])
    return len(keys)


def browser_keys_revoke(
    *, user: AbstractBaseUser, web_sessions: list[str] | None = None, keep_key: int | None = None
) -> int:
    """Revoke the person's signed-in browser keys: of `web_sessions`, or all but `keep_key`."""
    keys = ApiKey.objects.filter(kind=ApiKey.Kind.SESSION, user=user, is_active=True)
    if web_sessions is not None:
        keys = keys.filter(web_session__in=web_sessions)
    if keep_key is not None:
        keys = keys.exclude(pk=keep_key)
    return _revoke(list(keys))


@transaction.atomic
def anonymous_claim(*, anonymous: ApiKey, account: Account) -> int:
    """Move an anonymous browser session's conversations, shares and tool jobs into
    `account` and revoke the anonymous key. Once: the key is locked and must still be an
    active anonymous session; a second claim (another tab, a replay) finds it revoked.
    Returns the number of conversations moved."""
    key = ApiKey.objects.select_for_update().filter(pk=anonymous.pk, kind=ApiKey.Kind.SESSION, is_active=True).first()
    if key is None or key.user_id is not None or key.account_id == account.pk:
        return 0
    source = Account.objects.select_for_update().get(pk=key.account_id)
    if source.user_id is not None:  # a person's account is never emptied into another
        return 0
    moved = Conversation.objects.filter(account=source).update(account=account, owner_id=account.user_id)
    Share.objects.filter(account=source).update(account=account)
    Job.objects.filter(account=source).update(account=account)
    if source.storage_used:
        Account.objects.filter(pk=account.pk).update(storage_used=F("storage_used") + source.storage_used)
        Account.objects.filter(pk=source.pk).update(storage_used=0)
    _revoke([key])
    return moved


def browser_session_bind(request: HttpRequest, user: AbstractBaseUser) -> tuple[ApiKey, str]:
    """Bind this signed-in Django session to a new browser key of the person's account,
    after moving in what the browser's anonymous session held. Returns the key and its
    secret (the `gg_sess` cookie's new value)."""
    account = person_account(user)
    anonymous = session_key_get(secret=presented_session(request))
    if anonymous is not None and anonymous.user_id is None:
        anonymous_claim(anonymous=anonymous, account=account)
    return _session_key_bind(request, user=user, account=account, scope="full")


def _session_key_bind(
    request: HttpRequest, *, user: AbstractBaseUser, account: Account, scope: str
) -> tuple[ApiKey, str]:
    """A new browser key of `account` for this signed-in Django session, now its own."""
    if request.session.session_key is None:
        request.session.save()
    key, secret = browser_key_issue(
        user=user,
        account=account,
        web_session=request.session.session_key or "",
        expires_at=request.session.get_expiry_date(),
        scope=scope,
    )
    request.session[SESSION_KEY_ID] = key.pk
    return key, secret


def wallet_switch(request: HttpRequest, *, user: AbstractBaseUser, organization: Any = None) -> str:
    """The chat and the console of this signed-in session pay from `organization`'s wallet
    (None: the person's own again). The session's browser key is replaced by one of that
    account — full scope for the organization's owners and admins (its console), inference
    only for members (their own usage); billing members hold no keys. Returns the new key's
    secret (the `gg_sess` cookie's new value)."""
    from .organizations import ADMINS, KEY_MAKERS, membership_require

    full, inference = "full", "inference"  # ApiKey.Scope
    scope: str = full
    if organization is None:
        account = person_account(user)
    else:
        membership = membership_require(organization=organization, user=user, roles=KEY_MAKERS)
        account = organization.account
        scope = full if membership.role in ADMINS else inference
    current = browser_key_for(request)
    if current is not None:
        _revoke([current])
    return _session_key_bind(request, user=user, account=account, scope=scope)[1]
