"""Model prices and the cost of a request. Prices are cached for a few seconds per process."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeVar

from django.conf import settings

from chat import db
from chat.backends.base import Usage
from chat.models import ModelPrice

T = TypeVar("T")
MILLION = Decimal(1_000_000)
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Price:
    """Per million tokens (images and audio per unit), in the wallet's currency. The parts
    follow what each provider bills apart, on `Usage`'s convention (chat.backends.base):
    the prompt = uncached input + cache reads + cache writes, the output = answer +
    reasoning. A part without a price of its own (None) costs its whole's rate."""

    prompt_per_million: Decimal = ZERO
    completion_per_million: Decimal = ZERO
    cached_prompt_per_million: Decimal | None = None
    cache_write_per_million: Decimal | None = None
    reasoning_per_million: Decimal | None = None
    per_image: Decimal = ZERO
    per_audio_second: Decimal = ZERO

    @property
    def cached_rate(self) -> Decimal:
        return self.prompt_per_million if self.cached_prompt_per_million is None else self.cached_prompt_per_million

    @property
    def cache_write_rate(self) -> Decimal:
        return self.prompt_per_million if self.cache_write_per_million is None else self.cache_write_per_million

    @property
    def reasoning_rate(self) -> Decimal:
        return self.completion_per_million if self.reasoning_per_million is None else self.reasoning_per_million

    @property
    def is_free(self) -> bool:
        return not any((self.worst_prompt_rate, self.worst_completion_rate, self.per_image, self.per_audio_second))

    @property
    def worst_prompt_rate(self) -> Decimal:
        """The most a prompt token can cost (every token a cache write, at a premium)."""
        return max(self.prompt_per_million, self.cached_rate, self.cache_write_rate)

    @property
    def worst_completion_rate(self) -> Decimal:
        return max(self.completion_per_million, self.reasoning_rate)

    def prompt_cost(self, usage: Usage) -> Decimal:
        write, cached, _ = usage.parts_within(usage.prompt_tokens, usage.completion_tokens)
        return (
            self.prompt_per_million * (usage.prompt_tokens - write - cached)
            + self.cached_rate * cached
            + self.cache_write_rate * write
        ) / MILLION

    def completion_cost(self, usage: Usage) -> Decimal:
        _, _, reasoning = usage.parts_within(usage.prompt_tokens, usage.completion_tokens)
        return (
            self.completion_per_million * (usage.completion_tokens - reasoning) + self.reasoning_rate * reasoning
        ) / MILLION

    def cost(self, usage: Usage) -> Decimal:
        return self.prompt_cost(usage) + self.completion_cost(usage)

    def scaled(self, factor: Decimal) -> Price:
        """Every rate times `factor` (a response-cache hit's price: chat.api.cache)."""

        def times(rate: Decimal | None) -> Decimal | None:
            return None if rate is None else rate * factor

        return Price(
            prompt_per_million=self.prompt_per_million * factor,
            completion_per_million=self.completion_per_million * factor,
            cached_prompt_per_million=times(self.cached_prompt_per_million),
            cache_write_per_million=times(self.cache_write_per_million),
            reasoning_per_million=times(self.reasoning_per_million),
            per_image=self.per_image * factor,
            per_audio_second=self.per_audio_second * factor,
        )

    def worst_cost(self, prompt_tokens: int, completion_tokens: int) -> Decimal:
        """What a request may cost at most: what it reserves before the upstream is called."""
        return (self.worst_prompt_rate * prompt_tokens + self.worst_completion_rate * completion_tokens) / MILLION


def price_parts(price: Price, number: Callable[[Decimal], T]) -> dict[str, T]:
    """Every rate as `number` makes it — each part at the rate it is billed (a part without
    a price of its own shows its whole's) — for /v1/models, the rates page and the console."""
    return {
        "prompt_per_million": number(price.prompt_per_million),
        "cached_prompt_per_million": number(price.cached_rate),
        "cache_write_per_million": number(price.cache_write_rate),
        "completion_per_million": number(price.completion_per_million),
        "reasoning_per_million": number(price.reasoning_rate),
        "per_image": number(price.per_image),
        "per_audio_second": number(price.per_audio_second),
    }


FREE = Price()
_cache: tuple[float, dict[str, Price]] = (0.0, {})


def price_of(row: ModelPrice) -> Price:
    return Price(
        prompt_per_million=row.prompt_per_million,
        completion_per_million=row.completion_per_million,
        cached_prompt_per_million=row.cached_prompt_per_million,
        cache_write_per_million=row.cache_write_per_million,
        reasoning_per_million=row.reasoning_per_million,
        per_image=row.per_image,
        per_audio_second=row.per_audio_second,
    )


def _load() -> dict[str, Price]:
    return {row.model: price_of(row) for row in ModelPrice.objects.all()}


def _stale() -> bool:
    return time.monotonic() - _cache[0] >= settings.GHOSTGPT["PRICE_CACHE_SECONDS"]


def price_table() -> dict[str, Price]:
    global _cache
    if _stale():
        _cache = (time.monotonic(), _load())
    return _cache[1]


async def price_for(model: str) -> Price:
    if settings.ROLE == "model":  # the web tier prices and bills; a model tier has no accounts
        return FREE
    table = await db.run(price_table) if _stale() else _cache[1]
    return table.get(model, FREE)


def forget_prices() -> None:
    global _cache
    _cache = (0.0, {})
