"""Management API for key holders (OhMyGPT-style): their keys, balance, membership, usage."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chat.api.auth import Principal
from chat.api.errors import ApiError
from chat.backends import registry
from chat.billing.pricing import FREE, price_parts, price_table
from chat.dates import MAX_RANGE_DAYS, ReportDateField
from chat.models import Account, ApiKey, Budget
from chat.selectors import api_key_get_for_account, budget_body, usage_summary
from chat.services import (
    BudgetRefused,
    GrantRefused,
    TooManyKeys,
    api_key_check_manageable,
    api_key_create,
    api_key_delete,
    api_key_grant,
    api_key_update,
    budget_set,
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
    response_cache = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True)


def _key_body(key: ApiKey) -> dict[str, Any]:
    budget = budget_body(Budget.objects.select_related("account").filter(key=key, scope=Budget.Scope.KEY).first())
    # Ours, and LiteLLM's names for the same (max_budget, budget_duration, spend).
    litellm = {
        "max_budget": float(budget["amount"]) if budget else None,
        "budget_duration": budget["period"] if budget else None,
        "spend": float(budget["spent"]) if budget else None,
    }
    return {**KeyOutput(key).data, "budget": budget, **litellm}


# LiteLLM's budget_duration values that are one of our calendar periods.
DURATIONS = {
    "1d": "day", "24h": "day", "day": "day", "daily": "day",
    "7d": "week", "1w": "week", "week": "week", "weekly": "week",
    "30d": "month", "1mo": "month", "month": "month", "monthly": "month",
    "": "", "none": "", "lifetime": "",
}  # fmt: skip


class BudgetInput(serializers.Serializer):
    """A budget as ours (`budget`: {"amount", "period"} or null) or LiteLLM's
    (`max_budget`, `budget_duration`)."""

    budget = serializers.JSONField(required=False, allow_null=True)
    max_budget = serializers.DecimalField(
        max_digits=24, decimal_places=10, required=False, allow_null=True, min_value=Decimal(0)
    )
    budget_duration = serializers.CharField(max_length=16, required=False, allow_null=True, allow_blank=True)


def wanted_budget(data: dict[str, Any]) -> tuple[bool, Decimal | None, str]:
    """(asked, amount or None to remove, period) from a request's budget fields."""
    if "budget" in data:
        given = data["budget"]
        if given is None:
            return True, None, ""
        if not isinstance(given, dict) or set(given) - {"amount", "period"}:
            raise ApiError(400, '\'budget\' is {"amount": …, "period": day|week|month|null} or null.', param="budget")
        try:
            amount = Decimal(str(given.get("amount")))
        except ArithmeticError:
            raise ApiError(400, "'budget.amount' must be a number.", param="budget") from None
        return True, amount, _period(given.get("period") or "")
    if "max_budget" in data or "budget_duration" in data:
        limit: Decimal | None = data.get("max_budget")
        return True, limit, _period(data.get("budget_duration") or "")
    return False, None, ""


def _period(value: Any) -> str:
    period = DURATIONS.get(str(value).strip().lower())
    if period is None:
        raise ApiError(
            400,
            f"Budgets reset by calendar day, week or month in the account's time zone (budget_duration "
            f"1d, 7d, 30d or 1mo; or none): {value!r} is not one of them.",
            param="budget_duration",
        )
    return period


def _budget_refused(exc: BudgetRefused) -> ApiError:
    return ApiError(403 if "grant" in exc.message else 400, exc.message, param=exc.param, code="invalid_budget")


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
    "response_cache": "response_cache",
}


class KeyListCreateApi(APIView):
    """A key's scope bounds what it grants: a new key is as narrow as its maker or narrower."""

    class InputSerializer(BudgetInput):
        name = serializers.CharField(max_length=100)
        models = serializers.ListField(child=serializers.CharField(max_length=200), required=False, max_length=100)
        expires_at = serializers.DateTimeField(required=False, allow_null=True)
        scope = serializers.ChoiceField(choices=ApiKey.Scope.values, default=ApiKey.Scope.FULL)
        rpm = serializers.IntegerField(required=False, allow_null=True, min_value=0, max_value=10**9)
        tpm = serializers.IntegerField(required=False, allow_null=True, min_value=0, max_value=10**12)
        response_cache = serializers.BooleanField(required=False)

    def get(self, request: Request) -> Response:
        if request.auth.scope != ApiKey.Scope.FULL:
            raise _refused(GrantRefused("This key has the 'inference' scope: it cannot list keys."))
        keys = ApiKey.objects.filter(account=request.user, kind=ApiKey.Kind.API).order_by("id")
        return Response({"object": "list", "data": [_key_body(key) for key in keys]})

    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        asked, amount, period = wanted_budget(data.validated_data)
        wanted = {KEY_FIELDS[name]: value for name, value in data.validated_data.items() if name in KEY_FIELDS}
        try:
            granted = api_key_grant(granter=request.auth, changes=wanted)
        except GrantRefused as exc:
            raise _refused(exc) from None
        try:
            with transaction.atomic():
                key, secret = api_key_create(account=request.user, created_by=request.auth, **granted)
                budget_set(
                    account=request.user,
                    scope="key",
                    key=key,
                    amount=amount if asked else None,
                    period=period,
                    granter=request.auth,
                )
        except BudgetRefused as exc:
            raise _budget_refused(exc) from None
        except TooManyKeys as exc:
            raise ApiError(
                429,
                f"This account holds its limit of {exc.limit} API keys: delete one before making another.",
                error_type="rate_limit_error",
                code="too_many_keys",
            ) from None
        return Response({**_key_body(key), "key": secret}, status=status.HTTP_201_CREATED)


