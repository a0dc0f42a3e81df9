"""allauth's session tracking for the pages only (the gateway's paths skip it, as they
skip sessions), and the `gg_sess` cookie that signing in and out changes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from allauth.usersessions.internal import usersessionkit
from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from django.utils.decorators import sync_and_async_middleware

from chat.middleware import API_PATHS

Handler = Callable[[HttpRequest], Any]
# Requests that are not a person looking at a page: no session activity to track.
NOT_PAGES = (*API_PATHS, "/api/", "/console/api/", "/static/", "/vendor/", "/metrics", "/jsi18n/")
# What request._gg_sess_cookie holds to clear the cookie.
CLEAR = ""


@sync_and_async_middleware
def PersonMiddleware(get_response: Handler) -> Handler:  # noqa: N802
    """`request.person`: who is signed in (Django's lazy user, read only when asked). DRF
    views overwrite `request.user` with the key's Account; code that asks for the person
    (the console, the chat's bootstrap, the audit trail) reads this."""
    if iscoroutinefunction(get_response):

        async def middleware(request: HttpRequest) -> HttpResponseBase:
            if hasattr(request, "user"):
                request.person = request.user  # type: ignore[attr-defined]
            return await get_response(request)  # type: ignore[no-any-return]

        markcoroutinefunction(middleware)
        return middleware

    def sync_middleware(request: HttpRequest) -> HttpResponseBase:
        if hasattr(request, "user"):
            request.person = request.user  # type: ignore[attr-defined]
        return get_response(request)  # type: ignore[no-any-return]

    return sync_middleware


def _track(request: HttpRequest) -> None:
    usersessionkit.track_activity(
        request, user=getattr(request, "user", None), session=getattr(request, "session", None)
    )


@sync_and_async_middleware
def UserSessionsMiddleware(get_response: Handler) -> Handler:  # noqa: N802
    """allauth's session-activity tracking (the "Sessions" page: address, browser, last
    seen), on page loads only and off the event loop: allauth's own middleware is sync-only
    and would push every async request onto a thread."""
    if iscoroutinefunction(get_response):

        async def middleware(request: HttpRequest) -> HttpResponseBase:
            if not request.path.startswith(NOT_PAGES):
                await sync_to_async(_track)(request)
            return await get_response(request)  # type: ignore[no-any-return]

        markcoroutinefunction(middleware)
        return middleware

    def sync_middleware(request: HttpRequest) -> HttpResponseBase:
        if not request.path.startswith(NOT_PAGES):
            _track(request)
        return get_response(request)  # type: ignore[no-any-return]

    return sync_middleware


def _apply_cookie(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    secret = getattr(request, "_gg_sess_cookie", None)
    if secret is None:
        return response
    if secret == CLEAR:
        response.delete_cookie(settings.WEB["SESSION_COOKIE"], samesite="Lax")
    else:
        from chat.web.session import set_session_cookie

        set_session_cookie(response, secret, request)
    return response


@sync_and_async_middleware
def BrowserSessionCookieMiddleware(get_response: Handler) -> Handler:  # noqa: N802
    """Sets the `gg_sess` cookie to the key people.signals issued at sign-in, or clears it
    at sign-out (the next page load starts a fresh anonymous session)."""
    if iscoroutinefunction(get_response):

        async def middleware(request: HttpRequest) -> HttpResponseBase:
            return _apply_cookie(request, await get_response(request))

        markcoroutinefunction(middleware)
        return middleware

    def sync_middleware(request: HttpRequest) -> HttpResponseBase:
        return _apply_cookie(request, get_response(request))

    return sync_middleware
