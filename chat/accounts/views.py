"""Management API for key holders (OhMyGPT-style): their keys, balance, membership, usage."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chat.api.auth import Principal
from chat.api.errors import ApiError
from chat.backends import registry
from chat.billing.pricing import price_table
from chat.dates import MAX_RANGE_DAYS, ReportDateField
from chat.models import Account, ApiKey
from chat.selectors import api_key_get_for_account, usage_summary
from chat.services import (
    GrantRefused,
    TooManyKeys,
    api_key_check_manageable,
    api_key_create,
    api_key_delete,
    api_key_grant,
    api_key_update,
)


class KeyOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    prefix = serializers.CharField()
    scope = serializers.CharField()
    active = serializers.BooleanField(source="is_active")
    disabled_by_operator = serializers.BooleanField()
    models = serializers.ListField(source="allowed_models", child=serializers.CharField())
    expires_at = serializers.DateTimeField(allow_null=True)
    rpm = serializers.IntegerField(source="rpm_override", allow_null=True)
    tpm = serializers.IntegerField(source="tpm_override", allow_null=True)
    created_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True)


def _key_body(key: ApiKey) -> dict[str, Any]:
    return dict(KeyOutput(key).data)


def _refused(exc: GrantRefused) -> ApiError:
    return ApiError(403, exc.message, error_type="permission_error", param=exc.param, code="scope_exceeded")


# Request field -> ApiKey field, for creating and changing keys.
KEY_FIELDS = {
    "name": "name",
    "active": "is_active",
    "models": "allowed_models",
    "expires_at": "expires_at",
    "scope": "scope",
    "rpm": "rpm_override",
    "tpm": "tpm_override",
}


class KeyListCreateApi(APIView):
    """A key's scope bounds what it grants: a new key is as narrow as its maker or narrower."""

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=100)
        models = serializers.ListField(child=serializers.CharField(max_length=200), required=False, max_length=100)
        expires_at = serializers.DateTimeField(required=False, allow_null=True)
        scope = serializers.ChoiceField(choices=ApiKey.Scope.values, default=ApiKey.Scope.FULL)
        rpm = serializers.IntegerField(required=False, allow_null=True, min_value=0, max_value=10**9)
        tpm = serializers.IntegerField(required=False, allow_null=True, min_value=0, max_value=10**12)

    def get(self, request: Request) -> Response:
        if request.auth.scope != ApiKey.Scope.FULL:
            raise _refused(GrantRefused("This key has the 'inference' scope: it cannot list keys."))
        keys = ApiKey.objects.filter(account=request.user, kind=ApiKey.Kind.API).order_by("id")
        return Response({"object": "list", "data": [_key_body(key) for key in keys]})

    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        wanted = {KEY_FIELDS[name]: value for name, value in data.validated_data.items()}
        try:
            granted = api_key_grant(granter=request.auth, changes=wanted)
        except GrantRefused as exc:
            raise _refused(exc) from None
        try:
            key, secret = api_key_create(account=request.user, created_by=request.auth, **granted)
        except TooManyKeys as exc:
            raise ApiError(
                429,
                f"This account holds its limit of {exc.limit} API keys: delete one before making another.",
                error_type="rate_limit_error",
                code="too_many_keys",
            ) from None
        return Response({**_key_body(key), "key": secret}, status=status.HTTP_201_CREATED)


class KeyDetailApi(APIView):
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=100, required=False)
        active = serializers.BooleanField(required=False)
        models = serializers.ListField(child=serializers.CharField(max_length=200), required=False, max_length=100)
        expires_at = serializers.DateTimeField(required=False, allow_null=True)
        scope = serializers.ChoiceField(choices=ApiKey.Scope.values, required=False)
        rpm = serializers.IntegerField(required=False, allow_null=True, min_value=0, max_value=10**9)
        tpm = serializers.IntegerField(required=False, allow_null=True, min_value=0, max_value=10**12)

    def patch(self, request: Request, key_id: int) -> Response:
        key = api_key_get_for_account(account=request.user, key_id=key_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        changes = {KEY_FIELDS[name]: value for name, value in data.validated_data.items()}
        try:
            api_key_check_manageable(granter=request.auth, target=key)
            changes = api_key_grant(granter=request.auth, changes=changes, target=key)
        except GrantRefused as exc:
            raise _refused(exc) from None
        return Response(_key_body(api_key_update(key=key, **changes) if changes else key))

    def delete(self, request: Request, key_id: int) -> Response:
        key = api_key_get_for_account(account=request.user, key_id=key_id)
        try:
            api_key_check_manageable(granter=request.auth, target=key)
        except GrantRefused as exc:
            raise _refused(exc) from None
        api_key_delete(key=key)
        return Response({"id": key_id, "object": "api_key", "deleted": True})


class BalanceApi(APIView):
    def get(self, request: Request) -> Response:
        account: Account = request.user  # loaded by the key lookup of this very request
        return Response({"balance": float(account.balance), "currency": settings.GHOSTGPT["CURRENCY"]})


class MembershipApi(APIView):
    def get(self, request: Request) -> Response:
        key: ApiKey = request.auth
        account: Account = request.user
        limits = Principal.of(key).limits
        return Response(
            {
                "tier": account.tier.name,
                "expires_at": account.membership_expires_at,
                "key_tier": key.tier.name if key.tier else None,
                "rpm": limits.rpm,
                "tpm": limits.tpm,
            }
        )


class RatesApi(APIView):
    """Public: what each model costs."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    def get(self, request: Request) -> Response:
        prices = price_table()
        served = {info.id: info.context_length for info, _ in registry.all_models()}
        rows = []
        for model in sorted(set(served) | set(prices)):
            price = prices.get(model)
            rows.append(
                {
                    "model": model,
                    "prompt_per_million": float(price.prompt_per_million) if price else 0.0,
                    "completion_per_million": float(price.completion_per_million) if price else 0.0,
                    "context_length": served.get(model),
                    "served": model in served,
                }
            )
        return Response({"object": "list", "currency": settings.GHOSTGPT["CURRENCY"], "data": rows})


class UsageApi(APIView):
    class InputSerializer(serializers.Serializer):
        # `from` is a Python keyword: declared below through fields[].
        to = ReportDateField(required=False)
        group_by = serializers.ChoiceField(choices=["day", "model", "key"], default="day")

        def get_fields(self) -> dict[str, serializers.Field]:
            fields = super().get_fields()
            fields["from"] = ReportDateField(required=False)
            return fields

    def get(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.query_params)
        data.is_valid(raise_exception=True)
        today = timezone.now().date()
        end = data.validated_data.get("to", today)
        start = data.validated_data.get("from", end - timedelta(days=30))
        if start > end:
            raise serializers.ValidationError({"from": ["must not be after 'to'"]})
        if (end - start).days >= MAX_RANGE_DAYS:
            raise serializers.ValidationError({"from": [f"a report covers at most {MAX_RANGE_DAYS} days"]})
        since = timezone.make_aware(datetime.combine(start, time.min))
        until = timezone.make_aware(datetime.combine(end + timedelta(days=1), time.min))
        group_by = data.validated_data["group_by"]
        key: ApiKey = request.auth
        only = key.pk if key.scope == ApiKey.Scope.INFERENCE else None  # an inference key: its own usage
        rows = usage_summary(account=request.user, since=since, until=until, group_by=group_by, key_id=only)
        return Response(
            {
                "object": "list",
                "from": start,
                "to": end,
                "group_by": group_by,
                "currency": settings.GHOSTGPT["CURRENCY"],
                "data": rows,
            }
        )
