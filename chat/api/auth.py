"""Who is calling: one API key, however the client chose to send it."""

from __future__ import annotations

import asyncio
import hmac
import time
from dataclasses import dataclass

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.utils import timezone

from chat.billing.ratelimit import Limits
from chat.keycache import key_auth
from chat.models import ApiKey
from chat.selectors import KeyAuth, api_key_auth_by_id
from chat.services import api_key_mark_used

from .errors import ApiError

LAST_USED_RESOLUTION_SECONDS = 60.0
_last_marked: dict[int, float] = {}
_background: set[asyncio.Task[None]] = set()


def presented_key(request: HttpRequest) -> str | None:
    """The key from `Authorization: Bearer KEY`, a raw `Authorization: KEY`,
    `x-api-key` (Anthropic clients), `x-goog-api-key` or, on Gemini routes, `?key=`."""
    authorization = request.headers.get("Authorization", "").strip()
    if authorization:
        scheme, _, rest = authorization.partition(" ")
        if scheme.lower() == "bearer":
            return rest.strip() or None
        return None if rest.strip() else authorization
    for header in ("x-api-key", "x-goog-api-key"):
        if value := request.headers.get(header, "").strip():
            return value
    # Gemini clients may send `?key=`; only the Gemini routes set this (see chat/api/gemini.py).
    return getattr(request, "query_key", None) or None


def _narrower(limit: int | None, caps: tuple[int | None, ...]) -> int | None:
    """The key's own cap where it is tighter than the account's limit (None: no cap)."""
    tightest = min((cap for cap in caps if cap is not None), default=None)
    if tightest is None or (limit is not None and tightest >= limit):
        return None
    return tightest


def account_limits(
    *,
    key_id: int,
    account_id: int,
    account_rpm: int | None,
    account_tpm: int | None,
    rpm_caps: tuple[int | None, ...],
    tpm_caps: tuple[int | None, ...],
    member: tuple[int, int | None, int | None] | None = None,
) -> tuple[Limits, Limits | None]:
    """A tier's limits are the account's, whichever of its keys is used: (the account's
    limits, the key's own further cap or None). A key's rpm/tpm and its own tier only narrow.
    `member`: (user id, rpm, tpm) of an organization member with limits of their own — then
    the further cap is one counter for all that member's keys of the account."""
    account = Limits(f"account:{account_id}", account_rpm, account_tpm)
    subject = f"key:{key_id}"
    if member is not None and (member[1] is not None or member[2] is not None):
        subject = f"member:{account_id}:{member[0]}"
        rpm_caps, tpm_caps = (*rpm_caps, member[1]), (*tpm_caps, member[2])
    rpm, tpm = _narrower(account_rpm, rpm_caps), _narrower(account_tpm, tpm_caps)
    key = Limits(subject, rpm, tpm) if rpm is not None or tpm is not None else None
    return account, key


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of one request: which key, which account pays, what it may do. `limits`
    are the account's (shared by all its keys); `key_limits` the key's own tighter cap."""

    key_id: int
    account_id: int
    allowed_models: tuple[str, ...]
    limits: Limits
    kind: str = "api"  # ApiKey.Kind: "api" or "session"
    key_limits: Limits | None = None
    # The person behind the key (who made it, or whose signed-in browser it is); their
    # chats are theirs within the account (an organization's members see only their own).
    user_id: int | None = None
    # The account's balance is below zero (a paid top-up taken back): 402 until topped up.
    in_debt: bool = False
    # The budgets a priced request holds its worst case against (chat.billing.budgets), and
    # the account's time zone, where their periods begin.
    budgets: tuple[int, ...] = ()
    time_zone: str = "UTC"
    # The key asks for the response cache on every deterministic request (chat.api.cache).
    response_cache: bool = False

    def may_use(self, model: str) -> bool:
        return not self.allowed_models or model in self.allowed_models

    @property
    def all_limits(self) -> tuple[Limits, ...]:
        return (self.limits,) if self.key_limits is None else (self.limits, self.key_limits)

    @classmethod
    def authenticated(cls, key: KeyAuth) -> Principal:
        limits, own = account_limits(
            key_id=key.id,
            account_id=key.account_id,
            account_rpm=key.account_tier_rpm,
            account_tpm=key.account_tier_tpm,
            rpm_caps=(key.rpm_override, key.tier_rpm if key.tier_id is not None else None),
            tpm_caps=(key.tpm_override, key.tier_tpm if key.tier_id is not None else None),
            member=(key.user_id, key.member_rpm, key.member_tpm) if key.user_id is not None else None,
        )
        in_debt = key.account_balance is not None and key.account_balance < 0
        return cls(
            key.id,
            key.account_id,
            tuple(key.allowed_models or ()),
            limits,
            key.kind,
            own,
            key.user_id,
            in_debt,
            key.budgets,
            key.account_time_zone,
            key.response_cache,
        )

    @classmethod
    def of(cls, key: ApiKey) -> Principal:
        tier = key.account.tier
        limits, own = account_limits(
            key_id=key.pk,
            account_id=key.account_id,
            account_rpm=tier.rpm,
            account_tpm=tier.tpm,
            rpm_caps=(key.rpm_override, key.tier.rpm if key.tier else None),
            tpm_caps=(key.tpm_override, key.tier.tpm if key.tier else None),
        )
        return cls(key.pk, key.account_id, tuple(key.allowed_models or ()), limits, key.kind, own, key.user_id)


# The one caller of a model-tier process (GHOSTGPT_ROLE=model): the web tier, which has
# already authenticated, limited and billed the request.
MODEL_TIER = Principal(0, 0, (), Limits("model-tier", None, None), "internal")


def _model_tier(request: HttpRequest) -> Principal:
    secret = (presented_key(request) or "").encode()
    if not hmac.compare_digest(secret, settings.MODEL_TIER_KEY.encode()):
        raise _unauthorized(
            "This is a GhostGPT model server: it serves only its web tier (GHOSTGPT_MODEL_TIER_KEY).",
            "invalid_api_key",
        )
    return MODEL_TIER


def _unauthorized(message: str, code: str) -> ApiError:
    return ApiError(401, message, error_type="authentication_error", code=code)


def check_usable(key: ApiKey | KeyAuth) -> None:
    """401 for an agent token, a disabled or expired key, or an expired membership."""
    if key.kind == ApiKey.Kind.AGENT:
        raise _unauthorized(
            "This is an agent token: it connects a model worker at /ws/agent and cannot call the API.", "agent_token"
        )
    check_key_state(key)


def check_key_state(key: ApiKey | KeyAuth) -> None:
    """401 for a key of any kind (API, session, agent) that is disabled — by its owner or
    the operator — or expired, or whose account's membership is over."""
    if isinstance(key, KeyAuth):
        account_active, expiry = key.account_is_active, key.membership_expires_at
    else:
        account_active, expiry = key.account.is_active, key.account.membership_expires_at
    now = timezone.now()
    if not key.is_active or key.disabled_by_operator or not account_active:
        raise _unauthorized("This API key has been disabled.", "api_key_disabled")
    if key.expires_at and key.expires_at <= now:
        raise _unauthorized(f"This API key expired at {key.expires_at.isoformat()}.", "api_key_expired")
    if expiry and expiry <= now:
        raise _unauthorized(
            f"Your membership expired at {expiry.isoformat()}; renew it to use the API.", "membership_expired"
        )


