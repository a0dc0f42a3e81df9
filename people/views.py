"""The people's own pages beside allauth's: the account overview, organizations and
invitations (thin: the rules are in people.organizations)."""

from __future__ import annotations

import uuid
from typing import Any

from allauth.account.decorators import reauthentication_required
from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from chat.models import Conversation

from . import erasure, organizations, selectors, services
from .models import Invitation, Role


@require_GET
@login_required
def account_page(request: HttpRequest) -> HttpResponse:
    account = services.person_account(request.user)  # type: ignore[arg-type]
    context = {
        **selectors.person_overview(user=request.user, account=account),
        "currency": settings.GHOSTGPT["CURRENCY"],
    }  # type: ignore[arg-type]
    return render(request, "people/account.html", context)


@require_http_methods(["GET", "POST"])
@login_required
@reauthentication_required
def erasure_page(request: HttpRequest) -> HttpResponse:
    """ "Delete my data": the chats, projects, files and shares — or the whole account (after
    signing in again if the last sign-in is not recent: allauth's reauthentication)."""
    user = request.user
    context: dict[str, Any] = {}
    if request.method == "POST":
        what = request.POST.get("what")
        if what == "data" and request.POST.get("confirm") == "yes":
            counts = erasure.person_data_delete(user=user)
            context["done"] = (
                _("Deleted %(conversations)d chats, %(projects)d projects, %(files)d files and %(shares)d shares.")
                % counts
            )
        elif what == "account":
            expected = getattr(user, "email", "") or user.get_username()
            if (request.POST.get("email") or "").strip().casefold() != expected.casefold():
                context["error"] = _("The email does not match your account's: nothing was deleted.")
            else:
                refusal = erasure.deletion_refusal(user=user)
                if refusal:
                    context["error"] = refusal
                else:
                    logout(request)  # first: signing out revokes the browser's key by its person
                    try:
                        erasure.person_delete(user=user)
                    except erasure.ErasureRefused as exc:  # a charge came in meanwhile
                        return render(request, "people/refused.html", {"message": exc.message}, status=400)
                    return render(request, "people/deleted.html")
        else:
            context["error"] = _("Tick the box to confirm: nothing was deleted.")
    context["refusal"] = erasure.deletion_refusal(user=user)
    context["conversations"] = Conversation.objects.filter(owner=user).count()
    return render(request, "people/delete.html", context, status=400 if context.get("error") else 200)


# --- Organizations ------------------------------------------------------------------------------


def _refused(request: HttpRequest, exc: organizations.OrganizationError) -> HttpResponse:
    return render(request, "people/refused.html", {"message": exc.message}, status=exc.status)


def _int(value: str | None) -> int | None:
    """A form's whole number (empty: None); out of a database id's range is refused."""
    if value in (None, ""):
        return None
    try:
        number = int(value)  # type: ignore[arg-type]
    except ValueError:
        raise organizations.OrganizationError("Not a whole number.") from None
    if not 0 < number < 2**63:
        raise organizations.OrganizationError("Out of range.")
    return number


