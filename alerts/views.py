"""The alerts' management API (keys of full scope): webhook endpoints, their delivery logs, a
test event, and the account's thresholds."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chat.api.errors import ApiError
from chat.console import auth
from chat.models import ApiKey

from . import services
from .models import EVENTS, OPERATOR_EVENTS, Delivery, Endpoint, Settings


def _full(request: Request) -> None:
    if request.auth.scope != ApiKey.Scope.FULL:
        raise ApiError(403, "Alerts need a key with full scope.", error_type="permission_error", code="scope_exceeded")


def _endpoint_body(endpoint: Endpoint, *, secret: bool = False) -> dict[str, Any]:
    body = {
        "id": endpoint.pk,
        "object": "webhook_endpoint",
        "url": endpoint.url,
        "events": endpoint.events,
        "active": endpoint.is_active,
        "created_at": endpoint.created_at,
    }
    return {**body, "secret": endpoint.secret} if secret else body


def _delivery_body(delivery: Delivery) -> dict[str, Any]:
    return {
        "id": delivery.message_id,
        "event": delivery.event,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "last_status": delivery.last_status,
        "last_error": delivery.last_error,
        "latency_ms": delivery.latency_ms,
        "created_at": delivery.created_at,
        "finished_at": delivery.finished_at,
    }


class Owned(APIView):
    """Whose endpoints: the signed-in key's account (the operators' views: None)."""

    def owner(self, request: Request) -> Any:
        _full(request)
        return request.user

    def endpoint(self, request: Request, endpoint_id: int) -> Endpoint:
        found = Endpoint.objects.filter(pk=endpoint_id, account=self.owner(request)).first()
        if found is None:
            raise ApiError(404, "No such webhook endpoint here.", code="not_found")
        return found


class EndpointsApi(Owned):
    class InputSerializer(serializers.Serializer):
        url = serializers.CharField(max_length=2000)
        events = serializers.ListField(child=serializers.CharField(max_length=32), required=False, max_length=20)

    def get(self, request: Request) -> Response:
        owner = self.owner(request)
        rows = [_endpoint_body(e) for e in Endpoint.objects.filter(account=owner)]
        events = OPERATOR_EVENTS if owner is None else [e for e in EVENTS if e not in OPERATOR_EVENTS]
        return Response({"object": "list", "data": rows, "events": list(events)})

    def post(self, request: Request) -> Response:
        owner = self.owner(request)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            endpoint = services.endpoint_create(
                account=owner, url=data.validated_data["url"], events=data.validated_data.get("events", [])
            )
        except services.AlertError as exc:
            raise ApiError(400, exc.message, param=exc.param, code="invalid_webhook") from None
        return Response(_endpoint_body(endpoint, secret=True), status=status.HTTP_201_CREATED)


class EndpointApi(Owned):
    class InputSerializer(serializers.Serializer):
        active = serializers.BooleanField()

    def patch(self, request: Request, endpoint_id: int) -> Response:
        endpoint = self.endpoint(request, endpoint_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint.is_active = data.validated_data["active"]
        endpoint.save(update_fields=["is_active"])
        return Response(_endpoint_body(endpoint))

    def delete(self, request: Request, endpoint_id: int) -> Response:
        self.endpoint(request, endpoint_id).delete()
        return Response({"id": endpoint_id, "object": "webhook_endpoint", "deleted": True})


class EndpointTestApi(Owned):
    """ "Send test event": a `test` event to this endpoint, delivered like any other."""

    def post(self, request: Request, endpoint_id: int) -> Response:
        endpoint = self.endpoint(request, endpoint_id)
        made = services.emit(endpoint.account_id, "test", {"endpoint": endpoint.pk}, only=endpoint)
        return Response(_delivery_body(made[0]), status=status.HTTP_202_ACCEPTED)


class DeliveriesApi(Owned):
    def get(self, request: Request, endpoint_id: int) -> Response:
        endpoint = self.endpoint(request, endpoint_id)
        rows = [_delivery_body(d) for d in endpoint.deliveries.all()[:100]]
        return Response({"object": "list", "data": rows})


class AlertSettingsApi(APIView):
    """GET; PUT {"balance_below": "5.00" | null, "email": true|false}."""

    class InputSerializer(serializers.Serializer):
        balance_below = serializers.DecimalField(max_digits=24, decimal_places=10, allow_null=True, min_value=0)
        email = serializers.BooleanField(required=False)

    def _body(self, config: Settings | None) -> dict[str, Any]:
        return {
            "object": "alert_settings",
            "balance_below": str(config.balance_below) if config and config.balance_below is not None else None,
            "email": config.email if config else True,
        }

    def get(self, request: Request) -> Response:
        _full(request)
        return Response(self._body(Settings.objects.filter(account=request.user).first()))

    def put(self, request: Request) -> Response:
        _full(request)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        config = services.settings_set(
            account=request.user,
            balance_below=data.validated_data["balance_below"],
            email=data.validated_data.get("email"),
        )
        return Response(self._body(config))


# The console's own copies: signed in by the console's session (chat.console.auth).


class _Console:
    authentication_classes = [auth.ConsoleKeyAuthentication]
    permission_classes = [auth.SignedIn]


class ConsoleEndpointsApi(_Console, EndpointsApi):
    pass


class ConsoleEndpointApi(_Console, EndpointApi):
    pass


class ConsoleEndpointTestApi(_Console, EndpointTestApi):
    pass


class ConsoleDeliveriesApi(_Console, DeliveriesApi):
    pass


class ConsoleAlertSettingsApi(_Console, AlertSettingsApi):
    pass


# The operators' endpoints (upstream events), in the ops console's session.


class _Operators:
    authentication_classes = [auth.ConsoleOperatorAuthentication]
    permission_classes = [auth.SignedInOperator]

    def owner(self, request: Request) -> Any:
        return None


class OpsEndpointsApi(_Operators, EndpointsApi):
    pass


class OpsEndpointApi(_Operators, EndpointApi):
    pass


class OpsEndpointTestApi(_Operators, EndpointTestApi):
    pass


class OpsDeliveriesApi(_Operators, DeliveriesApi):
    pass
