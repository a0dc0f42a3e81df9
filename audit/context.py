"""Who is acting and from where, for the receivers that record what they do.

The middleware keeps the request; the authentication classes say which key or admin key
acted (chat.accounts.drf, chat.console.auth, chat.accounts.admin_views). Without either,
a signed-in person acts; outside a request (a management command, a task), the system.
"""

from __future__ import annotations

import contextvars
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase
from django.utils.decorators import sync_and_async_middleware

from chat.logs import current_request_id
from chat.network import client_address


@dataclass(frozen=True)
class Actor:
    kind: str  # person, key, admin, operator, system
    ref: str  # user:12, key:gg-AbCdEf12, admin:<fingerprint>, cli
    label: str = ""  # an email or a key's name (personal data: erasable)
    account_id: int | None = None


_request: contextvars.ContextVar[HttpRequest | None] = contextvars.ContextVar("audit_request", default=None)
_actor: contextvars.ContextVar[Actor | None] = contextvars.ContextVar("audit_actor", default=None)

SYSTEM = Actor("system", "system")


def admin_fingerprint(secret: str) -> str:
    """Which admin key acted, without the key: the first 12 hex digits of its SHA-256."""
    return hashlib.sha256(secret.encode()).hexdigest()[:12]


def act_as_key(key: Any) -> None:
    _actor.set(Actor("key", f"key:{key.prefix}", key.name, key.account_id))


def act_as_admin(secret: str) -> None:
    _actor.set(Actor("admin", f"admin:{admin_fingerprint(secret)}"))


def act_as(actor: Actor | None) -> contextvars.Token[Actor | None]:
    return _actor.set(actor)


def current_actor() -> Actor:
    if (actor := _actor.get()) is not None:
        return actor
    request = _request.get()
    user = getattr(request, "person", None) if request is not None else None
    if user is not None and user.is_authenticated:
        return Actor("operator" if user.is_staff else "person", f"user:{user.pk}", user.email or user.get_username())
    return Actor("anonymous", "anonymous") if request is not None else SYSTEM


def current_where() -> tuple[str, str]:
    """(client address, request id)."""
    request = _request.get()
    address = client_address(request.META) if request is not None else None
    request_id = current_request_id.get()
    return (str(address) if address is not None else ""), ("" if request_id == "-" else request_id)


Handler = Callable[[HttpRequest], Any]


@sync_and_async_middleware
def AuditContextMiddleware(get_response: Handler) -> Handler:  # noqa: N802
    """Keeps the request for the receivers (a context variable: one per request, cheap)."""
    if iscoroutinefunction(get_response):

        async def middleware(request: HttpRequest) -> HttpResponseBase:
            token = _request.set(request)
            actor = _actor.set(None)
            try:
                return await get_response(request)  # type: ignore[no-any-return]
            finally:
                _actor.reset(actor)
                _request.reset(token)

        markcoroutinefunction(middleware)
        return middleware

    def sync_middleware(request: HttpRequest) -> HttpResponseBase:
        token = _request.set(request)
        actor = _actor.set(None)
        try:
            return get_response(request)  # type: ignore[no-any-return]
        finally:
            _actor.reset(actor)
            _request.reset(token)

    return sync_middleware


__all__ = ["Actor", "AuditContextMiddleware", "act_as", "act_as_admin", "act_as_key", "current_actor", "current_where"]
