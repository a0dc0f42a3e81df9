"""Reads about people: what their account page shows."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from allauth.mfa.models import Authenticator
from allauth.usersessions.models import UserSession
from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import Sum
from django.utils import timezone

from audit.selectors import audit_events
from chat.models import Account, ApiKey, Budget, UsageHour
from chat.selectors import budget_body

from .models import Membership, Organization, Role


def person_overview(*, user: AbstractBaseUser, account: Account) -> dict[str, Any]:
    return {
        "account": account,
        "mfa": sorted(set(Authenticator.objects.filter(user=user).values_list("type", flat=True))),
        "sessions": UserSession.objects.filter(user=user).count(),
        "conversations": account.conversations.count(),
    }


def organizations_of(*, user: AbstractBaseUser) -> list[Membership]:
    return list(
        Membership.objects.filter(user=user).select_related("organization__account").order_by("organization__slug")
    )


def organization_for(*, slug: str, user: AbstractBaseUser) -> tuple[Organization, Membership] | None:
    """The organization and the person's membership in it; None for a stranger."""
    membership = (
        Membership.objects.select_related("organization__account__tier")
        .filter(organization__slug=slug, user=user)
        .first()
    )
    return (membership.organization, membership) if membership is not None else None


def organization_page(*, organization: Organization, viewer: Membership) -> dict[str, Any]:
    """What the organization's page shows `viewer`: owners, admins and billing see every
    member's spend this month; a member sees their own. Keys: admins see all, members
    their own, billing none. Never what anyone wrote."""
    month = timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    keys = ApiKey.objects.filter(account_id=organization.pk, kind=ApiKey.Kind.API).select_related("user")
    makers = dict(ApiKey.objects.filter(account_id=organization.pk).values_list("pk", "user_id"))
    spend: dict[int | None, dict[str, Any]] = {}
    for row in (
        UsageHour.objects.filter(account_id=organization.pk, hour__gte=month)
        .values("key_id")
        .annotate(cost=Sum("cost"), requests=Sum("requests"))
    ):
        mine = spend.setdefault(makers.get(row["key_id"]), {"cost": Decimal(0), "requests": 0})
        mine["cost"] += row["cost"] or 0
        mine["requests"] += row["requests"] or 0
    sees_all = viewer.role in (Role.OWNER, Role.ADMIN, Role.BILLING)
    budgets = {
        b.user_id: budget_body(b)
        for b in Budget.objects.select_related("account").filter(account_id=organization.pk, scope="member")
    }
    members = [
        {
            "membership": m,
            "usage": spend.get(m.user_id, {"cost": Decimal(0), "requests": 0}),
            "budget": budgets.get(m.user_id),
        }
        for m in organization.memberships.select_related("user")
        if sees_all or m.pk == viewer.pk
    ]
    if viewer.role in (Role.OWNER, Role.ADMIN):
        visible_keys = list(keys)
    elif viewer.role == Role.MEMBER:
        visible_keys = [key for key in keys if key.user_id == viewer.user_id]
    else:
        visible_keys = []
    return {
        "organization": organization,
        "viewer": viewer,
        "is_admin": viewer.role in (Role.OWNER, Role.ADMIN),
        "members": members,
        "keys": visible_keys,
        "invitations": (
            list(organization.invitations.filter(accepted_at__isnull=True, revoked_at__isnull=True))
            if viewer.role in (Role.OWNER, Role.ADMIN)
            else []
        ),
        "balance": organization.account.balance if sees_all else None,
        # Its audit trail (the newest 50; all of it through GET /api/v1/audit with its key).
        "trail": list(audit_events(account_id=organization.pk)[:50]) if viewer.role in (Role.OWNER, Role.ADMIN) else [],
        "month_spend": sum((u["usage"]["cost"] for u in members), Decimal(0)),
    }


def wallets_for(*, user: AbstractBaseUser) -> list[dict[str, Any]]:
    """The wallets the person may chat on: their own (slug "") and each organization they
    hold keys in (not as billing)."""
    own = Account.objects.filter(user=user).values_list("pk", flat=True).first()
    wallets = [{"slug": "", "account_id": own, "name": ""}]
    for membership in organizations_of(user=user):
        if membership.role != Role.BILLING:
            org = membership.organization
            wallets.append({"slug": org.slug, "account_id": org.pk, "name": org.account.name})
    return wallets
