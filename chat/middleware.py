"""Request id on every response, the start time Server-Timing measures from, and the
access log. uvicorn's own access log is off (it prints query strings verbatim); this one
redacts secrets that clients put in URLs (`?key=`, `?admin_key=`).

Also Django's stock middleware, adapted to the async hot path. Under ASGI Django runs
each old-style middleware hook in a worker thread (`sync_to_async`): two thread hops per
middleware per request, ~14 for the stock list, which was most of what a `/health` round
trip cost. Hooks that only read headers and set attributes now run inline (`inline`);
session, auth and messages — which may touch the database — keep their hops for pages
and are skipped on the API paths, which authenticate by key and never use them
(`pages_only`)."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode

from asgiref.sync import iscoroutinefunction
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpRequest, HttpResponseBase, JsonResponse
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.middleware.csrf import CsrfViewMiddleware
from django.middleware.locale import LocaleMiddleware
from django.middleware.security import SecurityMiddleware
from django.utils.decorators import sync_and_async_middleware

from chat import lifecycle
from chat.api.errors import error_payload
from chat.logs import current_request_id
from chat.metrics import REQUESTS, RESPONSE_START

SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
SECRET_PARAMS = {"key", "api_key", "apikey", "admin_key", "token", "access_token"}
access_log = logging.getLogger("ghostgpt.access")


def _begin(request: HttpRequest) -> str:
    incoming = request.headers.get("x-request-id", "")
    request_id = incoming if SAFE_REQUEST_ID.match(incoming) else f"req_{uuid.uuid4().hex}"
    request.request_id = request_id  # type: ignore[attr-defined]
    current_request_id.set(request_id)  # for every log line of this request (chat.logs)
    request.started_at = time.perf_counter()  # type: ignore[attr-defined]
    return request_id


def redacted_path(request: HttpRequest) -> str:
    query = request.META.get("QUERY_STRING", "")
    if not query:
        return request.path
    pairs = [
        (k, "[redacted]" if k.lower() in SECRET_PARAMS else v) for k, v in parse_qsl(query, keep_blank_values=True)
    ]
    return f"{request.path}?{urlencode(pairs, safe='[]')}"


def _finish(request: HttpRequest, response: HttpResponseBase, request_id: str) -> None:
    response["x-request-id"] = request_id
    elapsed = (time.perf_counter() - request.started_at) * 1000  # type: ignore[attr-defined]
    match = getattr(request, "resolver_match", None)
    route = "/" + match.route if match is not None and match.route else "unmatched"
    model = getattr(request, "metrics_model", "")
    REQUESTS.labels(route, request.method or "", str(response.status_code), model).inc()
    RESPONSE_START.labels(route).observe(elapsed / 1000)
    access_log.info(
        '%s "%s %s" %s %.1fms', request_id, request.method, redacted_path(request), response.status_code, elapsed
    )


def _draining() -> HttpResponseBase:
    payload = error_payload(
        "This server process is restarting; retry the request.",
        "service_unavailable_error",
        code="server_shutting_down",
    )
    response = JsonResponse(payload, status=503)
    response["Retry-After"] = "1"
    response["Connection"] = "close"
    return response


@sync_and_async_middleware
def RequestIdMiddleware(get_response: Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]]):  # noqa: N802
    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> HttpResponseBase:
            request_id = _begin(request)
            if lifecycle.draining():  # on a kept-alive connection after SIGTERM: another process takes it
                response = _draining()
            else:
                response = await get_response(request)  # type: ignore[misc]
            _finish(request, response, request_id)
            return response

        return async_middleware

    def middleware(request: HttpRequest) -> HttpResponseBase:
        request_id = _begin(request)
        response = get_response(request)
        _finish(request, response, request_id)  # type: ignore[arg-type]
        return response  # type: ignore[return-value]

    return middleware


# The gateway's paths: key-authenticated, no Django session, user or messages.
API_PATHS = ("/v1/", "/v1beta/", "/health")


def inline(middleware: type) -> type:
    """`middleware` with its hooks called on the event loop in async requests (they must not
    block: header checks, redirects, response headers)."""

    async def __acall__(self: Any, request: HttpRequest) -> HttpResponseBase:  # noqa: N807
        response = self.process_request(request) if hasattr(self, "process_request") else None
        response = response or await self.get_response(request)
        if hasattr(self, "process_response"):
            response = self.process_response(request, response)
        return response

    namespace: dict[str, Any] = {"__acall__": __acall__, "__doc__": f"{middleware.__name__}, hooks inline."}
    if hasattr(middleware, "process_view"):
        sync_view = middleware.process_view

        async def process_view(self: Any, *args: Any) -> HttpResponseBase | None:
            return sync_view(self, *args)  # type: ignore[no-any-return]

        namespace["process_view"] = process_view
    return type(f"Inline{middleware.__name__}", (middleware,), namespace)


def pages_only(middleware: type) -> type:
    """`middleware` as Django runs it, except on the API paths, which skip it entirely."""

    async def __acall__(self: Any, request: HttpRequest) -> HttpResponseBase:  # noqa: N807
        if request.path.startswith(API_PATHS):
            return await self.get_response(request)  # type: ignore[no-any-return]
        return await middleware.__acall__(self, request)  # type: ignore[attr-defined, no-any-return]

    namespace = {"__acall__": __acall__, "__doc__": f"{middleware.__name__}, for pages only."}
    return type(f"PagesOnly{middleware.__name__}", (middleware,), namespace)


class _PageLocale(LocaleMiddleware):
    """Django's language negotiation for the pages only: the JSON APIs answer in English
    and skip its cost on every request (~4% of the /v1 hot path in a profile)."""

    API_PREFIXES = (*API_PATHS, "/api/")

    def process_request(self, request: HttpRequest) -> None:
        if not request.path.startswith(self.API_PREFIXES):
            super().process_request(request)

    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if request.path.startswith(self.API_PREFIXES):
            return response
        return super().process_response(request, response)


PageLocaleMiddleware = inline(_PageLocale)
InlineSecurityMiddleware = inline(SecurityMiddleware)
InlineCommonMiddleware = inline(CommonMiddleware)
InlineCsrfViewMiddleware = inline(CsrfViewMiddleware)
InlineXFrameOptionsMiddleware = inline(XFrameOptionsMiddleware)
PagesOnlySessionMiddleware = pages_only(SessionMiddleware)
PagesOnlyAuthenticationMiddleware = pages_only(AuthenticationMiddleware)
PagesOnlyMessageMiddleware = pages_only(MessageMiddleware)
