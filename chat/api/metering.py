"""The money side of one generation request: admit, count, settle.

Order: before any backend, upstream or agent is contacted, the request's worst case — the
upper bound of its prompt (chat.billing.estimate: every message, function call, tool
schema and image) + max_tokens for every choice — is held against the key's TPM (429 when
the window cannot take it) and reserved from the balance at the price of the canonical
model id (402 when the balance is short). A backend that counts the prompt on this machine
before any model work (the embedded model's tokenizer: `local_count`) has its money reserved
at that exact count instead, when its `Accepted` reports it, so a balance for N requests
serves exactly N; TPM is corrected to the exact worst case at the same point. When the response ends,
normally or by disconnect, the request settles to the real usage, clamped to what the
request could produce — or, when the model reported none, to the bound of what was
delivered — and TPM is corrected to the same count.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from decimal import Decimal
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from chat import db, tracing
from chat.backends.base import Accepted, GenerationRequest, TextDelta, ToolCallDelta, Usage
from chat.billing.budgets import Exceeded, exceeded
from chat.billing.estimate import completion_bound, prompt_bound, prompt_floor, text_floor
from chat.billing.pricing import Price
from chat.billing.ratelimit import Limits, TokenHold, limiter, window_reset_seconds
from chat.billing.wallet import (
    InsufficientBalance,
    Reservation,
    usage_record,
    wallet_reserve,
    wallet_settle,
)
from chat.metrics import COST, TOKENS
from chat.models import Account, Budget, UsageRecord
from chat.redaction import redact

from .auth import Principal
from .errors import ApiError, rate_limited

logger = logging.getLogger(__name__)
COST_PLACES = Decimal("0.0000000001")


def _money(value: Decimal) -> float:
    return float(value.quantize(COST_PLACES))


# The API a request spoke, by path prefix (most specific first), for the requests list.
DIALECTS = (
    ("/v1/chat/completions", "chat"),
    ("/v1/completions", "completions"),
    ("/v1/messages", "messages"),
    ("/v1/responses", "responses"),
    ("/v1/embeddings", "embeddings"),
    ("/v1beta/", "gemini"),
    ("/v1/models/", "gemini"),
)


def dialect_of(path: str) -> str:
    return next((name for prefix, name in DIALECTS if path.startswith(prefix)), "other")


def _millis(seconds: float | None) -> int | None:
    return None if seconds is None else max(0, round(seconds * 1000))


def _last_user_text(request: GenerationRequest) -> str:
    for message in reversed(request.messages):
        if message.role == "user":
            return message.content
    text = request.prompts[-1] if request.prompts else ""
    return text if isinstance(text, str) else ""


def _clamp(value: Any, bound: int) -> int:
    """A model's token count as a number between 0 and what the request allows."""
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return bound
    return min(max(number, 0), bound)


def in_debt_error() -> ApiError:
    return ApiError(
        402,
        "Your balance is below zero (a payment was refunded or disputed): top up before the next request.",
        error_type="insufficient_balance_error",
        code="insufficient_balance",
    )


def check_spend(key: Any) -> None:
    """For what a key starts without a price (the tools): 402 while its account is below
    zero or a budget on its path (its own, its maker's as a member, the account's) has no
    room left in its period — the refusals a priced request would get."""
    balance, time_zone = Account.objects.filter(pk=key.account_id).values_list("balance", "time_zone").get()
    if balance < 0:
        raise in_debt_error()
    path = Q(scope=Budget.Scope.ACCOUNT) | Q(scope=Budget.Scope.KEY, key_id=key.pk)
    if key.user_id is not None:
        path |= Q(scope=Budget.Scope.MEMBER, user_id=key.user_id)
    budgets = list(Budget.objects.filter(path, account_id=key.account_id).values_list("pk", flat=True))
    if budgets:
        over = exceeded(budgets, LEAST, timezone.now(), time_zone or "UTC")
        if over is not None:
            raise budget_exceeded(over, LEAST)


REDACTION_MARGIN = 64
LEAST = Decimal("1e-10")  # the ledger's smallest amount: "no room for anything"


def budget_exceeded(over: Exceeded, amount: Decimal) -> ApiError:
    """402 `budget_exceeded`: which budget, what is used of it, when it resets."""
    budget, currency = over.budget, settings.GHOSTGPT["CURRENCY"]
    period = {"day": "daily", "week": "weekly", "month": "monthly"}.get(budget.period, "lifetime")
    which = {
        "key": f"this key's {period} budget",
        "member": f"your {period} budget as a member",
        "account": f"the account's {period} budget",
    }[budget.scope]
    resets = f"; it resets at {over.resets.isoformat()}" if over.resets is not None else "; it does not reset"
    return ApiError(
        402,
        f"Budget exceeded: {which} of {_money(budget.amount)} {currency} has "
        f"{_money(over.used)} spent or held, and this request may cost up to {_money(amount)} {currency}"
        f"{resets}.",
        error_type="insufficient_balance_error",
        code="budget_exceeded",
    )


