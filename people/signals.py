"""Signing in binds the chat to the person's account; signing out, ending a session and
changing the password take the browser keys back (people.services)."""

from __future__ import annotations

from typing import Any

from allauth.account.signals import password_changed, password_reset, password_set
from allauth.account.signals import user_logged_in as allauth_logged_in
from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.db import transaction
from django.db.models.signals import post_delete, post_save, pre_delete
from django.dispatch import receiver
from django.http import HttpRequest

from chat import keycache

from . import services
from .middleware import CLEAR
from .models import Membership
from .sso import mapping


@receiver(user_logged_in, dispatch_uid="people-signed-in")
def signed_in(sender: type, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if request is None or not hasattr(request, "session"):
        return
    request._gg_sess_cookie = services.browser_session_bind(request, user)[1]  # type: ignore[attr-defined]


@receiver(user_logged_out, dispatch_uid="people-signed-out")
def signed_out(sender: type, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if request is None or user is None or not hasattr(request, "session"):
        return
    services.browser_key_for(request)  # re-bound to this session's id, if Django cycled it
    if request.session.session_key:
        services.browser_keys_revoke(user=user, web_sessions=[request.session.session_key])
    request._gg_sess_cookie = CLEAR  # type: ignore[attr-defined]


@receiver(password_changed, dispatch_uid="people-password-changed")
@receiver(password_set, dispatch_uid="people-password-set")
def password_changed_here(sender: type, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    """Every other signed-in browser loses its key; this one stays signed in."""
    kept = services.browser_key_for(request)  # re-bound to the id Django just cycled
    services.browser_keys_revoke(user=user, keep_key=kept.pk if kept is not None else None)


@receiver(password_reset, dispatch_uid="people-password-reset")
def password_was_reset(sender: type, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    services.browser_keys_revoke(user=user)


@receiver(allauth_logged_in, dispatch_uid="people-sso-claims")
def sso_claims(sender: type, request: HttpRequest, user: Any, sociallogin: Any = None, **kwargs: Any) -> None:
    """A single sign-on: what the provider's groups grant (people.sso.mapping)."""
    # The account names the app's provider_id ("sso"); its provider class says OpenID Connect.
    if sociallogin is None or sociallogin.account.get_provider(request).id != "openid_connect":
        return
    groups = mapping.groups_of(sociallogin.account.extra_data or {})
    mapping.tier_apply(account=services.person_account(user), groups=groups)
    mapping.organization_apply(user=user, email=user.email or "", groups=groups)


@receiver(post_save, sender=Membership, dispatch_uid="people-membership-saved")
@receiver(post_delete, sender=Membership, dispatch_uid="people-membership-deleted")
def membership_changed(sender: type, **kwargs: Any) -> None:
    """A member's limits live in the keys' authentication row: every process's key cache
    forgets them (chat.keycache)."""
    keycache.bump()
    transaction.on_commit(keycache.bump)


@receiver(pre_delete, sender=settings.AUTH_USER_MODEL, dispatch_uid="people-person-deleted")
def person_deleted(sender: type, instance: Any, **kwargs: Any) -> None:
    """A person deleted leaves their organizations: the keys they made there go off (their
    maker no longer answers for them), streams included."""
    from .organizations import member_keys_off

    for membership in Membership.objects.filter(user=instance):
        member_keys_off(membership)
