"""The response cache: an exact-match cache of deterministic requests' answers.

A request is cacheable when its answer is determined by what it asks — `temperature` 0 or a
`seed` — and the cache is asked for: by the key (`response_cache`), by the routed model
(`response_cache: true`) or by the request (`x-ghostgpt-cache: use`; `skip` refuses it
whatever the key and model say). Function tools are no obstacle: the answer is the same call.

What is kept is the backend's events (text, function-call pieces, finishes, usage), not one
dialect's bytes, so a hit replays through the request's own encoder: SSE or JSON, OpenAI,
Anthropic, Gemini or Responses. The entry's key is an HMAC (the deployment's secret key) of the scope, the canonical
model id and the normalized request (chat.backends.base.GenerationRequest less what does not
change the answer: `stream`, `user`, the prompt-cache hints, where each message came from);
the scope is the key (default) or the account (GHOSTGPT_RESPONSE_CACHE_SCOPE=account) — never
wider than one account. Entries live in Redis when REDIS_URL is set, else in the database
(chat.models.CachedResponse), for GHOSTGPT_RESPONSE_CACHE_TTL_SECONDS, at most
GHOSTGPT_RESPONSE_CACHE_MAX_ENTRIES per scope (the oldest go) and
GHOSTGPT_RESPONSE_CACHE_MAX_ENTRY_BYTES each. Only a complete answer is kept: every choice
finished, usage reported, no error, not cut short by a revoked key or a gone client.

A hit is billed GHOSTGPT_RESPONSE_CACHE_PRICE × the model's price for the original token
counts (its `usage` repeats them), counts against the key's RPM and budgets, holds no TPM
(no model works for it), and its usage row says `cache_hit` with what it saved.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from typing import Any, Protocol

import orjson
from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone

from chat import db
from chat.backends.base import Accepted, Event, Finish, GenerationRequest, ModelInfo, TextDelta, ToolCallDelta, Usage
from chat.jsonbytes import dumps, loads
from chat.metrics import RESPONSE_CACHE
from chat.models import CachedResponse

from .auth import Principal
from .errors import ApiError

logger = logging.getLogger(__name__)
HEADER = "X-GhostGPT-Cache"
FORMAT = 1  # the entry's layout; an entry of another is a miss
STORE_TIMEOUT_SECONDS = 2.0

Stream = Callable[[], AsyncIterator[Event]]


@dataclass(frozen=True, slots=True)
class Decision:
    """What the cache does for one request: `state` is what the response's X-GhostGPT-Cache
    says — "hit" (answered from `events`), "miss" (answered by the model and kept when
    complete) or "uncacheable" (asked for, but the request is not deterministic)."""

    state: str
    scope: str = ""
    key: str = ""
    events: tuple[Event, ...] = ()


def asked(request: HttpRequest, principal: Principal, info: ModelInfo) -> bool:
    """Whether the request asks for the cache (400 for a header value that means nothing)."""
    value = request.headers.get(HEADER, "").strip().lower()
    if value not in ("", "use", "skip"):
        raise ApiError(
            400, f"{HEADER} is 'use' or 'skip', not {value[:40]!r}.", param=HEADER.lower(), code="invalid_header"
        )
    if not settings.RESPONSE_CACHE["ENABLED"]:
        return False
    if value:
        return value == "use"
    return principal.response_cache or info.response_cache


def deterministic(generation: GenerationRequest) -> bool:
    return generation.sampling.temperature == 0 or generation.sampling.seed is not None


def scope_of(principal: Principal) -> str:
    account = f"a{principal.account_id}"
    return account if settings.RESPONSE_CACHE["SCOPE"] == "account" else f"{account}:k{principal.key_id}"


def _keyed(data: bytes) -> str:
    """An HMAC under the deployment's secret key: two deployments sharing one Redis (whose
    account ids repeat) never read each other's entries, and no key can be guessed."""
    return hmac.new(settings.SECRET_KEY.encode(), data, hashlib.sha256).hexdigest()


def entry_key(scope: str, model: str, generation: GenerationRequest) -> str:
    """The entry's key: what the answer depends on, whoever may read it."""
    normal = replace(
        generation,
        model=model,
        stream=True,
        user=None,
        prompt_cache_key=None,
        trace=None,
        messages=tuple(replace(m, origin="", cache_ttl=None) for m in generation.messages),
        tools=tuple(replace(t, cache_ttl=None) for t in generation.tools),
    )
    try:  # orjson writes the dataclasses itself, several times faster than asdict()
        data = orjson.dumps([FORMAT, scope, normal], option=orjson.OPT_SORT_KEYS)
    except TypeError:  # what orjson cannot write (an integer past 64 bits in a schema)
        data = dumps([FORMAT, scope, asdict(normal)])
    return _keyed(data)


