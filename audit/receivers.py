"""What is recorded: receivers of the signals that every way of changing these things
sends — the console, the management and admin APIs, the Django admin, the CLI — so no
path around the trail exists. Secrets never reach it: keys by prefix, no passwords, no
TOTP seeds, no recovery codes."""

from __future__ import annotations

from typing import Any

from allauth.account import signals as account_signals
from allauth.mfa import signals as mfa_signals
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver

from chat.models import Account, ApiKey, Budget, LedgerEntry, ModelPrice, Tier

from . import services

AUDITED_KEYS = (ApiKey.Kind.API, ApiKey.Kind.AGENT)  # browser sessions come and go with sign-ins
KEY_FIELDS = (
    "name",
    "scope",
    "is_active",
    "disabled_by_operator",
    "expires_at",
    "allowed_models",
    "tier_id",
    "rpm_override",
    "tpm_override",
)
ACCOUNT_FIELDS = ("name", "is_active", "tier_id", "membership_expires_at")
PRICE_FIELDS = (
    "prompt_per_million",
    "completion_per_million",
    "cached_prompt_per_million",
    "cache_write_per_million",
    "reasoning_per_million",
    "per_image",
    "per_audio_second",
)
TIER_FIELDS = ("rpm", "tpm", "max_api_keys", "storage_bytes")
BUDGET_FIELDS = ("amount", "period")