class Meter:
    def __init__(
        self,
        *,
        principal: Principal,
        model: str,
        price: Price,
        request_id: str,
        request: GenerationRequest,
        image_tokens: int = 0,
        requested_model: str = "",
        counted_locally: bool = False,
        dialect: str = "",
        started: float | None = None,
    ):
        """`model` is the canonical id (the price's); `requested_model` what the client sent;
        `counted_locally`: the backend counts the prompt exactly before any model work;
        `dialect` the API it spoke and `started` its perf_counter() start, for the requests
        list (time to first token and total)."""
        self.principal = principal
        self.model = model
        self.requested_model = requested_model or model
        self.price = price
        self.request_id = request_id
        self.prompt_bound = prompt_bound(request, image_tokens=image_tokens)
        self.completion_bound = completion_bound(request)
        self.prompt_floor = min(prompt_floor(request), self.prompt_bound)
        self.prompt_tokens = self.prompt_bound  # until a local count replaces it
        self.counted_locally = counted_locally
        self.reservation: Reservation | None = None
        self.holds: list[TokenHold] = []  # the account's TPM hold, then the key's own cap's
        self.dialect = dialect
        self.started = time.perf_counter() if started is None else started
        self.first_token_seconds: float | None = None
        # The request log (settings.REQUEST_LOGS): the whole text, or the console's excerpts.
        self.logging = bool(settings.REQUEST_LOGS["ENABLED"])
        self.text_limit = (
            int(settings.REQUEST_LOGS["MAX_CHARS"]) if self.logging else int(settings.GHOSTGPT["CONSOLE_REQUEST_TEXT"])
        )
        # A little more is captured than kept: what the cut falls inside (an address, a card
        # number) is still recognized and redacted whole.
        self._capture = self.text_limit + REDACTION_MARGIN if self.text_limit else 0
        self.prompt_text = _last_user_text(request)[: self._capture] if self._capture else ""
        self.request_body = ""
        self._answer: list[str] = []
        self._answer_length = 0
        self._settled = False
        # Answered from the response cache (chat.api.cache): the model's own price, for what
        # the hit saved; a hit holds no TPM (no model works for it).
        self.full_price: Price | None = None
        # What settling billed, and the request's trace span (chat.tracing), if traced.
        self.billed: Usage | None = None
        self.billed_cost = Decimal(0)
        self.trace: Any = None

    def cache_hit(self, factor: Decimal) -> None:
        """The answer is replayed from the response cache: billed `factor` of the model's price."""
        self.full_price, self.price = self.price, self.price.scaled(factor)

    def answered_by(self, *, model: str, requested_model: str, price: Price) -> None:
        """The request was answered by another model than the one reserved for (a client's
        fallback list): it is billed — within the reservation, the largest worst case of
        the list — at that model's price, under its canonical id."""
        self.model, self.requested_model, self.price = model, requested_model, price

    def log_request(self, body: bytes) -> None:
        """Keep the request's body, when the operator keeps request logs."""
        if self.logging:
            self.request_body = body[: self._capture * 4].decode("utf-8", "replace")[: self._capture]

    def seen(self, event: TextDelta | ToolCallDelta) -> None:
        """Keep the first answer (its start, for excerpts), when the operator keeps request
        text; with request logs, its function calls too."""
        if event.index != 0 or self._answer_length >= self._capture:
            return
        if isinstance(event, TextDelta):
            piece = event.text
        elif self.logging:
            piece = (f"\n[call {event.name}] " if event.name else "") + event.arguments
        else:
            return
        piece = piece[: self._capture - self._answer_length]
        self._answer.append(piece)
        self._answer_length += len(piece)

    async def _texts(self) -> tuple[str, str, str]:
        """(prompt, answer, request body) as they may be written: redacted, off the event
        loop; nothing at all if redaction fails."""
        texts = (self.prompt_text, "".join(self._answer), self.request_body)
        if not any(texts):
            return texts
        try:
            prompt, answer, body = await asyncio.to_thread(lambda: [redact(text)[: self.text_limit] for text in texts])
            return prompt, answer, body
        except Exception:
            logger.exception("redacting the text of request %s failed: none is kept", self.request_id)
            return "", "", ""

    def first_token(self) -> None:
        """The first generated token reached the client's response now."""
        if self.first_token_seconds is None:
            self.first_token_seconds = time.perf_counter() - self.started

    @property
    def worst_case_tokens(self) -> int:
        return self.prompt_bound + self.completion_bound

    async def admit(self) -> None:
        """Hold the worst case against TPM and the balance; raises 429 or 402. Call it
        before the backend is contacted."""
        if self.principal.in_debt:
            self._settled = True
            raise in_debt_error()
        for limits in self.principal.all_limits:
            if limits.tpm is not None and self.full_price is None:  # no TPM: its tokens are added at the end
                await self._hold_tokens(limits)
        if self.price.is_free or self.counted_locally:
            return  # a local count reserves the exact cost at `accepted`, before any model work
        await self._reserve(self.prompt_bound)

    async def _hold_tokens(self, limits: Limits) -> None:
        hold, used = await limiter().hold_tokens(limits, self.worst_case_tokens)
        if hold is not None:
            self.holds.append(hold)
            return
        await self._release_holds()
        whose = "this key" if limits is self.principal.key_limits else "this account (all its keys)"
        window = settings.GHOSTGPT["RATE_WINDOW_SECONDS"]
        raise rate_limited(
            f"Rate limit reached for tokens: this request may use up to {self.worst_case_tokens} tokens "
            f"(its prompt + max_tokens), and {whose} has used {used} of its {limits.tpm} per {window}s. "
            "Lower max_tokens or retry later.",
            kind="tokens",
            retry_after=window_reset_seconds(),
        )

    async def _release_holds(self) -> None:
        for hold in self.holds:
            await limiter().correct_tokens(hold, 0)
        self.holds = []

    async def _reserve(self, prompt_tokens: int) -> None:
        amount = self.price.worst_cost(prompt_tokens, self.completion_bound)
        try:
            held = {
                "model": self.model,
                "key_id": self.principal.key_id,
                "prompt_tokens": prompt_tokens,
                # What an orphaned reservation's prompt is charged (chat.billing.reconcile):
                # its counted size at the plain input rate.
                "prompt_cost": str(self.price.prompt_cost(Usage(prompt_tokens, 0))),
            }
            self.reservation = await db.write(
                wallet_reserve,
                account_id=self.principal.account_id,
                amount=amount,
                request_id=self.request_id,
                detail=held,
                budgets=self.principal.budgets,
                time_zone=self.principal.time_zone,
            )
        except InsufficientBalance:
            await self._release_holds()
            self._settled = True
            if self.principal.budgets:
                over = await sync_to_async(exceeded)(
                    self.principal.budgets, amount, timezone.now(), self.principal.time_zone
                )
                if over is not None:
                    raise budget_exceeded(over, amount) from None
            currency = settings.GHOSTGPT["CURRENCY"]
            raise ApiError(
                402,
                f"Your balance is too low for this request: it may cost up to {_money(amount)} {currency} "
                f"(up to {prompt_tokens} prompt tokens + max_tokens {self.completion_bound} at the price of "
                f"'{self.model}'). Top up, or lower max_tokens.",
                error_type="insufficient_balance_error",
                code="insufficient_balance",
            ) from None

    async def accepted(self, event: Accepted) -> None:
        """The backend admitted the request. A backend that counts locally reported the exact
        prompt: TPM holds and the balance reserves that exact worst case from now on (402
        here costs nothing but the tokenizer). Other backends' counts are estimates: the
        upper bound taken at admission stands."""
        if not self.counted_locally:
            return
        self.prompt_tokens = _clamp(event.prompt_tokens, self.prompt_bound)
        exact_hold = self.prompt_tokens + self.completion_bound
        for hold in self.holds:
            await limiter().correct_tokens(hold, exact_hold)
        self.holds = [replace(hold, tokens=exact_hold) for hold in self.holds]
        if not self.price.is_free:
            await self._reserve(self.prompt_tokens)

    def cost_fields(self, usage: Usage) -> dict[str, Any]:
        """GPTunnel-style cost fields for a `usage` object."""
        usage = self.billable(usage, usage.completion_tokens)
        prompt = self.price.prompt_cost(usage)
        completion = self.price.completion_cost(usage)
        return {
            "prompt_cost": _money(prompt),
            "completion_cost": _money(completion),
            "total_cost": _money(prompt + completion),
        }

    def billable(self, reported: Usage | None, delivered_tokens: int) -> Usage:
        """What is billed: the model's report clamped to what the request could produce — from
        above by the bounds, from below by the floors (the prompt as counted here, or its text
        at the floor rate; the delivered text likewise), marked `estimated` when a floor was
        used — or, when it reported none (or only an estimate), the prompt as counted or
        bounded and the bound of what was delivered."""
        if reported is not None and not reported.estimated:
            prompt = _clamp(reported.prompt_tokens, self.prompt_bound)
            completion = _clamp(reported.completion_tokens, self.completion_bound)
            # The embedded model's counts are exact (its tokens and its tokenizer); any
            # other source delivered `delivered_tokens` bytes at most.
            prompt_least = self.prompt_tokens if self.counted_locally else self.prompt_floor
            completion_least = min(
                delivered_tokens if self.counted_locally else text_floor(delivered_tokens), self.completion_bound
            )
            if prompt < prompt_least or completion < completion_least:
                logger.warning(
                    "request %s: usage %s/%s below the floor %s/%s: billed at the floor",
                    self.request_id,
                    reported.prompt_tokens,
                    reported.completion_tokens,
                    prompt_least,
                    completion_least,
                )
                return reported.bounded(max(prompt, prompt_least), max(completion, completion_least), estimated=True)
            if (prompt, completion) != (reported.prompt_tokens, reported.completion_tokens):
                logger.warning(
                    "request %s: usage %s/%s clamped to %s/%s",
                    self.request_id,
                    reported.prompt_tokens,
                    reported.completion_tokens,
                    prompt,
                    completion,
                )
            return reported.bounded(prompt, completion)
        counted = reported.completion_tokens if reported is not None else 0
        completion = _clamp(max(delivered_tokens, _clamp(counted, self.completion_bound)), self.completion_bound)
        return Usage(self.prompt_tokens, completion, estimated=True)

    async def settle(self, *, reported: Usage | None, delivered_tokens: int, failed: bool = False) -> None:
        """Bill the real usage, or what was delivered when the backend never reported it.
        A request that failed before delivering anything and reported nothing costs nothing.
        Runs once; never raises (the client's response is already on its way)."""
        if self._settled:
            return
        self._settled = True
        if failed and reported is None and not delivered_tokens:
            usage = Usage(0, 0, estimated=True)
        else:
            usage = self.billable(reported, delivered_tokens)
        prompt_text, answer_text, request_body = await self._texts()
        record = UsageRecord(
            account_id=self.principal.account_id,
            key_id=self.principal.key_id,
            model=self.model,
            requested_model=self.requested_model,
            request_id=self.request_id,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cached_tokens=usage.cached_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            prompt_cost=self.price.prompt_cost(usage),
            completion_cost=self.price.completion_cost(usage),
            estimated=usage.estimated,
            dialect=self.dialect,
            failed=failed,
            ttft_ms=_millis(self.first_token_seconds),
            duration_ms=_millis(time.perf_counter() - self.started),
            prompt_text=prompt_text,
            answer_text=answer_text,
            request_body=request_body,
        )
        cost = record.prompt_cost + record.completion_cost
        self.billed, self.billed_cost = usage, cost
        if self.full_price is not None:
            record.cache_hit = True
            record.cache_saved = max(self.full_price.cost(usage) - cost, Decimal(0))
        try:
            with tracing.step(self.trace, "wallet settle", **{"ghostgpt.cost": float(cost)}):
                if self.reservation is not None:
                    await self._settle_reservation(record, cost, failed=failed)
                elif usage.total_tokens:
                    await db.write(usage_record, usage=record)
            TOKENS.labels(self.model, "in").inc(usage.prompt_tokens)
            TOKENS.labels(self.model, "out").inc(usage.completion_tokens)
            COST.labels(self.model).inc(float(cost))
        except Exception:
            logger.exception("settling request %s failed", self.request_id)
        try:  # whatever happened to the money, the TPM hold is corrected
            for hold in self.holds:
                await limiter().correct_tokens(hold, usage.total_tokens)
            if self.full_price is None and not any(hold.limits is self.principal.limits for hold in self.holds):
                await limiter().add_tokens(self.principal.limits, usage.total_tokens)
        except Exception:
            logger.exception("correcting the token hold of request %s failed", self.request_id)

    async def _settle_reservation(self, record: UsageRecord, cost: Decimal, *, failed: bool) -> None:
        """The settlement with its usage row; if that fails, the money alone (the row is what
        can fail: a constraint, a value out of range), so no failure leaves the worst-case
        reservation standing. What still fails is closed by the reconciler
        (chat.billing.reconcile) once the reservation is older than any request can run."""
        assert self.reservation is not None
        try:
            await db.write(wallet_settle, reservation=self.reservation, cost=cost, usage=record, failed=failed)
        except Exception:
            logger.exception("settling request %s with its usage row failed; settling the money alone", self.request_id)
            await db.write(wallet_settle, reservation=self.reservation, cost=cost, usage=None, failed=failed)


class Unmetered(Meter):
    """A model server's meter (GHOSTGPT_ROLE=model): the web tier in front already limited,
    reserved and billed the request, so nothing is held or billed here — the tokens are only
    counted for /metrics."""

    async def admit(self) -> None:
        return None

    async def accepted(self, event: Accepted) -> None:
        return None

    async def settle(self, *, reported: Usage | None, delivered_tokens: int, failed: bool = False) -> None:
        if self._settled:
            return
        self._settled = True
        usage = self.billable(reported, delivered_tokens)
        TOKENS.labels(self.model, "in").inc(usage.prompt_tokens)
        TOKENS.labels(self.model, "out").inc(usage.completion_tokens)