async def decide(
    request: HttpRequest, principal: Principal, generation: GenerationRequest, info: ModelInfo
) -> Decision | None:
    """None when the request does not ask for the cache; else a hit, a miss or uncacheable."""
    if not asked(request, principal, info):
        return None
    if not deterministic(generation):
        return Decision("uncacheable")
    scope = scope_of(principal)
    key = entry_key(scope, info.id, generation)
    events = _local.get(key)
    if events is None:
        try:
            async with asyncio.timeout(STORE_TIMEOUT_SECONDS):
                found = await store().get(key)
            if found is not None:
                body, seconds_left = found
                events = _decode(body)
                if events:
                    _local.put(key, events, len(body), seconds_left)
        except Exception:  # a cache that fails is a miss, never a failed request
            logger.warning("response cache: reading %s failed", key[:12], exc_info=True)
            events = None
    RESPONSE_CACHE.labels(info.id, "hit" if events else "miss").inc()
    if events:
        return Decision("hit", scope, key, events)
    return Decision("miss", scope, key)


def replay(events: tuple[Event, ...]) -> Stream:
    async def stream() -> AsyncIterator[Event]:
        for event in events:
            yield event

    return stream


def recorded(stream: Stream, decision: Decision, choice_count: int) -> Stream:
    """The stream, its events kept and — once it has ended complete — stored before the
    caller sees its end (so a client's next identical request finds it)."""
    limit = int(settings.RESPONSE_CACHE["MAX_ENTRY_BYTES"])

    async def recording() -> AsyncIterator[Event]:
        kept: list[Event] | None = []
        size = 0
        async for event in stream():
            if kept is not None:
                kept.append(event)
                size += _size(event)
                if size > limit:
                    kept = None  # too large to keep; the answer itself goes on
            yield event
        if kept is not None and _complete(kept, choice_count):
            await _store(decision, kept, limit)

    return recording


def _size(event: Event) -> int:
    if isinstance(event, TextDelta):
        return len(event.text.encode()) + 16
    if isinstance(event, ToolCallDelta):
        return len(event.arguments.encode()) + len(event.name or "") + len(event.id or "") + 24
    return 32


def _complete(events: list[Event], choice_count: int) -> bool:
    finished = {event.index for event in events if isinstance(event, Finish)}
    return isinstance(events[-1], Usage) and finished == set(range(choice_count)) if events else False


async def _store(decision: Decision, events: list[Event], limit: int) -> None:
    body = _encode(events)
    if len(body) > limit:
        return
    kept = _decode(body)  # as a hit from the store replays it: without this request's timings
    if kept:
        _local.put(decision.key, kept, len(body), float(settings.RESPONSE_CACHE["TTL_SECONDS"]))
    try:
        async with asyncio.timeout(STORE_TIMEOUT_SECONDS):
            await store().put(decision.scope, decision.key, body)
    except Exception:  # the answer stands; the next request is a miss again
        logger.warning("response cache: storing %s failed", decision.key[:12], exc_info=True)


# --- the entry's format: the events as JSON arrays ------------------------------------


def _encode(events: list[Event]) -> bytes:
    rows: list[list[Any]] = []
    for event in events:
        if isinstance(event, Accepted):
            rows.append(["a", event.prompt_tokens, event.system_fingerprint])
        elif isinstance(event, TextDelta):
            rows.append(["t", event.index, event.text, event.tokens])
        elif isinstance(event, ToolCallDelta):
            rows.append(["c", event.index, event.call, event.arguments, event.id, event.name, event.tokens])
        elif isinstance(event, Finish):
            rows.append(["f", event.index, event.reason])
        else:  # the usage it was billed on; timings are this request's own
            rows.append(
                [
                    "u",
                    event.prompt_tokens,
                    event.completion_tokens,
                    event.cached_tokens,
                    event.cache_write_tokens,
                    event.reasoning_tokens,
                    event.estimated,
                ]
            )
    return dumps({"v": FORMAT, "events": rows})


def _decode(body: bytes) -> tuple[Event, ...] | None:
    """The events of an entry; None for one this version cannot read (a miss)."""
    data = loads(body)
    if not isinstance(data, dict) or data.get("v") != FORMAT:
        return None
    events: list[Event] = []
    for row in data["events"]:
        kind, *values = row
        if kind == "a":
            events.append(Accepted(int(values[0]), values[1]))
        elif kind == "t":
            events.append(TextDelta(int(values[0]), str(values[1]), int(values[2])))
        elif kind == "c":
            index, call, arguments, call_id, name, tokens = values
            events.append(ToolCallDelta(int(index), int(call), str(arguments), call_id, name, int(tokens)))
        elif kind == "f":
            events.append(Finish(int(values[0]), values[1]))
        elif kind == "u":
            prompt, completion, cached, write, reasoning, estimated = values
            events.append(
                Usage(
                    int(prompt),
                    int(completion),
                    estimated=bool(estimated),
                    cached_tokens=int(cached),
                    cache_write_tokens=int(write),
                    reasoning_tokens=int(reasoning),
                )
            )
        else:
            return None
    return tuple(events)


