"""Request id on every response, and the start time that Server-Timing measures from."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponseBase
from django.utils.decorators import sync_and_async_middleware

SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _begin(request: HttpRequest) -> str:
    incoming = request.headers.get("x-request-id", "")
    request_id = incoming if SAFE_REQUEST_ID.match(incoming) else f"req_{uuid.uuid4().hex}"
    request.request_id = request_id  # type: ignore[attr-defined]
    request.started_at = time.perf_counter()  # type: ignore[attr-defined]
    return request_id


@sync_and_async_middleware
def RequestIdMiddleware(get_response: Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]]):  # noqa: N802
    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> HttpResponseBase:
            request_id = _begin(request)
            response = await get_response(request)  # type: ignore[misc]
            response["x-request-id"] = request_id
            return response

        return async_middleware

    def middleware(request: HttpRequest) -> HttpResponseBase:
        request_id = _begin(request)
        response = get_response(request)
        response["x-request-id"] = request_id  # type: ignore[index]
        return response  # type: ignore[return-value]

    return middleware
