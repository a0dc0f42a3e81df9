"""Model prices and the cost of a request. Prices are cached for a few seconds per process."""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings

from chat import db
from chat.models import ModelPrice

MILLION = Decimal(1_000_000)
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Price:
    prompt_per_million: Decimal = ZERO
    completion_per_million: Decimal = ZERO

    @property
    def is_free(self) -> bool:
        return not self.prompt_per_million and not self.completion_per_million

    def prompt_cost(self, tokens: int) -> Decimal:
        return self.prompt_per_million * tokens / MILLION

    def completion_cost(self, tokens: int) -> Decimal:
        return self.completion_per_million * tokens / MILLION

    def cost(self, prompt_tokens: int, completion_tokens: int) -> Decimal:
        return self.prompt_cost(prompt_tokens) + self.completion_cost(completion_tokens)


FREE = Price()
_cache: tuple[float, dict[str, Price]] = (0.0, {})


def _load() -> dict[str, Price]:
    return {row.model: Price(row.prompt_per_million, row.completion_per_million) for row in ModelPrice.objects.all()}


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
