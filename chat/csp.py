"""Content-Security-Policy on every HTML page.

Scripts run only from this origin or with the request's nonce (the two small inline
scripts in templates/base.html carry it); images load only from this origin, `data:` and
`blob:` — so a Markdown image in an answer or a share, however a prompt-injected page
phrased it, cannot send the chat to a third-party server. Styles allow inline attributes
(KaTeX lays out formulas with them); nothing else may be embedded or framed, and forms post
only here (and, for single sign-on, to the configured providers' origins).
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from django.utils.decorators import sync_and_async_middleware

from chat.middleware import API_PATHS


def policy(nonce: str) -> str:
    # The sign-in pages' "Continue with <provider>" forms redirect to the provider.
    form_action = " ".join(["'self'", *settings.SSO_FORM_ORIGINS])
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src 'self' 'nonce-{nonce}'",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data: blob:",
            "font-src 'self' data:",
            "media-src 'self' blob: data:",
            "connect-src 'self'",
            "worker-src 'self' blob:",
            "object-src 'none'",
            "base-uri 'none'",
            f"form-action {form_action}",
            "frame-ancestors 'none'",
        ]
    )


def _prepare(request: HttpRequest) -> bool:
    if request.path.startswith(API_PATHS):
        return False  # JSON only: no page, no policy, no work on the gateway's hot path
    request.csp_nonce = secrets.token_urlsafe(16)  # type: ignore[attr-defined]
    return True


def _finish(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    if response.get("Content-Type", "").startswith("text/html"):
        response["Content-Security-Policy"] = policy(request.csp_nonce)  # type: ignore[attr-defined]
    return response


@sync_and_async_middleware
def ContentSecurityPolicyMiddleware(  # noqa: N802
    get_response: Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]],
):
    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> HttpResponseBase:
            if not _prepare(request):
                return await get_response(request)  # type: ignore[misc, no-any-return]
            return _finish(request, await get_response(request))  # type: ignore[misc]

        return async_middleware

    def middleware(request: HttpRequest) -> HttpResponseBase:
        if not _prepare(request):
            return get_response(request)  # type: ignore[return-value]
        return _finish(request, get_response(request))  # type: ignore[arg-type]

    return middleware