class KeyDetailApi(APIView):
    class InputSerializer(BudgetInput):
        name = serializers.CharField(max_length=100, required=False)
        active = serializers.BooleanField(required=False)
        models = serializers.ListField(child=serializers.CharField(max_length=200), required=False, max_length=100)
        expires_at = serializers.DateTimeField(required=False, allow_null=True)
        scope = serializers.ChoiceField(choices=ApiKey.Scope.values, required=False)
        rpm = serializers.IntegerField(required=False, allow_null=True, min_value=0, max_value=10**9)
        tpm = serializers.IntegerField(required=False, allow_null=True, min_value=0, max_value=10**12)
        response_cache = serializers.BooleanField(required=False)

    def patch(self, request: Request, key_id: int) -> Response:
        key = api_key_get_for_account(account=request.user, key_id=key_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        asked, amount, period = wanted_budget(data.validated_data)
        changes = {KEY_FIELDS[name]: value for name, value in data.validated_data.items() if name in KEY_FIELDS}
        try:
            api_key_check_manageable(granter=request.auth, target=key)
            changes = api_key_grant(granter=request.auth, changes=changes, target=key)
        except GrantRefused as exc:
            raise _refused(exc) from None
        if asked:
            if key.pk == request.auth.pk:
                raise _refused(GrantRefused("A key may not change its own budget.", "budget"))
            try:
                budget_set(
                    account=request.user,
                    scope="key",
                    key=key,
                    amount=amount,
                    period=period,
                    granter=request.auth,
                )
            except BudgetRefused as exc:
                raise _budget_refused(exc) from None
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
            rows.append(
                {
                    "model": model,
                    **price_parts(prices.get(model, FREE), float),
                    "context_length": served.get(model),
                    "served": model in served,
                }
            )
        return Response({"object": "list", "currency": settings.GHOSTGPT["CURRENCY"], "data": rows})


class UsageApi(APIView):
    class InputSerializer(serializers.Serializer):
        # `from` is a Python keyword: declared below through fields[].
        to = ReportDateField(required=False)
        group_by = serializers.ChoiceField(choices=["day", "model", "key", "member"], default="day")

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


class AccountBudgetApi(APIView):
    """The account's own budget and time zone (where every budget's day, week and month
    begin). GET; PUT {"budget": {"amount", "period"} | null, or LiteLLM's max_budget and
    budget_duration, "time_zone"}. Keys of full scope only; a key with a budget of its own may
    not lift the account's."""

    class InputSerializer(BudgetInput):
        time_zone = serializers.CharField(max_length=64, required=False)

    def _body(self, account: Account) -> dict[str, Any]:
        budget = Budget.objects.select_related("account").filter(account=account, scope=Budget.Scope.ACCOUNT).first()
        return {"object": "budget", "budget": budget_body(budget), "time_zone": account.time_zone}

    def _full(self, request: Request) -> None:
        if request.auth.scope != ApiKey.Scope.FULL:
            raise _refused(GrantRefused("This key has the 'inference' scope: it cannot manage budgets."))

    def get(self, request: Request) -> Response:
        self._full(request)
        return Response(self._body(request.user))

    def put(self, request: Request) -> Response:
        self._full(request)
        if Budget.objects.filter(key=request.auth, scope=Budget.Scope.KEY).exists():
            raise _refused(GrantRefused("A key with a budget of its own may not change the account's.", "budget"))
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        account: Account = request.user
        zone = data.validated_data.get("time_zone")
        if zone is not None:
            try:
                ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError):
                raise ApiError(
                    400, f"Unknown time zone {zone!r} (an IANA name, e.g. Europe/Berlin).", param="time_zone"
                ) from None
            account.time_zone = zone
            account.save(update_fields=["time_zone"])
        asked, amount, period = wanted_budget(data.validated_data)
        if asked:
            try:
                budget_set(account=account, scope="account", amount=amount, period=period)
            except BudgetRefused as exc:
                raise _budget_refused(exc) from None
        return Response(self._body(account))