def presented_session(request: HttpRequest) -> str | None:
    """The browser session's secret from the `gg_sess` cookie."""
    return request.COOKIES.get(settings.WEB["SESSION_COOKIE"]) or None


class _CsrfCheck(CsrfViewMiddleware):
    def _reject(self, request: HttpRequest, reason: str) -> str:  # type: ignore[override]
        return reason


def csrf_rejection(request: HttpRequest) -> str | None:
    """Why a cookie-authenticated request fails Django's CSRF check, or None when it passes
    (safe methods always pass). Key-authenticated requests are never checked: a browser
    does not attach an Authorization header on its own."""
    check = _CsrfCheck(lambda _: HttpResponse())
    check.process_request(request)
    return check.process_view(request, _needs_csrf, (), {})  # type: ignore[return-value]


def _needs_csrf() -> None:  # the "view" Django's check inspects for csrf_exempt
    return None


def session_csrf_error(request: HttpRequest) -> ApiError | None:
    reason = csrf_rejection(request)
    if reason is None:
        return None
    return ApiError(
        403,
        f"CSRF check failed ({reason}). Browser requests authenticated by the gg_sess cookie must send "
        "the X-CSRFToken header; API clients should send their key instead.",
        error_type="permission_error",
        code="csrf_failed",
    )


def principal_for_key(key_id: int) -> Principal:
    """(Sync.) The Principal of a key for work done on its behalf after its request ended (a
    job billing the person who started it); 401 when the key is gone or no longer usable."""
    key = api_key_auth_by_id(key_id=key_id)
    if key is None:
        raise _unauthorized("The key (or browser session) that started this work no longer exists.", "invalid_api_key")
    check_usable(key)
    return Principal.authenticated(key)


async def authenticate(request: HttpRequest) -> Principal:
    """The caller's Principal, or 401. The key comes from chat.keycache (a database query
    only when the key is not cached or anything about keys changed). An API key (header) wins over
    the browser session cookie; the cookie needs a CSRF token on state-changing requests."""
    if settings.ROLE == "model":
        return _model_tier(request)
    secret = presented_key(request)
    if (
        secret is None
        and (secret := presented_session(request)) is not None
        and (error := session_csrf_error(request)) is not None
    ):
        raise error
    if secret is None:
        raise ApiError(
            401,
            "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY' (or x-api-key).",
            error_type="authentication_error",
            code="missing_api_key",
        )
    key = await key_auth(secret=secret)
    if key is None:
        raise _unauthorized("Incorrect API key provided.", "invalid_api_key")
    check_usable(key)
    _mark_used_later(key.id)
    return Principal.authenticated(key)


def _mark_used_later(key_id: int) -> None:
    """Record last use at most once a minute per key, off the request path."""
    now = time.monotonic()
    if now - _last_marked.get(key_id, -LAST_USED_RESOLUTION_SECONDS) < LAST_USED_RESOLUTION_SECONDS:
        return
    _last_marked[key_id] = now
    task = asyncio.get_running_loop().create_task(api_key_mark_used(key_id=key_id))
    _background.add(task)
    task.add_done_callback(_background.discard)
