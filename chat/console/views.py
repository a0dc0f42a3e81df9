"""The console: pages for key holders (/console) and operators (/console/ops), signing in,
and the key holders' JSON (/console/api/…; the operators' is in .ops_views). Thin views:
reads in chat.console.selectors, keys through the management API's own views."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chat.accounts.views import AccountBudgetApi, KeyDetailApi, KeyListCreateApi
from chat.api.auth import Principal
from chat.api.errors import count_or_429
from chat.backends import registry
from chat.backends.base import Usage
from chat.billing.pricing import FREE, price_parts, price_table
from chat.billing.ratelimit import Limits, limiter
from chat.dates import MAX_RANGE_DAYS, ReportDateField
from chat.models import Account, ApiKey, Budget
from chat.network import client_address
from chat.selectors import budget_body

from . import auth, selectors

MAX_DAYS = {"day": MAX_RANGE_DAYS, "hour": 31}
CSV_NAME = "ghostgpt-usage-{start}-{end}.csv"


# --- Pages ------------------------------------------------------------------------------------


CONSOLE_TABS = [
    ("overview", _("Overview")),
    ("usage", _("Usage")),
    ("keys", _("Keys")),
    ("requests", _("Requests")),
    ("rates", _("Rates")),
    ("alerts", _("Alerts")),
]
OPS_TABS = [
    ("accounts", _("Accounts")),
    ("models", _("Models")),
    ("traffic", _("Live traffic")),
    ("audit", _("Audit trail")),
    ("webhooks", _("Webhooks")),
]


@require_GET
@ensure_csrf_cookie
def console_page(request: HttpRequest) -> HttpResponse:
    context = {
        "currency": settings.GHOSTGPT["CURRENCY"],
        "page": "console",
        "tabs": CONSOLE_TABS,
        "request_text": bool(settings.GHOSTGPT["CONSOLE_REQUEST_TEXT"]),
    }
    return render(request, "console.html", context)


@require_GET
@ensure_csrf_cookie
def ops_page(request: HttpRequest) -> HttpResponse:
    context = {"currency": settings.GHOSTGPT["CURRENCY"], "page": "ops", "tabs": OPS_TABS}
    return render(request, "console_ops.html", context)


# --- Signing in -----------------------------------------------------------------------------


def _limit_sign_ins(request: HttpRequest) -> None:
    """Guessing keys is hopeless (256 bits), but each guess costs a lookup: a few per minute."""
    address = client_address(request.META)
    count_or_429(
        Limits(f"console-signin:{address}", settings.GHOSTGPT["CONSOLE_SIGNIN_RATE"], None), "sign-in attempts"
    )


def _who(request: HttpRequest) -> dict[str, Any]:
    key = auth.signed_in_key(request)
    body: dict[str, Any] = {"object": "console_session", "operator": auth.is_operator(request), "key": None}
    if key is not None:
        body["key"] = {
            "id": key.pk,
            "name": key.name,
            "prefix": key.prefix,
            "scope": key.scope,
            "manage": key.scope == ApiKey.Scope.FULL,
        }
        body["account"] = {"id": key.account_id, "name": key.account.name}
    user = getattr(request, "person", None)
    if user is not None and user.is_authenticated:
        # Signed in as a person (people/): the console shows who, and whose wallet pays.
        body["person"] = {"email": user.email, "staff": user.is_staff, "mfa_missing": auth.staff_mfa_missing(request)}
    return body


class SessionApi(APIView):
    """GET: who is signed in; POST {"key"}: sign in with an API key; DELETE: sign out."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    class InputSerializer(serializers.Serializer):
        key = serializers.CharField(max_length=200, trim_whitespace=True)

    def get(self, request: Request) -> Response:
        return Response(_who(request._request))

    def post(self, request: Request) -> Response:
        _limit_sign_ins(request._request)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        auth.console_sign_in(request._request, secret=data.validated_data["key"])
        return Response(_who(request._request), status=status.HTTP_201_CREATED)

    def delete(self, request: Request) -> Response:
        auth.console_sign_out(request._request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class OperatorSessionApi(APIView):
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    class InputSerializer(serializers.Serializer):
        admin_key = serializers.CharField(max_length=500, trim_whitespace=True)

    def post(self, request: Request) -> Response:
        _limit_sign_ins(request._request)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        auth.operator_sign_in(request._request, admin_key=data.validated_data["admin_key"])
        return Response(_who(request._request), status=status.HTTP_201_CREATED)


# --- Key holders ------------------------------------------------------------------------------


class ConsoleApi(APIView):
    authentication_classes = [auth.ConsoleKeyAuthentication]
    permission_classes = [auth.SignedIn]


def own_key_only(request: Request) -> int | None:
    """The signed-in key's id when its scope is `inference` (it sees its own requests and
    usage); None for a `full` key (it sees the account's)."""
    key: ApiKey = request.auth
    return key.pk if key.scope == ApiKey.Scope.INFERENCE else None


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise serializers.ValidationError({"tz": [f"unknown time zone {name!r}"]}) from None


class UsageParams(serializers.Serializer):
    to = ReportDateField(required=False)
    bucket = serializers.ChoiceField(choices=["day", "hour"], default="day")
    tz = serializers.CharField(max_length=64, required=False)
    key = serializers.IntegerField(required=False, min_value=0)
    model = serializers.CharField(max_length=200, required=False)

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        fields["from"] = ReportDateField(required=False)  # a keyword in Python
        return fields

    def query(self, account_id: int, only_key: int | None = None) -> selectors.UsageQuery:
        self.is_valid(raise_exception=True)
        data = self.validated_data
        tz = _zone(data.get("tz"))
        end = data.get("to") or timezone.now().astimezone(tz).date()
        bucket = data["bucket"]
        start = data.get("from") or end - timedelta(days=29 if bucket == "day" else 1)
        if start > end:
            raise serializers.ValidationError({"from": ["must not be after 'to'"]})
        if (end - start).days >= MAX_DAYS[bucket]:
            raise serializers.ValidationError(
                {"from": [f"{bucket} buckets cover at most {MAX_DAYS[bucket]} days; pick day buckets or fewer days"]}
            )
        return selectors.UsageQuery(
            account_id=account_id,
            start=start,
            end=end,
            tz=tz,
            bucket=bucket,
            key_id=data.get("key"),
            model=data.get("model") or None,
            only_key=only_key,
        )


def _day_start(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=tz)


class OverviewApi(ConsoleApi):
    def get(self, request: Request) -> Response:
        key: ApiKey = request.auth
        account: Account = request.user
        tz = _zone(request.query_params.get("tz"))
        today = timezone.now().astimezone(tz).date()
        tomorrow = _day_start(today + timedelta(days=1), tz)
        limits = Principal.of(key).limits
        window = async_to_sync(limiter().hit)(limits, count=False)
        only = own_key_only(request)
        trend = selectors.UsageQuery(
            account_id=account.pk, start=today - timedelta(days=29), end=today, tz=tz, only_key=only
        )
        return Response(
            {
                "currency": settings.GHOSTGPT["CURRENCY"],
                "balance": selectors.money(account.balance),
                "tier": (key.tier or account.tier).name,
                "membership_expires_at": account.membership_expires_at,
                "rate": {
                    "rpm": limits.rpm,
                    "tpm": limits.tpm,
                    "requests": window.requests,
                    "tokens": window.tokens,
                    "reset_seconds": window.reset_seconds,
                },
                "spend": {
                    "today": selectors.money(
                        selectors.spend_between(
                            account_id=account.pk, since=_day_start(today, tz), until=tomorrow, key_id=only
                        )
                    ),
                    "month": selectors.money(
                        selectors.spend_between(
                            account_id=account.pk,
                            since=_day_start(today.replace(day=1), tz),
                            until=tomorrow,
                            key_id=only,
                        )
                    ),
                },
                "trend": {"from": trend.start, "to": trend.end, "data": selectors.usage_report(trend)["data"]},
                "budgets": _budgets_on_path(key),
            }
        )


def _budgets_on_path(key: ApiKey) -> list[dict[str, Any]]:
    """The budgets this key's requests hold against: its own, its person's as a member, the
    account's — each with the period's spend and when it resets."""
    path = Q(key=key, scope=Budget.Scope.KEY) | Q(account_id=key.account_id, scope=Budget.Scope.ACCOUNT)
    if key.user_id is not None:
        path |= Q(account_id=key.account_id, scope=Budget.Scope.MEMBER, user_id=key.user_id)
    order = {"key": 0, "member": 1, "account": 2}
    found = sorted(Budget.objects.select_related("account").filter(path), key=lambda b: order[b.scope])
    return [{"scope": budget.scope, **(budget_body(budget) or {})} for budget in found]


class UsageApi(ConsoleApi):
    def get(self, request: Request) -> Response:
        query = UsageParams(data=request.query_params).query(request.user.pk, own_key_only(request))
        return Response(
            {
                "object": "usage",
                "currency": settings.GHOSTGPT["CURRENCY"],
                "from": query.start,
                "to": query.end,
                "bucket": query.bucket,
                "tz": str(query.tz),
                **selectors.usage_report(query),
            }
        )


class UsageCsvApi(ConsoleApi):
    def get(self, request: Request) -> HttpResponse:
        query = UsageParams(data=request.query_params).query(request.user.pk, own_key_only(request))
        buffer = io.StringIO()
        csv.writer(buffer).writerows(selectors.usage_csv_rows(query))
        response = HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8")
        name = CSV_NAME.format(start=query.start, end=query.end)
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response


class RequestsApi(ConsoleApi):
    class InputSerializer(serializers.Serializer):
        limit = serializers.IntegerField(default=50, min_value=1, max_value=200)
        before = serializers.IntegerField(required=False, min_value=1)
        key = serializers.IntegerField(required=False, min_value=0)
        model = serializers.CharField(max_length=200, required=False)

    def get(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.query_params)
        data.is_valid(raise_exception=True)
        params = data.validated_data
        rows = selectors.requests_page(
            account_id=request.user.pk,
            limit=params["limit"],
            before=params.get("before"),
            key_id=params.get("key"),
            only_key=own_key_only(request),
            model=params.get("model") or None,
            text_limit=int(settings.GHOSTGPT["CONSOLE_REQUEST_TEXT"]),
        )
        return Response(
            {
                "object": "list",
                "currency": settings.GHOSTGPT["CURRENCY"],
                "text": bool(settings.GHOSTGPT["CONSOLE_REQUEST_TEXT"]),
                "data": rows,
                "has_more": len(rows) == params["limit"],
            }
        )


class KeysApi(KeyListCreateApi):
    authentication_classes = [auth.ConsoleKeyAuthentication]
    permission_classes = [auth.SignedIn]


class KeyApi(KeyDetailApi):
    authentication_classes = [auth.ConsoleKeyAuthentication]
    permission_classes = [auth.SignedIn]


class BudgetApi(AccountBudgetApi):
    authentication_classes = [auth.ConsoleKeyAuthentication]
    permission_classes = [auth.SignedIn]


class QuoteApi(APIView):
    """What a request of a given size costs at each model's price (public, like the rates)."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    class InputSerializer(serializers.Serializer):
        prompt_tokens = serializers.IntegerField(min_value=0, max_value=10**9)
        completion_tokens = serializers.IntegerField(min_value=0, max_value=10**9)
        requests = serializers.IntegerField(min_value=1, max_value=10**9, default=1)
        # Parts of the two sizes above, where the provider bills them apart.
        cached_tokens = serializers.IntegerField(min_value=0, max_value=10**9, default=0)
        reasoning_tokens = serializers.IntegerField(min_value=0, max_value=10**9, default=0)

        def validate(self, attrs: dict[str, int]) -> dict[str, int]:
            if attrs["cached_tokens"] > attrs["prompt_tokens"]:
                raise serializers.ValidationError({"cached_tokens": "Cached tokens are part of the prompt tokens."})
            if attrs["reasoning_tokens"] > attrs["completion_tokens"]:
                raise serializers.ValidationError(
                    {"reasoning_tokens": "Reasoning tokens are part of the completion tokens."}
                )
            return attrs

    def get(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.query_params)
        data.is_valid(raise_exception=True)
        size = data.validated_data
        prices = price_table()
        served = {info.id for info, _ in registry.all_models()}
        rows = []
        for model in sorted(served | set(prices)):
            price = prices.get(model, FREE)
            one = price.cost(
                Usage(
                    size["prompt_tokens"],
                    size["completion_tokens"],
                    cached_tokens=size["cached_tokens"],
                    reasoning_tokens=size["reasoning_tokens"],
                )
            )
            rows.append(
                {
                    "model": model,
                    **price_parts(price, selectors.money),
                    "cost": selectors.money(one),
                    "total": selectors.money(one * size["requests"]),
                    "served": model in served,
                }
            )
        return Response({"object": "list", "currency": settings.GHOSTGPT["CURRENCY"], **size, "data": rows})
