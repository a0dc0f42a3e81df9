"""Operator API (ChatGPT-API-server style), authenticated by GHOSTGPT_ADMIN_KEY sent as
`Authorization: Bearer …` or, for compatibility, `admin_key` in the JSON body or query
string (redacted from the access log)."""

from __future__ import annotations

import hmac
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.http import Http404
from rest_framework import exceptions, serializers
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.context import act_as_admin
from chat.billing.wallet import wallet_top_up
from chat.models import Account
from chat.services import UnknownTier, account_create_with_key, account_delete


class Operator:
    """request.user for the operator API."""


class AdminKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Operator, None] | None:
        configured = settings.GHOSTGPT["ADMIN_KEY"]
        if not configured:
            raise exceptions.PermissionDenied("The admin API is disabled: set GHOSTGPT_ADMIN_KEY to enable it.")
        presented = self._presented(request)
        if presented is None:
            return None
        if not hmac.compare_digest(presented.encode(), configured.encode()):
            raise exceptions.AuthenticationFailed("Incorrect admin key.", code="invalid_admin_key")
        act_as_admin(configured)
        return Operator(), None

    @staticmethod
    def _presented(request: Request) -> str | None:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        body = request.data if isinstance(request.data, dict) else {}
        candidate = body.get("admin_key") or request.query_params.get("admin_key")
        return str(candidate) if candidate else None

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="ghostgpt-admin"'


class IsOperator(BasePermission):
    message = "Send the admin key as 'Authorization: Bearer ADMIN_KEY'."

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.user, Operator)


class OperatorApi(APIView):
    authentication_classes = [AdminKeyAuthentication]
    permission_classes = [IsOperator]


def _account(user_id: int) -> Account:
    account = Account.objects.filter(pk=user_id).first()
    if account is None:
        raise Http404
    return account


class UserAddApi(OperatorApi):
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=150, required=False, default="user")
        tier = serializers.CharField(max_length=32, required=False)

    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            key, secret = account_create_with_key(
                name=data.validated_data["name"], tier=data.validated_data.get("tier")
            )
        except UnknownTier as exc:
            raise serializers.ValidationError({"tier": [str(exc)]}) from None
        return Response({"user_id": key.account_id, "token": secret}, status=201)


class UserDeleteApi(OperatorApi):
    class InputSerializer(serializers.Serializer):
        user_id = serializers.IntegerField()

    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        account_delete(account=_account(data.validated_data["user_id"]))
        return Response({"message": "User deleted"})


class UserListApi(OperatorApi):
    def get(self, request: Request) -> Response:
        accounts = Account.objects.select_related("tier").prefetch_related("keys").order_by("id")
        return Response(
            {
                "users": [
                    {
                        "user_id": account.pk,
                        # Keys are stored hashed: only their display prefix can be shown.
                        "token": next((f"{key.prefix}…" for key in account.keys.all()), None),
                        "name": account.name,
                        "tier": account.tier.name,
                        "balance": float(account.balance),
                    }
                    for account in accounts
                ]
            }
        )


class TopUpApi(OperatorApi):
    class InputSerializer(serializers.Serializer):
        user_id = serializers.IntegerField()
        amount = serializers.DecimalField(max_digits=24, decimal_places=10, min_value=Decimal("0.0000000001"))
        idempotency_key = serializers.CharField(max_length=200)

    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        account = _account(data.validated_data["user_id"])
        entry, applied = wallet_top_up(
            account_id=account.pk,
            amount=data.validated_data["amount"],
            idempotency_key=data.validated_data["idempotency_key"],
        )
        account.refresh_from_db(fields=["balance"])
        return Response(
            {
                "user_id": account.pk,
                "amount": float(entry.amount),
                "balance": float(account.balance),
                "currency": settings.GHOSTGPT["CURRENCY"],
                "idempotency_key": entry.idempotency_key,
                "applied": applied,
            }
        )