@require_http_methods(["GET", "POST"])
@login_required
def organizations_page(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        try:
            organization = organizations.organization_create(user=request.user, name=request.POST.get("name", ""))  # type: ignore[arg-type]
        except organizations.OrganizationError as exc:
            return _refused(request, exc)
        return redirect("people_organization", slug=organization.slug)
    memberships = selectors.organizations_of(user=request.user)  # type: ignore[arg-type]
    return render(request, "people/organizations.html", {"memberships": memberships})


@require_GET
@login_required
def organization_page(request: HttpRequest, slug: str) -> HttpResponse:
    found = selectors.organization_for(slug=slug, user=request.user)  # type: ignore[arg-type]
    if found is None:
        raise Http404
    organization, viewer = found
    context = {
        **selectors.organization_page(organization=organization, viewer=viewer),
        "currency": settings.GHOSTGPT["CURRENCY"],
        "roles": [Role.ADMIN, Role.MEMBER, Role.BILLING],
        "new_secret": request.session.pop("gg_new_key_secret", None),
        **_funding(request, organization, viewer),
    }
    return render(request, "people/organization.html", context)


def _funding(request: HttpRequest, organization: Any, viewer: Any) -> dict[str, Any]:
    """ "Add funds" for those who see the money, and the payment they are back from."""
    if viewer.role not in (Role.OWNER, Role.ADMIN, Role.BILLING):
        return {}
    from payments import selectors as payment_selectors
    from payments.services import payment_refresh

    returned = None
    try:
        payment_id = uuid.UUID(request.GET.get("payment", ""))
    except ValueError:  # none, or not a payment's id
        payment_id = None
    if payment_id is not None:
        found = payment_selectors.payment_of(account_id=organization.pk, payment_id=payment_id)
        returned = payment_refresh(found) if found is not None else None
    return {"funding": payment_selectors.payment_options(), "returned_payment": returned}


ACTIONS = {"invite", "revoke", "role", "remove", "leave", "transfer", "keys_off", "limits", "key", "fund", "budget"}


@require_POST
@login_required
def organization_action(request: HttpRequest, slug: str, action: str) -> HttpResponse:
    """One form on the organization's page; every rule is in people.organizations."""
    found = selectors.organization_for(slug=slug, user=request.user)  # type: ignore[arg-type]
    if found is None or action not in ACTIONS:
        raise Http404
    organization, viewer = found
    user: Any = request.user
    form = request.POST
    try:
        if action in {"invite", "revoke", "role", "remove", "transfer", "keys_off", "limits", "budget"}:
            _mfa_check(request, viewer)
        member = None
        if "member" in form:
            member = organization.memberships.filter(pk=_int(form["member"])).first()
            if member is None:
                raise organizations.OrganizationError("No such member.", 404)
        if action == "invite":
            url = request.build_absolute_uri("/accounts/invitations/") + "{token}/"
            organizations.invitation_create(
                organization=organization,
                by=user,
                email=form.get("email", ""),
                role=form.get("role", ""),
                accept_url=url,
            )
        elif action == "revoke":
            invitation = organization.invitations.filter(pk=_int(form.get("invitation"))).first()
            if invitation is None:
                raise organizations.OrganizationError("No such invitation.", 404)
            organizations.invitation_revoke(invitation=invitation, by=user)
        elif action == "leave":
            organizations.member_remove(membership=viewer, by=user)
            return redirect("people_organizations")
        elif action == "key":
            _, secret = organizations.member_key_create(organization=organization, user=user, name=form.get("name", ""))
            request.session["gg_new_key_secret"] = secret  # shown once, on the page it redirects to
        elif action == "fund":
            return redirect(_fund(request, organization, viewer))
        elif member is None:
            raise organizations.OrganizationError("Name a member.")
        elif action == "role":
            organizations.member_role_set(membership=member, by=user, role=form.get("role", ""))
        elif action == "remove":
            organizations.member_remove(membership=member, by=user)
        elif action == "transfer":
            organizations.ownership_transfer(organization=organization, by=user, to=member)
        elif action == "keys_off":
            organizations.member_keys_disable(membership=member, by=user)
        elif action == "budget":
            amount = form.get("amount", "").strip()
            organizations.member_budget_set(
                membership=member,
                by=user,
                amount=_decimal(amount) if amount else None,
                period=form.get("period", "") if form.get("period", "") in ("day", "week", "month") else "",
            )
        elif action == "limits":
            organizations.member_limits_set(
                membership=member, by=user, rpm=_int(form.get("rpm")), tpm=_int(form.get("tpm"))
            )
    except organizations.OrganizationError as exc:
        return _refused(request, exc)
    return redirect("people_organization", slug=organization.slug)


def _fund(request: HttpRequest, organization: Any, viewer: Any) -> str:
    """Owners, admins and billing add funds to the organization's wallet: the payment, and
    the provider's page to pay it on (back to this page after)."""
    from chat.api.errors import ApiError, count_or_429
    from chat.billing.ratelimit import Limits
    from payments.services import PaymentError, payment_start

    if viewer.role not in (Role.OWNER, Role.ADMIN, Role.BILLING):
        raise organizations.OrganizationError("Only the owner, admins and billing add funds.", 403)
    back = request.build_absolute_uri(f"/accounts/organizations/{organization.slug}/") + "?payment={payment}"
    limits = Limits(f"payment-create:{organization.pk}", settings.PAYMENTS["CREATE_RATE"], None)
    try:
        payment = payment_start(
            account=organization.account,
            user=request.user,  # type: ignore[arg-type]
            provider=request.POST.get("provider", ""),
            amount=_decimal(request.POST.get("amount", "")),
            return_url=back,
            cancel_url=back,
            admit=lambda: count_or_429(limits, "payments started"),
        )
    except PaymentError as exc:
        raise organizations.OrganizationError(exc.message, exc.status) from None
    except ApiError as exc:  # too many payments started this minute
        raise organizations.OrganizationError(exc.message, exc.status) from None
    return payment.redirect_url


def _decimal(value: str) -> Any:
    from decimal import Decimal, InvalidOperation

    try:
        return Decimal(value)
    except InvalidOperation:
        raise organizations.OrganizationError("The amount must be a number.") from None


def _mfa_check(request: HttpRequest, viewer: Any) -> None:
    """Owners and admins act only after a second factor, where the operator requires it."""
    if not settings.PEOPLE["MFA_REQUIRED_FOR_ORG_ADMINS"] or viewer.role not in (Role.OWNER, Role.ADMIN):
        return
    from allauth.account.authentication import get_authentication_records

    if not any(record.get("method") == "mfa" for record in get_authentication_records(request, request.user)):
        raise organizations.OrganizationError(
            "This organization's admins act only after signing in with a second factor: turn on two-factor "
            "authentication and sign in again.",
            403,
        )


@require_POST
@login_required
def wallet_switch(request: HttpRequest) -> HttpResponse:
    """Which wallet this session's chat and console pay from: `organization` (a slug) or,
    empty, the person's own; then back to `next` (the chat or the console)."""
    user: Any = request.user
    slug = request.POST.get("organization", "")
    organization = None
    try:
        if slug:
            found = selectors.organization_for(slug=slug, user=user)
            if found is None:
                raise organizations.OrganizationError("No such organization.", 404)
            organization, viewer = found
            _mfa_check(request, viewer)
        request._gg_sess_cookie = services.wallet_switch(  # type: ignore[attr-defined]
            request, user=user, organization=organization
        )
    except organizations.OrganizationError as exc:
        return _refused(request, exc)
    target = request.POST.get("next", "/")
    return redirect(target if target in ("/", "/console") else "/")


@require_http_methods(["GET", "POST"])
@login_required
def invitation_page(request: HttpRequest, token: str) -> HttpResponse:
    if request.method == "POST":
        try:
            membership = organizations.invitation_accept(token=token, user=request.user)  # type: ignore[arg-type]
        except organizations.OrganizationError as exc:
            return _refused(request, exc)
        return redirect("people_organization", slug=membership.organization.slug)
    invitation = (
        Invitation.objects.select_related("organization__account")
        .filter(token_hash=organizations.token_hash(token))
        .first()
    )
    return render(request, "people/invitation.html", {"invitation": invitation})
