"""Fixed-window request and token limits per account (a tier's limits are the account's,
shared by all its keys) and per key for a key's own tighter cap: in Redis when REDIS_URL is
set (one atomic script, shared by every server process), in process memory otherwise.

A window is `RATE_WINDOW_SECONDS` long (a minute). A request is counted when it starts.
Its tokens are held at their worst case (the prompt's upper bound + max_tokens) before any
model is called — a request that would take the window past the key's TPM gets 429 — and
corrected to the real count when it ends. Counting is atomic, so N allowed means exactly N.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from django.conf import settings

HIT_SCRIPT = """
local requests
if ARGV[2] == '1' then
  requests = redis.call('INCR', KEYS[1])
  if requests == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
else
  requests = tonumber(redis.call('GET', KEYS[1]) or '0')
end
return {requests, tonumber(redis.call('GET', KEYS[2]) or '0')}
"""
ADD_TOKENS_SCRIPT = """
local tokens = redis.call('INCRBY', KEYS[1], ARGV[2])
if tokens == tonumber(ARGV[2]) then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return tokens
"""
# KEYS[1]: the window's token counter. ARGV: ttl, tokens to hold, the TPM (-1: none).
HOLD_TOKENS_SCRIPT = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local limit = tonumber(ARGV[3])
if limit >= 0 and used + tonumber(ARGV[2]) > limit then return {0, used} end
used = redis.call('INCRBY', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[1])
return {1, used}
"""
# Correct a hold by a signed delta, in its own window only, never below zero.
CORRECT_TOKENS_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local used = redis.call('INCRBY', KEYS[1], ARGV[1])
if used < 0 then redis.call('SET', KEYS[1], 0, 'KEEPTTL') used = 0 end
return used
"""


@dataclass(frozen=True, slots=True)
class Limits:
    subject: str
    rpm: int | None
    tpm: int | None


@dataclass(frozen=True, slots=True)
class TokenHold:
    """Tokens held in one window for a request that has not ended yet."""

    limits: Limits
    window: int
    tokens: int


@dataclass(frozen=True, slots=True)
class RateState:
    limits: Limits
    requests: int
    tokens: int
    reset_seconds: int

    @property
    def over_requests(self) -> bool:
        return self.limits.rpm is not None and self.requests > self.limits.rpm

    @property
    def over_tokens(self) -> bool:
        return self.limits.tpm is not None and self.tokens >= self.limits.tpm

    def headers(self) -> dict[str, str]:
        reset = f"{self.reset_seconds}s"
        values: dict[str, str] = {}
        for kind, limit, used in (
            ("requests", self.limits.rpm, self.requests),
            ("tokens", self.limits.tpm, self.tokens),
        ):
            if limit is not None:
                values[f"x-ratelimit-limit-{kind}"] = str(limit)
                values[f"x-ratelimit-remaining-{kind}"] = str(max(limit - used, 0))
                values[f"x-ratelimit-reset-{kind}"] = reset
        return values


def tightest_headers(state: RateState, own: RateState | None) -> dict[str, str]:
    """The x-ratelimit-* headers of the account's state and the key's own cap: for each kind,
    whichever leaves less."""
    headers = state.headers()
    if own is None:
        return headers
    for kind in ("requests", "tokens"):
        narrow = {name: value for name, value in own.headers().items() if name.endswith(kind)}
        remaining = f"x-ratelimit-remaining-{kind}"
        if narrow and (remaining not in headers or int(narrow[remaining]) < int(headers[remaining])):
            headers.update(narrow)
    return headers


def _window() -> tuple[int, int]:
    size = settings.GHOSTGPT["RATE_WINDOW_SECONDS"]
    now = time.time()
    return int(now // size), max(int(size - now % size), 1)


def window_reset_seconds() -> int:
    """Seconds until the current window turns."""
    return _window()[1]


class MemoryLimiter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, int], list[int]] = {}

    async def hit(self, limits: Limits, *, count: bool = True) -> RateState:
        window, reset = _window()
        with self._lock:
            self._forget_before(window)
            counts = self._counts.setdefault((limits.subject, window), [0, 0])
            counts[0] += int(count)
            return RateState(limits, counts[0], counts[1], reset)

    async def add_tokens(self, limits: Limits, tokens: int) -> None:
        window, _ = _window()
        with self._lock:
            self._counts.setdefault((limits.subject, window), [0, 0])[1] += max(tokens, 0)

    async def hold_tokens(self, limits: Limits, tokens: int) -> tuple[TokenHold | None, int]:
        """Hold `tokens` in this window unless that would pass the TPM: (hold or None, used)."""
        window, _ = _window()
        with self._lock:
            self._forget_before(window)
            counts = self._counts.setdefault((limits.subject, window), [0, 0])
            if limits.tpm is not None and counts[1] + tokens > limits.tpm:
                return None, counts[1]
            counts[1] += tokens
            return TokenHold(limits, window, tokens), counts[1]

    async def correct_tokens(self, hold: TokenHold, actual: int) -> None:
        with self._lock:
            counts = self._counts.get((hold.limits.subject, hold.window))
            if counts is not None:
                counts[1] = max(counts[1] + actual - hold.tokens, 0)

    def _forget_before(self, window: int) -> None:
        for key in [key for key in self._counts if key[1] < window]:
            del self._counts[key]


REDIS_POOL_TIMEOUT = 10.0


class RedisLimiter:
    def __init__(self, url: str) -> None:
        import redis.asyncio as redis

        # A burst past the pool's size waits for a connection (REDIS_POOL_TIMEOUT) instead of
        # failing: redis-py's plain pool raises "Too many connections" at 100.
        pool = redis.BlockingConnectionPool.from_url(
            url, max_connections=settings.REDIS_MAX_CONNECTIONS, timeout=REDIS_POOL_TIMEOUT
        )
        self.client = redis.Redis(connection_pool=pool)  # also for chat.keycache's stamp
        self._hit = self.client.register_script(HIT_SCRIPT)
        self._add = self.client.register_script(ADD_TOKENS_SCRIPT)
        self._hold = self.client.register_script(HOLD_TOKENS_SCRIPT)
        self._correct = self.client.register_script(CORRECT_TOKENS_SCRIPT)

    @staticmethod
    def _keys(subject: str, window: int) -> list[str]:
        return [f"ghostgpt:rl:{subject}:{window}:requests", f"ghostgpt:rl:{subject}:{window}:tokens"]

    async def hit(self, limits: Limits, *, count: bool = True) -> RateState:
        window, reset = _window()
        requests, tokens = await self._hit(keys=self._keys(limits.subject, window), args=[reset + 1, int(count)])
        return RateState(limits, int(requests), int(tokens), reset)

    async def add_tokens(self, limits: Limits, tokens: int) -> None:
        window, reset = _window()
        await self._add(keys=self._keys(limits.subject, window)[1:], args=[reset + 1, max(tokens, 0)])

    async def hold_tokens(self, limits: Limits, tokens: int) -> tuple[TokenHold | None, int]:
        window, reset = _window()
        tpm = -1 if limits.tpm is None else limits.tpm
        held, used = await self._hold(keys=self._keys(limits.subject, window)[1:], args=[reset + 1, tokens, tpm])
        return (TokenHold(limits, window, tokens) if held else None), int(used)

    async def correct_tokens(self, hold: TokenHold, actual: int) -> None:
        await self._correct(keys=self._keys(hold.limits.subject, hold.window)[1:], args=[actual - hold.tokens])


_limiter: MemoryLimiter | RedisLimiter | None = None


def limiter() -> MemoryLimiter | RedisLimiter:
    global _limiter
    if _limiter is None:
        _limiter = RedisLimiter(settings.REDIS_URL) if settings.REDIS_URL else MemoryLimiter()
    return _limiter
