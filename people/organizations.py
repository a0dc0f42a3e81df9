"""Writes about organizations: making one, inviting, joining, roles, leaving, and the keys
members made (people.models says what an organization is).

Who may do what:

- owner and admins: invite, withdraw an invitation, change a role (among admin, member,
  billing), remove a member, disable a member's keys, set a member's limits — admins on
  anyone but the owner; only the owner transfers ownership;
- owner, admins and members make keys for the organization; billing sees the money only;
- anyone leaves, the owner after transferring ownership.

Everything here is recorded in the audit trail with the organization's account.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import Any

from allauth.account.models import EmailAddress
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from audit import services as audit
from chat.models import Account, ApiKey
from chat.services import TooManyKeys, api_key_create, tier_get

from .models import Invitation, Membership, Organization, Role

ADMINS: tuple[str, ...] = ("owner", "admin")  # Role's values
KEY_MAKERS: tuple[str, ...] = (*ADMINS, "member")


class OrganizationError(Exception):
    """A refused organization action; `status` is the HTTP status it answers with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _forbidden(message: str = "Only the organization's owner and admins may do that.") -> OrganizationError:
    return OrganizationError(message, 403)


def token_hash(token: str) -> str:
    return hashlib.sha256(f"invitation:{token}".encode()).hexdigest()


def _record(action: str, organization: Organization, **fields: Any) -> None:
    audit.record(action, account_id=organization.account_id, target=f"organization:{organization.slug}", **fields)


def membership_require(*, organization: Organization, user: AbstractBaseUser, roles: tuple[str, ...]) -> Membership:
    """The person's membership, if its role is one of `roles`; 403 otherwise (404 for a
    stranger: an organization's existence is no one else's business)."""
    membership = Membership.objects.filter(organization=organization, user=user).first()
    if membership is None:
        raise OrganizationError("No such organization.", 404)
    if membership.role not in roles:
        raise _forbidden()
    return membership


def _unique_slug(name: str) -> str:
    base = slugify(name)[:48] or "org"
    slug = base
    while Organization.objects.filter(slug=slug).exists():
        slug = f"{base}-{secrets.token_hex(3)}"
    return slug


@transaction.atomic
def organization_create(*, user: AbstractBaseUser, name: str) -> Organization:
    """A new organization with an empty wallet of the sign-up tier; its maker owns it."""
    name = name.strip()
    if not name or len(name) > 100:
        raise OrganizationError("Give the organization a name of 1 to 100 characters.")
    cap = settings.PEOPLE["MAX_ORGANIZATIONS"]
    # Each organization is a wallet with its tier's limits: a cap, so limits cannot be farmed.
    if Membership.objects.filter(user=user, role=Role.OWNER).count() >= cap:
        raise OrganizationError(f"You own {cap} organizations already: the most one person may own.", 429)
    account = Account.objects.create(name=name, tier=tier_get(settings.PEOPLE["SIGNUP_TIER"]))
    organization = Organization.objects.create(account=account, slug=_unique_slug(name))
    Membership.objects.create(organization=organization, user=user, role=Role.OWNER)
    _record("organization.create", organization, after={"name": name})
    return organization


