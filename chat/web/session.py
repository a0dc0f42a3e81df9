"""`POST /api/session/bootstrap`: an anonymous account and its `gg_sess` cookie."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from django.middleware.csrf import get_token
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chat.accounts.drf import ApiKeyAuthentication
from chat.api.errors import count_or_429
from chat.billing.ratelimit import Limits
from chat.models import ApiKey
from chat.network import client_key
from chat.services import session_create


def _session_body(key: ApiKey, request: Request, *, created: bool) -> dict[str, object]:
    account = key.account
    return {
        "object": "session",
        "created": created,
        "account": {"id": account.pk, "tier": account.tier.name, "balance": float(account.balance)},
        "csrf_token": get_token(request._request),  # also set as the csrftoken cookie
    }


def set_session_cookie(response: HttpResponseBase, secret: str, request: HttpRequest) -> None:
    """The browser session's `gg_sess` cookie: HttpOnly, SameSite=Lax, Secure on HTTPS."""
    config = settings.WEB
    response.set_cookie(
        config["SESSION_COOKIE"],
        secret,
        max_age=config["SESSION_MAX_AGE_SECONDS"],
        httponly=True,
        samesite="Lax",
        secure=request.is_secure(),
    )


class SessionBootstrapApi(APIView):
    """Idempotent: a caller that already holds a valid session gets it back unchanged."""

    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [AllowAny]

    def post(self, request: Request) -> Response:
        held = request.auth if isinstance(request.auth, ApiKey) and request.auth.kind == ApiKey.Kind.SESSION else None
        user = getattr(request._request, "person", None)
        if user is not None and user.is_authenticated:
            # A signed-in person's chat runs on their own account's key for this session.
            from people.services import browser_key_for, browser_session_bind

            own = browser_key_for(request._request)
            if held is not None and own is not None and held.pk == own.pk:
                return Response(_session_body(held, request, created=False))
            key, secret = browser_session_bind(request._request, user)
            return self._with_cookie(Response(_session_body(key, request, created=True), status=201), secret, request)
        if held is not None and held.user_id is None:
            return Response(_session_body(held, request, created=False))
        self._limit(request)
        key, secret = session_create()
        return self._with_cookie(Response(_session_body(key, request, created=True), status=201), secret, request)

    def _with_cookie(self, response: Response, secret: str, request: Request) -> Response:
        set_session_cookie(response, secret, request._request)
        return response

    def _limit(self, request: Request) -> None:
        subject = f"bootstrap:{client_key(request._request)}"
        count_or_429(Limits(subject, settings.WEB["BOOTSTRAP_RATE"], None), "new sessions from this address")
