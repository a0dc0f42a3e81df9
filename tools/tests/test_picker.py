"""The web-research source picker is a pure function: text in, plan out."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tools.research.picker import pick


@pytest.mark.parametrize(
    "query, base, quote, amount",
    [
        ("курс доллара к рублю", "USD", "RUB", 1),
        ("USD/TRY", "USD", "TRY", 1),
        ("сколько стоит евро", "EUR", "RUB", 1),
        ("100 usd in eur", "USD", "EUR", 100),
        ("сколько стоят 250 долларов в рублях", "USD", "RUB", 250),
        ("курс юаня", "CNY", "RUB", 1),
        ("convert 5,5 GBP to JPY", "GBP", "JPY", Decimal("5.5")),
        ("EUR to USD", "EUR", "USD", 1),
        ("€ в ₽", "EUR", "RUB", 1),
        ("курс рубля к тенге", "RUB", "KZT", 1),
        ("exchange rate of the euro", "EUR", "RUB", 1),
    ],
)
def test_currency_queries(query: str, base: str, quote: str, amount: Decimal) -> None:
    plan = pick(query)
    assert (plan.kind, plan.base, plan.quote, plan.amount) == ("currency", base, quote, Decimal(amount))


@pytest.mark.parametrize(
    "query, first_place, nominative, day, language",
    [
        ("погода в Москве", "Москве", "Москва", 0, "ru"),
        ("погода в Санкт-Петербурге завтра", "Санкт-Петербурге", "Санкт-Петербург", 1, "ru"),
        ("прогноз погоды в Казани на послезавтра", "Казани", "Казань", 2, "ru"),
        ("weather in Berlin tomorrow", "Berlin", "Berlin", 1, "en"),
        ("What's the weather today in New York?", "New York", "New York", 0, "en"),
    ],
)
def test_weather_queries(query: str, first_place: str, nominative: str, day: int, language: str) -> None:
    plan = pick(query)
    assert plan.kind == "weather" and plan.day == day and plan.language == language
    assert plan.places[0] == first_place and nominative in plan.places


@pytest.mark.parametrize("query", ["как дела?", "what is the capital of France", "tell me a joke", "погода", "2+2"])
def test_other_queries_have_no_source(query: str) -> None:
    assert pick(query).kind == "none"