def invitation_create(
    *, organization: Organization, by: AbstractBaseUser, email: str, role: str, accept_url: str
) -> Invitation:
    """Invite `email` with `role` (not owner: ownership is transferred), mailing the link.
    `accept_url` is the absolute link with "{token}" where the secret goes."""
    membership_require(organization=organization, user=by, roles=ADMINS)
    if role not in (Role.ADMIN, Role.MEMBER, Role.BILLING):
        raise OrganizationError("Invite as admin, member or billing.")
    email = email.strip().lower()
    try:
        if len(email) > 254:  # the column's (and SMTP's) limit
            raise ValidationError("too long")
        validate_email(email)
    except ValidationError:
        raise OrganizationError("That is not an email address.") from None
    per_hour = settings.PEOPLE["INVITATIONS_PER_HOUR"]
    recent = Invitation.objects.filter(organization=organization, created_at__gte=timezone.now() - timedelta(hours=1))
    if recent.count() >= per_hour:  # our mail server is no one's bulk mailer
        raise OrganizationError(f"{per_hour} invitations an hour at most: try again later.", 429)
    if Membership.objects.filter(organization=organization, user__emailaddress__email__iexact=email).exists():
        raise OrganizationError("That person is a member already.")
    token = secrets.token_urlsafe(32)
    invitation = Invitation.objects.create(
        organization=organization,
        email=email,
        role=role,
        token_hash=token_hash(token),
        invited_by=by,  # type: ignore[misc]
        expires_at=timezone.now() + timedelta(days=settings.PEOPLE["INVITATION_DAYS"]),
    )
    send_mail(
        f"{settings.ACCOUNT_EMAIL_SUBJECT_PREFIX}You are invited to {organization.account.name}",
        f"{getattr(by, 'email', '')} invites you to join {organization.account.name} on GhostGPT as {role}.\n\n"
        f"Accept (sign in or sign up with this address first): {accept_url.format(token=token)}\n\n"
        f"The link works until {invitation.expires_at:%Y-%m-%d %H:%M} UTC.",
        None,
        [email],
    )
    _record("member.invite", organization, after={"email": email, "role": role})
    return invitation


def invitation_revoke(*, invitation: Invitation, by: AbstractBaseUser) -> None:
    membership_require(organization=invitation.organization, user=by, roles=ADMINS)
    if invitation.accepted_at is None and invitation.revoked_at is None:
        invitation.revoked_at = timezone.now()
        invitation.save(update_fields=["revoked_at"])
        _record("member.invite_revoke", invitation.organization, before={"email": invitation.email})


@transaction.atomic
def invitation_accept(*, token: str, user: AbstractBaseUser) -> Membership:
    """Join through an invitation: it must work (not expired, revoked or used) and be for
    one of the person's verified addresses — an invitation for someone else is refused."""
    invitation = (
        Invitation.objects.select_for_update()
        .select_related("organization")
        .filter(token_hash=token_hash(token))
        .first()
    )
    if invitation is None or invitation.revoked_at is not None:
        raise OrganizationError("This invitation does not exist or was withdrawn.", 404)
    if invitation.accepted_at is not None:
        raise OrganizationError("This invitation was used already.", 410)
    if invitation.expires_at <= timezone.now():
        raise OrganizationError("This invitation has expired: ask for a new one.", 410)
    if not EmailAddress.objects.filter(user=user, email__iexact=invitation.email, verified=True).exists():
        raise OrganizationError(
            "This invitation is for another address: sign in with the address it was sent to (verified).", 403
        )
    membership, created = Membership.objects.get_or_create(
        organization=invitation.organization, user=user, defaults={"role": invitation.role}
    )
    invitation.accepted_at = timezone.now()
    invitation.accepted_by = user  # type: ignore[assignment]
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    if created:
        _record("member.join", invitation.organization, after={"email": invitation.email, "role": invitation.role})
    return membership


def member_keys_off(membership: Membership, *, sessions_only: bool = False) -> int:
    """Switch off every key the member holds for the organization (or only their signed-in
    browsers' keys, whose scope follows their role), one by one (save, not a bulk update:
    chat.revocation's signal ends their live streams in every process)."""
    keys = ApiKey.objects.filter(account_id=membership.organization_id, user_id=membership.user_id, is_active=True)
    if sessions_only:
        keys = keys.filter(kind=ApiKey.Kind.SESSION)
    count = 0
    for key in keys:
        key.is_active = False
        key.save(update_fields=["is_active"])
        count += 1
    return count


def _acting_on(membership: Membership, by: AbstractBaseUser) -> Membership:
    """The actor's own membership, allowed to act on `membership`: admins act on anyone
    but the owner."""
    actor = membership_require(organization=membership.organization, user=by, roles=ADMINS)
    if membership.role == Role.OWNER and actor.role != Role.OWNER:
        raise _forbidden("Only the owner may act on the owner.")
    return actor


def member_keys_disable(*, membership: Membership, by: AbstractBaseUser) -> int:
    _acting_on(membership, by)
    count = member_keys_off(membership)
    _record("member.keys_disable", membership.organization, after={"user": membership.user_id, "keys": count})
    return count


