"""Payments over HTTP: the console's "Add funds" and history (/console/api/payments), the
receipt page, the operators' list, and each provider's notifications
(/payments/webhooks/<provider>) — thin: payments.services holds every rule."""

from __future__ import annotations

import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chat.api.errors import ApiError, count_or_429
from chat.billing.ratelimit import Limits
from chat.console import auth
from chat.console.views import ConsoleApi
from chat.models import ApiKey

from . import selectors, services
from .providers.base import ProviderRefused
from .providers.registry import provider as provider_named


def _refusal(exc: services.PaymentError) -> ApiError:
    return ApiError(exc.status, exc.message, code=exc.code)


def _uuid(value: Any) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise Http404 from None


class PaymentsApi(ConsoleApi):
    """GET: the account's payments and what "Add funds" offers; POST {"amount", "provider"}:
    a payment, and where to pay it (keys of full scope: signed-in people, pasted full keys)."""

    class InputSerializer(serializers.Serializer):
        amount = serializers.CharField(max_length=32)
        provider = serializers.CharField(max_length=16)
        email = serializers.EmailField(required=False, allow_blank=True)  # for a fiscal receipt

    def get(self, request: Request) -> Response:
        rows = [selectors.payment_body(p) for p in selectors.payments_of(account_id=request.user.pk)]
        return Response({"object": "list", "data": rows, **selectors.payment_options()})

    def post(self, request: Request) -> Response:
        key: ApiKey = request.auth
        if key.scope != ApiKey.Scope.FULL:
            raise ApiError(403, "Adding funds needs a key with full scope.", error_type="permission_error")
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        # Each one started is a call to the provider and a row here: a few a minute per wallet.
        limits = Limits(f"payment-create:{request.user.pk}", settings.PAYMENTS["CREATE_RATE"], None)
        try:
            amount = Decimal(data.validated_data["amount"])
        except InvalidOperation:
            raise ApiError(400, "'amount' must be a number.", param="amount") from None
        back = request._request.build_absolute_uri("/console")
        try:
            payment = services.payment_start(
                account=request.user,
                user=key.user,
                provider=data.validated_data["provider"],
                amount=amount,
                return_url=back + "?payment={payment}",
                cancel_url=back + "?payment={payment}&cancelled=1",
                email=data.validated_data.get("email", ""),
                admit=lambda: count_or_429(limits, "payments started"),
            )
        except services.PaymentError as exc:
            raise _refusal(exc) from None
        return Response(selectors.payment_body(payment), status=status.HTTP_201_CREATED)


class PaymentApi(ConsoleApi):
    """One payment; a pending one is asked about at its provider first (the person is back
    before the notification, or it was lost)."""

    def get(self, request: Request, payment_id: str) -> Response:
        payment = selectors.payment_of(account_id=request.user.pk, payment_id=_uuid(payment_id))
        if payment is None:
            raise Http404
        return Response(selectors.payment_body(services.payment_refresh(payment)))


class OpsPaymentsApi(APIView):
    authentication_classes = [auth.ConsoleOperatorAuthentication]
    permission_classes = [auth.SignedInOperator]

    def get(self, request: Request) -> Response:
        wanted = str(request.query_params.get("status", ""))[:16]
        rows = []
        for payment in selectors.payments_all(status=wanted):
            body = selectors.payment_body(payment)
            body["account"] = {"id": payment.account_id, "name": payment.account.name}
            body["mismatch"] = payment.detail.get("mismatch")
            rows.append(body)
        return Response({"object": "list", "data": rows})


@require_GET
def receipt_page(request: HttpRequest, payment_id: str) -> HttpResponse:
    """A payment's receipt, for the console's signed-in key holder."""
    key = auth.signed_in_key(request)
    if key is None:
        raise Http404
    payment = selectors.payment_of(account_id=key.account_id, payment_id=_uuid(payment_id))
    if payment is None:
        raise Http404
    context = {"payment": payment, "account": key.account, "currency": settings.GHOSTGPT["CURRENCY"]}
    return render(request, "payments/receipt.html", context)


@csrf_exempt
@require_POST
def webhook(request: HttpRequest, provider: str) -> JsonResponse:
    """A provider's notification: verified its way (payments.providers), applied once."""
    chosen = provider_named(provider)
    if chosen is None:
        raise Http404
    try:
        observations = chosen.notifications(request)
    except ProviderRefused as exc:
        return JsonResponse({"error": {"message": str(exc), "type": "invalid_request_error"}}, status=400)
    services.observations_apply(provider, observations)
    return JsonResponse({"received": True})
