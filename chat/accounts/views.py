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
from chat.backends import registry
from chat.billing.pricing import price_table
from chat.models import Account, ApiKey
from chat.selectors import api_key_get_for_account, usage_summary
from chat.services import api_key_create, api_key_delete, api_key_update


class KeyOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    prefix = serializers.CharField()
    active = serializers.BooleanField(source="is_active")
    models = serializers.ListField(source="allowed_models", child=serializers.CharField())
    expires_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True)


def _key_body(key: ApiKey) -> dict[str, Any]:
    return dict(KeyOutput(key).data)


class KeyListCreateApi(APIView):
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=100)
        models = serializers.ListField(child=serializers.CharField(max_length=200), required=False, max_length=100)
        expires_at = serializers.DateTimeField(required=False, allow_null=True)

    def get(self, request: Request) -> Response:
        keys = ApiKey.objects.filter(account=request.user, kind=ApiKey.Kind.API).order_by("id")
        return Response({"object": "list", "data": [_key_body(key) for key in keys]})

    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        key, secret = api_key_create(
            account=request.user,
            name=data.validated_data["name"],
            allowed_models=data.validated_data.get("models", ()),
            expires_at=data.validated_data.get("expires_at"),
        )
        return Response({**_key_body(key), "key": secret}, status=status.HTTP_201_CREATED)


class KeyDetailApi(APIView):
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=100, required=False)
        active = serializers.BooleanField(required=False)
        models = serializers.ListField(child=serializers.CharField(max_length=200), required=False, max_length=100)
        expires_at = serializers.DateTimeField(required=False, allow_null=True)

    FIELDS = {"name": "name", "active": "is_active", "models": "allowed_models", "expires_at": "expires_at"}

    def patch(self, request: Request, key_id: int) -> Response:
        key = api_key_get_for_account(account=request.user, key_id=key_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        changes = {self.FIELDS[name]: value for name, value in data.validated_data.items()}
        return Response(_key_body(api_key_update(key=key, **changes) if changes else key))

    def delete(self, request: Request, key_id: int) -> Response:
        api_key_delete(key=api_key_get_for_account(account=request.user, key_id=key_id))
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
        to = serializers.DateField(required=False)
        group_by = serializers.ChoiceField(choices=["day", "model", "key"], default="day")

        def get_fields(self) -> dict[str, serializers.Field]:
            fields = super().get_fields()
            fields["from"] = serializers.DateField(required=False)
            return fields

    def get(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.query_params)
        data.is_valid(raise_exception=True)
        today = timezone.now().date()
        end = data.validated_data.get("to", today)
        start = data.validated_data.get("from", end - timedelta(days=30))
        if start > end:
            raise serializers.ValidationError({"from": ["must not be after 'to'"]})
        since = timezone.make_aware(datetime.combine(start, time.min))
        until = timezone.make_aware(datetime.combine(end + timedelta(days=1), time.min))
        group_by = data.validated_data["group_by"]
        rows = usage_summary(account=request.user, since=since, until=until, group_by=group_by)
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
