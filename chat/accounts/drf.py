"""DRF plumbing for the JSON management APIs: key auth, and errors in the product format."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from audit.context import act_as_key
from chat.api.auth import check_usable, presented_key, presented_session, session_csrf_error
from chat.api.errors import ApiError
from chat.models import Account, ApiKey
from chat.selectors import api_key_get_for_auth_sync, session_key_get


class ApiKeyAuthentication(BaseAuthentication):
    """request.user is the key's Account, request.auth the ApiKey — from a header key, or
    from the browser's `gg_sess` cookie (CSRF-checked on state-changing requests; a stale
    cookie counts as no credentials, so open endpoints stay open)."""

    def authenticate(self, request: Request) -> tuple[Account, ApiKey] | None:
        secret = presented_key(request._request)
        if secret is None:
            return self._from_session(request)
        key = api_key_get_for_auth_sync(secret=secret)
        if key is None:
            raise exceptions.AuthenticationFailed("Incorrect API key provided.", code="invalid_api_key")
        try:
            check_usable(key)
        except ApiError as exc:
            raise exceptions.AuthenticationFailed(exc.message, code=exc.code) from None
        act_as_key(key)
        return key.account, key

    def _from_session(self, request: Request) -> tuple[Account, ApiKey] | None:
        key = session_key_get(secret=presented_session(request._request))
        if key is None:
            return None
        if (error := session_csrf_error(request._request)) is not None:
            raise error
        return key.account, key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="ghostgpt"'


class HasApiKey(BasePermission):
    """Account management: API keys only, not browser sessions."""

    message = "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'."

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.auth, ApiKey) and request.auth.kind == ApiKey.Kind.API


class HasKeyOrSession(BasePermission):
    """The browser product: a `gg_sess` session or an API key."""

    message = "No session: call POST /api/session/bootstrap first, or send an API key."

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.auth, ApiKey)
