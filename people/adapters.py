"""django-allauth, configured for GhostGPT: who may sign up, which address a limit counts,
and what ending a session does to its browser key."""

from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from allauth.usersessions.adapter import DefaultUserSessionsAdapter
from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.utils.translation import gettext as _

from chat.network import client_address

from . import services


def _domain_allowed(email: str) -> bool:
    domains = settings.PEOPLE["SIGNUP_DOMAINS"]
    return not domains or email.rsplit("@", 1)[-1].lower() in domains


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest) -> bool:
        return bool(settings.PEOPLE["SIGNUP"])

    def clean_email(self, email: str) -> str:
        email = super().clean_email(email)
        if not _domain_allowed(email):
            raise ValidationError(
                _("This site accepts addresses at %(domains)s only.")
                % {"domains": ", ".join(settings.PEOPLE["SIGNUP_DOMAINS"])}
            )
        return email

    def get_client_ip(self, request: HttpRequest) -> str:
        """The address allauth's rate limits count: the client's, resolved behind the
        trusted proxies only (chat.network), never a header anyone can send."""
        address = client_address(request.META)
        return str(address) if address is not None else "unknown"


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest, sociallogin: Any) -> bool:
        """The operator's single sign-on admits its people (an allowed domain, when the
        operator names some), even with open sign-up off."""
        email = (sociallogin.user.email or "").strip()
        return bool(email) and _domain_allowed(email)


class UserSessionsAdapter(DefaultUserSessionsAdapter):
    def end_sessions(self, sessions: list[Any]) -> None:
        """ "Sign out" on the session list: their browser keys go too, streams included."""
        for session in sessions:
            services.browser_keys_revoke(user=session.user, web_sessions=[session.session_key])
        super().end_sessions(sessions)
