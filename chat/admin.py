from __future__ import annotations

from typing import Any

from django.contrib import admin

from .models import Account, ApiKey, LedgerEntry, ModelPrice, Tier, UsageRecord


class ReadOnlyAdmin(admin.ModelAdmin):
    """Money history is append-only: operators read it, services write it."""

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False


@admin.register(Tier)
class TierAdmin(admin.ModelAdmin):
    list_display = ("name", "rpm", "tpm")


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    """Balances change through top-ups (POST /admin/topup), so they are read-only here."""

    list_display = ("id", "name", "tier", "balance", "membership_expires_at", "is_active", "created_at")
    list_filter = ("tier", "is_active")
    search_fields = ("name",)
    readonly_fields = ("balance", "created_at")


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are created with `manage.py create_api_key` or the APIs (the secret is shown once there)."""

    list_display = ("name", "prefix", "account", "tier", "is_active", "expires_at", "created_at", "last_used_at")
    list_filter = ("is_active", "tier")
    search_fields = ("name", "prefix")
    readonly_fields = ("prefix", "key_hash", "created_at", "last_used_at")

    def has_add_permission(self, request: Any) -> bool:
        return False


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    list_display = (
        "model",
        "prompt_per_million",
        "cached_prompt_per_million",
        "cache_write_per_million",
        "completion_per_million",
        "reasoning_per_million",
    )
    search_fields = ("model",)


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ("id", "account", "kind", "amount", "balance_after", "request_id", "idempotency_key", "created_at")
    list_filter = ("kind",)
    search_fields = ("request_id", "idempotency_key")


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "account",
        "model",
        "prompt_tokens",
        "completion_tokens",
        "prompt_cost",
        "completion_cost",
        "estimated",
        "created_at",
    )
    list_filter = ("model", "estimated")