def member_role_set(*, membership: Membership, by: AbstractBaseUser, role: str) -> None:
    _acting_on(membership, by)
    if role not in (Role.ADMIN, Role.MEMBER, Role.BILLING) or membership.role == Role.OWNER:
        raise OrganizationError("Roles change among admin, member and billing; the owner transfers ownership.")
    before = membership.role
    membership.role = role
    membership.save(update_fields=["role"])
    # Billing sees money and holds no keys; any other change re-scopes their browsers' keys
    # (their chat falls back to their own wallet until they switch again).
    member_keys_off(membership, sessions_only=role != Role.BILLING)
    _record(
        "member.role",
        membership.organization,
        before={"role": before},
        after={"user": membership.user_id, "role": role},
    )


def member_limits_set(*, membership: Membership, by: AbstractBaseUser, rpm: int | None, tpm: int | None) -> None:
    """The member's own RPM/TPM: one counter for all their keys of the organization (their
    chat on its wallet included), within the organization's tier (chat.api.auth)."""
    _acting_on(membership, by)
    for value in (rpm, tpm):
        if value is not None and not 0 < value <= 10**9:
            raise OrganizationError("Limits are positive whole numbers (or empty for the tier's).")
    before = {"rpm": membership.rpm, "tpm": membership.tpm}
    membership.rpm, membership.tpm = rpm, tpm
    membership.save(update_fields=["rpm", "tpm"])  # every key cache forgets (people.signals)
    _record(
        "member.limits",
        membership.organization,
        before=before,
        after={"user": membership.user_id, "rpm": rpm, "tpm": tpm},
    )


@transaction.atomic
def member_remove(*, membership: Membership, by: AbstractBaseUser) -> int:
    """Remove a member (or, `by` being them, leave): their keys for the organization go off.
    The owner leaves only after transferring ownership."""
    if membership.user_id == by.pk:
        if membership.role == Role.OWNER:
            raise OrganizationError("Transfer ownership to another member before leaving.")
        action = "member.leave"
    else:
        _acting_on(membership, by)
        action = "member.remove"
    count = member_keys_off(membership)
    membership.delete()
    _record(action, membership.organization, before={"user": membership.user_id, "role": membership.role})
    return count


@transaction.atomic
def ownership_transfer(*, organization: Organization, by: AbstractBaseUser, to: Membership) -> None:
    owner = membership_require(organization=organization, user=by, roles=("owner",))
    if to.organization_id != organization.pk or to.pk == owner.pk:
        raise OrganizationError("Transfer ownership to another member of this organization.")
    owner.role, to.role = Role.ADMIN, Role.OWNER
    owner.save(update_fields=["role"])
    to.save(update_fields=["role"])
    _record("member.owner", organization, before={"user": owner.user_id}, after={"user": to.user_id})


def member_key_create(*, organization: Organization, user: AbstractBaseUser, name: str) -> tuple[ApiKey, str]:
    """A key for the organization's wallet, made by a member for their own use (inference
    only; the member's limits apply to it with their other keys)."""
    membership_require(organization=organization, user=user, roles=KEY_MAKERS)
    name = name.strip()[:100] or "key"
    try:
        with transaction.atomic():
            return api_key_create(account=organization.account, name=name, scope=ApiKey.Scope.INFERENCE, user=user)
    except TooManyKeys as exc:
        raise OrganizationError(
            f"The organization holds its limit of {exc.limit} API keys: an admin may delete some.", 429
        ) from None


def record_sso_join(membership: Membership, *, before: str | None) -> None:
    """A single sign-on joined the person or changed their role (people.sso.mapping)."""
    action = "member.join" if before is None else "member.role"
    _record(
        action,
        membership.organization,
        before={"role": before} if before else None,
        after={"user": membership.user_id, "role": membership.role, "via": "sso"},
    )


def member_budget_set(*, membership: Membership, by: AbstractBaseUser, amount: Any, period: str) -> None:
    """The member's budget on the organization's wallet (all their keys and their chat on
    it): an amount per day, week or month, or None to lift it."""
    from chat.services import BudgetRefused, budget_set

    _acting_on(membership, by)
    try:
        budget_set(
            account=membership.organization.account, scope="member", user=membership.user, amount=amount, period=period
        )
    except BudgetRefused as exc:
        raise OrganizationError(exc.message) from None
