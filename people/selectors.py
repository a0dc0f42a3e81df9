"""Reads about people: what their account page shows."""

from __future__ import annotations

from typing import Any

from allauth.mfa.models import Authenticator
from allauth.usersessions.models import UserSession
from django.contrib.auth.base_user import AbstractBaseUser

from chat.models import Account


def person_overview(*, user: AbstractBaseUser, account: Account) -> dict[str, Any]:
    return {
        "account": account,
        "mfa": sorted(set(Authenticator.objects.filter(user=user).values_list("type", flat=True))),
        "sessions": UserSession.objects.filter(user=user).count(),
        "conversations": account.conversations.count(),
    }
