"""The operators' console API (/console/api/ops/…): accounts and top-ups, model health,
live traffic. Signed in with the admin key or as Django staff (chat.console.auth)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import Count
from django.utils import timezone
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chat.accounts.admin_views import TopUpApi
from chat.api.errors import ApiError
from chat.models import Account
from chat.services import account_set_active
from tools.models import Job

from . import auth, health, selectors


class OpsApi(APIView):
    authentication_classes = [auth.ConsoleOperatorAuthentication]
    permission_classes = [auth.SignedInOperator]


class AccountsApi(OpsApi):
    class InputSerializer(serializers.Serializer):
        q = serializers.CharField(max_length=150, required=False, allow_blank=True, default="")
        offset = serializers.IntegerField(min_value=0, default=0)
        limit = serializers.IntegerField(min_value=1, max_value=200, default=50)

    def get(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.query_params)
        data.is_valid(raise_exception=True)
        params = data.validated_data
        total, rows = selectors.accounts_search(text=params["q"], limit=params["limit"], offset=params["offset"])
        return Response({"object": "list", "total": total, "currency": settings.GHOSTGPT["CURRENCY"], "data": rows})


class AccountApi(OpsApi):
    class InputSerializer(serializers.Serializer):
        active = serializers.BooleanField()

    def patch(self, request: Request, account_id: int) -> Response:
        account = Account.objects.filter(pk=account_id).first()
        if account is None:
            raise ApiError(404, "No such account.", error_type="not_found_error", code="not_found")
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        account = account_set_active(account=account, active=data.validated_data["active"])
        return Response({"id": account.pk, "active": account.is_active})


class AccountRequestsApi(OpsApi):
    """An account's request log: each request with its text — redacted when written
    (chat.redaction) — and, with GHOSTGPT_REQUEST_LOGS, its body."""

    class InputSerializer(serializers.Serializer):
        limit = serializers.IntegerField(default=20, min_value=1, max_value=100)
        before = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)

    def get(self, request: Request, account_id: int) -> Response:
        if not Account.objects.filter(pk=account_id).exists():
            raise ApiError(404, "No such account.", error_type="not_found_error", code="not_found")
        data = self.InputSerializer(data=request.query_params)
        data.is_valid(raise_exception=True)
        params = data.validated_data
        rows = selectors.requests_page(
            account_id=account_id, limit=params["limit"], before=params.get("before"), text_limit=None
        )
        return Response(
            {
                "object": "list",
                "currency": settings.GHOSTGPT["CURRENCY"],
                "logs": bool(settings.REQUEST_LOGS["ENABLED"]),
                "days": settings.REQUEST_LOGS["DAYS"],
                "data": rows,
                "has_more": len(rows) == params["limit"],
            }
        )


class OpsTopUpApi(TopUpApi):
    authentication_classes = [auth.ConsoleOperatorAuthentication]
    permission_classes = [auth.SignedInOperator]


class TopUpsApi(OpsApi):
    def get(self, request: Request) -> Response:
        account = request.query_params.get("account")
        account_id = int(account) if account and account.isdigit() else None
        return Response({"object": "list", "data": selectors.top_ups(account_id=account_id)})


class ModelsHealthApi(OpsApi):
    def get(self, request: Request) -> Response:
        return Response({"object": "list", "data": health.model_health()})


class TrafficApi(OpsApi):
    def get(self, request: Request) -> Response:
        since = timezone.now() - timedelta(hours=1)
        jobs_now = dict(Job.objects.values_list("status").annotate(count=Count("id")).order_by())
        jobs_hour = dict(
            Job.objects.filter(created_at__gte=since).values_list("status").annotate(count=Count("id")).order_by()
        )
        return Response(
            {
                "object": "traffic",
                "sample_seconds": settings.GHOSTGPT["TRAFFIC_SAMPLE_SECONDS"],
                "data": selectors.traffic_series(minutes=60),
                "jobs": {"now": jobs_now, "last_hour": jobs_hour},
            }
        )