def _values(instance: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    return {field: getattr(instance, field) for field in fields}


def _remember_before(sender: type, instance: Any, fields: tuple[str, ...]) -> None:
    if instance.pk is None:
        instance._audit_before = None
        return
    old = sender.objects.filter(pk=instance.pk).values(*fields).first()  # type: ignore[attr-defined]
    instance._audit_before = old


def _changes(instance: Any, fields: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    before = getattr(instance, "_audit_before", None) or {}
    after = _values(instance, fields)
    changed = [field for field in fields if field in before and before[field] != after[field]]
    return {f: before[f] for f in changed}, {f: after[f] for f in changed}


# --- Sign-in, sign-out, the person's own settings -------------------------------------------


@receiver(user_logged_in, dispatch_uid="audit-signed-in")
def signed_in(sender: type, request: Any, user: Any, **kwargs: Any) -> None:
    account = Account.objects.filter(user=user).values_list("pk", flat=True).first()
    services.record("signin.success", account_id=account, target=f"user:{user.pk}")


@receiver(user_login_failed, dispatch_uid="audit-sign-in-failed")
def sign_in_failed(sender: type, credentials: dict[str, Any], request: Any = None, **kwargs: Any) -> None:
    login = str(credentials.get("email") or credentials.get("username") or credentials.get("login") or "")
    services.record_failed_sign_in(login=login)


@receiver(user_logged_out, dispatch_uid="audit-signed-out")
def signed_out(sender: type, request: Any, user: Any, **kwargs: Any) -> None:
    if user is not None:
        services.record("signout", target=f"user:{user.pk}")


@receiver(account_signals.user_signed_up, dispatch_uid="audit-signed-up")
def signed_up(sender: type, request: Any, user: Any, **kwargs: Any) -> None:
    services.record("signup", target=f"user:{user.pk}", label=user.email)


@receiver(account_signals.password_changed, dispatch_uid="audit-password-changed")
@receiver(account_signals.password_set, dispatch_uid="audit-password-set")
def password_changed(sender: type, request: Any, user: Any, **kwargs: Any) -> None:
    services.record("password.change", target=f"user:{user.pk}")


@receiver(account_signals.password_reset, dispatch_uid="audit-password-reset")
def password_reset(sender: type, request: Any, user: Any, **kwargs: Any) -> None:
    services.record("password.reset", target=f"user:{user.pk}", label=user.email)


@receiver(account_signals.email_confirmed, dispatch_uid="audit-email-confirmed")
def email_confirmed(sender: type, request: Any, email_address: Any, **kwargs: Any) -> None:
    services.record("email.verify", target=f"user:{email_address.user_id}")


@receiver(account_signals.email_changed, dispatch_uid="audit-email-changed")
def email_changed(sender: type, request: Any, user: Any, **kwargs: Any) -> None:
    services.record("email.change", target=f"user:{user.pk}")


@receiver(mfa_signals.authenticator_added, dispatch_uid="audit-mfa-added")
def mfa_added(sender: type, request: Any, user: Any, authenticator: Any, **kwargs: Any) -> None:
    services.record("mfa.add", target=f"user:{user.pk}", after={"type": authenticator.type})


@receiver(mfa_signals.authenticator_removed, dispatch_uid="audit-mfa-removed")
def mfa_removed(sender: type, request: Any, user: Any, authenticator: Any, **kwargs: Any) -> None:
    services.record("mfa.remove", target=f"user:{user.pk}", before={"type": authenticator.type})


@receiver(mfa_signals.authenticator_reset, dispatch_uid="audit-mfa-reset")
def mfa_reset(sender: type, request: Any, user: Any, authenticator: Any, **kwargs: Any) -> None:
    services.record("mfa.reset", target=f"user:{user.pk}", after={"type": authenticator.type})


@receiver(post_delete, sender=get_user_model(), dispatch_uid="audit-person-deleted")
def person_deleted(sender: type, instance: Any, **kwargs: Any) -> None:
    services.record("person.delete", target=f"user:{instance.pk}", label="")
    services.pseudonymise(user_id=instance.pk)


# --- Keys ---------------------------------------------------------------------------------


@receiver(pre_save, sender=ApiKey, dispatch_uid="audit-key-before")
def key_before(sender: type, instance: ApiKey, **kwargs: Any) -> None:
    if instance.kind in AUDITED_KEYS:
        _remember_before(sender, instance, KEY_FIELDS)


@receiver(post_save, sender=ApiKey, dispatch_uid="audit-key-saved")
def key_saved(sender: type, instance: ApiKey, created: bool, **kwargs: Any) -> None:
    if instance.kind not in AUDITED_KEYS:
        return
    target = f"key:{instance.prefix}"
    if created:
        services.record(
            "key.create", account_id=instance.account_id, target=target, after=_values(instance, KEY_FIELDS)
        )
        return
    before, after = _changes(instance, KEY_FIELDS)
    if before:
        action = "key.disable" if after.get("is_active") is False else "key.update"
        services.record(action, account_id=instance.account_id, target=target, before=before, after=after)


@receiver(post_delete, sender=ApiKey, dispatch_uid="audit-key-deleted")
def key_deleted(sender: type, instance: ApiKey, **kwargs: Any) -> None:
    if instance.kind in AUDITED_KEYS:
        services.record("key.delete", account_id=instance.account_id, target=f"key:{instance.prefix}")


# --- Accounts, money, prices, tiers ----------------------------------------------------------


def _anonymous(account: Account) -> bool:
    return account.user_id is None and account.name == "anonymous"


@receiver(pre_save, sender=Account, dispatch_uid="audit-account-before")
def account_before(sender: type, instance: Account, **kwargs: Any) -> None:
    if not _anonymous(instance):
        _remember_before(sender, instance, ACCOUNT_FIELDS)


@receiver(post_save, sender=Account, dispatch_uid="audit-account-saved")
def account_saved(sender: type, instance: Account, created: bool, **kwargs: Any) -> None:
    if _anonymous(instance):
        return
    if created:
        services.record("account.create", account_id=instance.pk, after=_values(instance, ACCOUNT_FIELDS))
        return
    before, after = _changes(instance, ACCOUNT_FIELDS)
    if before:
        active = after.get("is_active")
        action = "account.update" if active is None else ("account.enable" if active else "account.disable")
        services.record(action, account_id=instance.pk, before=before, after=after)


@receiver(post_delete, sender=Account, dispatch_uid="audit-account-deleted")
def account_deleted(sender: type, instance: Account, **kwargs: Any) -> None:
    if not _anonymous(instance):
        services.record("account.delete", account_id=instance.pk)


@receiver(post_save, sender=LedgerEntry, dispatch_uid="audit-top-up")
def topped_up(sender: type, instance: LedgerEntry, created: bool, **kwargs: Any) -> None:
    if created and instance.kind == LedgerEntry.Kind.TOPUP:
        services.record(
            "topup",
            account_id=instance.account_id,
            after={"amount": instance.amount, "balance_after": instance.balance_after},
            target=instance.idempotency_key or "",
        )


@receiver(pre_save, sender=ModelPrice, dispatch_uid="audit-price-before")
def price_before(sender: type, instance: ModelPrice, **kwargs: Any) -> None:
    _remember_before(sender, instance, PRICE_FIELDS)


@receiver(post_save, sender=ModelPrice, dispatch_uid="audit-price-saved")
def price_saved(sender: type, instance: ModelPrice, created: bool, **kwargs: Any) -> None:
    before, after = ({}, _values(instance, PRICE_FIELDS)) if created else _changes(instance, PRICE_FIELDS)
    if after:
        services.record("price.set", target=instance.model, before=before or None, after=after)


@receiver(post_delete, sender=ModelPrice, dispatch_uid="audit-price-deleted")
def price_deleted(sender: type, instance: ModelPrice, **kwargs: Any) -> None:
    services.record("price.delete", target=instance.model, before=_values(instance, PRICE_FIELDS))


@receiver(pre_save, sender=Tier, dispatch_uid="audit-tier-before")
def tier_before(sender: type, instance: Tier, **kwargs: Any) -> None:
    _remember_before(sender, instance, TIER_FIELDS)


@receiver(post_save, sender=Tier, dispatch_uid="audit-tier-saved")
def tier_saved(sender: type, instance: Tier, created: bool, **kwargs: Any) -> None:
    before, after = ({}, _values(instance, TIER_FIELDS)) if created else _changes(instance, TIER_FIELDS)
    if after:
        services.record("tier.set", target=instance.name, before=before or None, after=after)


# --- Budgets (their counters move in raw SQL with every request: only settings are recorded) ---


def _budget_target(budget: Budget) -> str:
    whose = {"key": f"key:{budget.key_id}", "member": f"user:{budget.user_id}"}.get(budget.scope, "account")
    return f"budget:{whose}"


@receiver(pre_save, sender=Budget, dispatch_uid="audit-budget-before")
def budget_before(sender: type, instance: Budget, **kwargs: Any) -> None:
    _remember_before(sender, instance, BUDGET_FIELDS)


@receiver(post_save, sender=Budget, dispatch_uid="audit-budget-saved")
def budget_saved(sender: type, instance: Budget, created: bool, **kwargs: Any) -> None:
    before, after = ({}, _values(instance, BUDGET_FIELDS)) if created else _changes(instance, BUDGET_FIELDS)
    if after:
        services.record(
            "budget.set",
            account_id=instance.account_id,
            target=_budget_target(instance),
            before=before or None,
            after=after,
        )


@receiver(post_delete, sender=Budget, dispatch_uid="audit-budget-deleted")
def budget_deleted(sender: type, instance: Budget, **kwargs: Any) -> None:
    services.record(
        "budget.delete",
        account_id=instance.account_id,
        target=_budget_target(instance),
        before=_values(instance, BUDGET_FIELDS),
    )
