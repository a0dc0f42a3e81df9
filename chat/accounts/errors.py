"""DRF errors in the product's format: {"error": {"message", "type", "param", "code"}}."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from chat.api.errors import ApiError, error_payload

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
}


def _first_problem(detail: Any, path: str = "") -> tuple[str | None, str]:
    if isinstance(detail, dict):
        for field, inner in detail.items():
            name = field if field != "non_field_errors" else ""
            return _first_problem(inner, f"{path}.{name}".strip(".") if name else path)
    if isinstance(detail, list) and detail:
        return _first_problem(detail[0], path)
    return (path or None), str(detail)


def product_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Every DRF error as {"error": {"message", "type", "param", "code"}}."""
    if isinstance(exc, ApiError):
        response = Response(exc.payload(), status=exc.status)
        if exc.retry_after is not None:
            response["Retry-After"] = str(exc.retry_after)
        return response
    response = exception_handler(exc, context)
    if response is None:
        return None  # Django turns it into a JSON 500 (handler500)
    param, message = _first_problem(response.data)
    code = getattr(exc, "get_codes", lambda: None)()
    code = code if isinstance(code, str) else (_first_problem(code)[1] if code else None)
    if isinstance(exc, exceptions.ValidationError) and param:
        message = f"Invalid '{param}': {message}"
    if isinstance(exc, exceptions.NotAuthenticated):
        code = "missing_api_key"
    error_type = ERROR_TYPES.get(response.status_code, "invalid_request_error")
    if response.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
        code = "method_not_allowed"
    response.data = error_payload(message, error_type, param=param, code=code)
    return response