# --- where entries live ----------------------------------------------------------------


class Local:
    """The entries this process read or wrote lately, decoded, until they expire: repeated
    hits skip the shared store's round trip. Bounded by the entries' size
    (GHOSTGPT_RESPONSE_CACHE_LOCAL_BYTES; the least recently used go first)."""

    def __init__(self) -> None:
        self.entries: OrderedDict[str, tuple[float, int, tuple[Event, ...]]] = OrderedDict()
        self.size = 0

    def get(self, key: str) -> tuple[Event, ...] | None:
        entry = self.entries.get(key)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            self._drop(key)
            return None
        self.entries.move_to_end(key)
        return entry[2]

    def put(self, key: str, events: tuple[Event, ...], size: int, seconds_left: float) -> None:
        limit = int(settings.RESPONSE_CACHE["LOCAL_BYTES"])
        if size > limit:
            return
        self._drop(key)
        self.entries[key] = (time.monotonic() + seconds_left, size, events)
        self.size += size
        while self.size > limit:
            self._drop(next(iter(self.entries)))

    def _drop(self, key: str) -> None:
        entry = self.entries.pop(key, None)
        if entry is not None:
            self.size -= entry[1]


_local = Local()


class Store(Protocol):
    async def get(self, key: str) -> tuple[bytes, float] | None:
        """The entry's body and the seconds it has left."""
        ...

    async def put(self, scope: str, key: str, body: bytes) -> None: ...


class RedisStore:
    """One string per entry (expiring by itself) and, per scope, a sorted set of its entries
    by time, trimmed to MAX_ENTRIES (the oldest go)."""

    PREFIX = "ghostgpt:rc:"

    def __init__(self, client: Any) -> None:
        self.client = client

    async def get(self, key: str) -> tuple[bytes, float] | None:
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.get(self.PREFIX + key)
            pipe.pttl(self.PREFIX + key)
            value, left = await pipe.execute()
        return None if value is None or left <= 0 else (bytes(value), left / 1000)

    async def put(self, scope: str, key: str, body: bytes) -> None:
        ttl = int(settings.RESPONSE_CACHE["TTL_SECONDS"])
        cap = int(settings.RESPONSE_CACHE["MAX_ENTRIES"])
        index = f"{self.PREFIX}index:{_keyed(scope.encode())[:32]}"
        now = timezone.now().timestamp()
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.set(self.PREFIX + key, body, ex=ttl)
            pipe.zadd(index, {key: now})
            pipe.zremrangebyscore(index, "-inf", now - ttl)  # expired by themselves already
            pipe.expire(index, ttl)
            pipe.zcard(index)
            *_, count = await pipe.execute()
        if count > cap:
            oldest = await self.client.zpopmin(index, count - cap)
            if oldest:
                await self.client.delete(*(self.PREFIX + name.decode() for name, _ in oldest))


class DatabaseStore:
    async def get(self, key: str) -> tuple[bytes, float] | None:
        return await db.run(_database_get, key)

    async def put(self, scope: str, key: str, body: bytes) -> None:
        await db.run(_database_put, scope=scope, key=key, body=body)


def _database_get(key: str) -> tuple[bytes, float] | None:
    now = timezone.now()
    row = CachedResponse.objects.filter(key=key, expires_at__gt=now).values_list("body", "expires_at").first()
    return None if row is None else (bytes(row[0]), (row[1] - now).total_seconds())


def _database_put(*, scope: str, key: str, body: bytes) -> None:
    now = timezone.now()
    expires = now + timedelta(seconds=int(settings.RESPONSE_CACHE["TTL_SECONDS"]))
    CachedResponse.objects.update_or_create(
        key=key, defaults={"scope": scope, "body": body, "created_at": now, "expires_at": expires}
    )
    cap = int(settings.RESPONSE_CACHE["MAX_ENTRIES"])
    stale = CachedResponse.objects.filter(scope=scope).order_by("-created_at", "-id").values_list("pk", flat=True)
    extra = list(stale[cap : cap + 100])
    if extra:
        CachedResponse.objects.filter(pk__in=extra).delete()


_instance: Store | None = None


def store() -> Store:
    global _instance
    if _instance is None:
        if settings.REDIS_URL:
            from chat.billing.ratelimit import limiter

            _instance = RedisStore(limiter().client)  # type: ignore[union-attr]
        else:
            _instance = DatabaseStore()
    return _instance
