"""What a single sign-on's claims grant: the person's groups (GHOSTGPT_OIDC_GROUPS_CLAIM)
mapped to their account's tier (GHOSTGPT_OIDC_TIER_MAP, first match wins), at every SSO
sign-in — the provider stays the source of truth, so leaving a group there takes the tier
back here at the next sign-in."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from chat.models import Account, Tier


def groups_of(extra_data: dict[str, Any]) -> list[str]:
    """The groups the userinfo (or else the id_token) names: a list, or one string."""
    claim = settings.PEOPLE["SSO_GROUPS_CLAIM"]
    for part in ("userinfo", "id_token"):
        value = (extra_data.get(part) or {}).get(claim)
        if isinstance(value, str):
            return [value]
        if isinstance(value, list):
            return [str(item) for item in value if isinstance(item, (str, int))]
    return []


def mapped(groups: list[str], pairs: list[tuple[str, str]]) -> str | None:
    """The value of the first pair whose group the person is in."""
    held = set(groups)
    return next((value for group, value in pairs if group in held), None)


def tier_apply(*, account: Account, groups: list[str]) -> None:
    """Set the account's tier from the groups, where the map names one for them."""
    name = mapped(groups, settings.PEOPLE["SSO_TIER_MAP"])
    if name is None:
        return
    tier = Tier.objects.filter(name=name).first()
    if tier is None or tier.pk == account.tier_id:
        return
    account.tier = tier
    account.save(update_fields=["tier"])  # audited as an account change (audit.receivers)


def organization_apply(*, user: Any, email: str, groups: list[str]) -> None:
    """Join the organization the provider is bound to (GHOSTGPT_OIDC_ORGANIZATION) with the
    mapped role; at later sign-ins the role follows the groups. The owner is never touched."""
    from people.models import Membership, Organization, Role
    from people.organizations import member_keys_off, record_sso_join

    slug = settings.PEOPLE["SSO_ORGANIZATION"]
    domains = settings.PEOPLE["SSO_ORGANIZATION_DOMAINS"]
    if not slug or (domains and email.rsplit("@", 1)[-1].lower() not in domains):
        return
    organization = Organization.objects.filter(slug=slug).first()
    if organization is None:
        return
    role = mapped(groups, settings.PEOPLE["SSO_ROLE_MAP"]) or Role.MEMBER
    if role not in (Role.ADMIN, Role.MEMBER, Role.BILLING):
        role = Role.MEMBER
    membership = Membership.objects.filter(organization=organization, user=user).first()
    if membership is None:
        membership = Membership.objects.create(organization=organization, user=user, role=role)
        record_sso_join(membership, before=None)
    elif membership.role not in (Role.OWNER, role):
        before = membership.role
        membership.role = role
        membership.save(update_fields=["role"])
        member_keys_off(membership, sessions_only=role != Role.BILLING)
        record_sso_join(membership, before=before)
