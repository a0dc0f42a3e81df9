"""OpenAI-shaped errors: `{"error": {"message", "type", "param", "code"}}`, never HTML."""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import async_to_sync
from django.http import HttpRequest, HttpResponse, JsonResponse

from chat.backends.base import BackendError
from chat.billing.ratelimit import Limits, limiter

View = Callable[..., Awaitable[HttpResponse]]


class ApiError(Exception):
    """An error the client should see. Raise it anywhere below a /v1 view."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.param = param
        self.code = code
        self.retry_after = retry_after

    @classmethod
    def from_backend(cls, exc: BackendError) -> ApiError:
        return cls(
            exc.status,
            exc.message,
            error_type=exc.error_type,
            param=exc.param,
            code=exc.code,
            retry_after=exc.retry_after,
        )

    def payload(self) -> dict[str, dict[str, object]]:
        return error_payload(self.message, self.error_type, param=self.param, code=self.code)

    def response(self) -> JsonResponse:
        response = JsonResponse(self.payload(), status=self.status)
        if self.retry_after is not None:
            response["Retry-After"] = str(self.retry_after)
        return response


def error_payload(
    message: str, error_type: str, *, param: str | None = None, code: str | None = None
) -> dict[str, dict[str, object]]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def bad_request(message: str, *, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


def rate_limited(message: str, *, kind: str, retry_after: int) -> ApiError:
    """429 in OpenAI's shape (`type` is "requests" or "tokens", as OpenAI sends it)."""
    return ApiError(429, message, error_type=kind, code="rate_limit_exceeded", retry_after=retry_after)


def count_or_429(limits: Limits, too_many: str) -> None:
    """Count one request against `limits` from synchronous code (DRF views); 429 with
    Retry-After when over: "Too many {too_many}; retry after Ns."."""
    async_to_sync(acount_or_429)(limits, too_many)


async def acount_or_429(limits: Limits, too_many: str) -> None:
    """`count_or_429` for async views."""
    state = await limiter().hit(limits)
    if state.over_requests:
        message = f"Too many {too_many}; retry after {state.reset_seconds}s."
        raise rate_limited(message, kind="requests", retry_after=state.reset_seconds)


def internal_error() -> ApiError:
    return ApiError(
        500,
        "The server had an error while processing your request. Retry, and report it if it persists.",
        error_type="server_error",
    )


def reshaped_errors(body_for: Callable[[int, str], dict[str, Any]]) -> Callable[[View], View]:
    """Rewrite the JSON error bodies of an `openai_errors` view into another API's shape
    (Anthropic's, Gemini's): `body_for(status, message)`."""

    def decorate(view: View) -> View:
        @functools.wraps(view)
        async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            response = await view(request, *args, **kwargs)
            if response.status_code >= 400 and response.get("Content-Type", "").startswith("application/json"):
                try:
                    message = json.loads(response.content)["error"]["message"]
                except (ValueError, KeyError, TypeError):
                    message = "The request failed."
                response.content = json.dumps(body_for(response.status_code, message)).encode()
            return response

        return wrapper

    return decorate
