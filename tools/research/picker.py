"""Which source answers a query: a pure function from text to a Plan (no I/O).

Understands Russian and English: "курс доллара к рублю", "USD/TRY", "сколько стоит евро",
"100 usd in eur", "погода в Москве", "weather in Berlin tomorrow".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Literal

Kind = Literal["currency", "weather", "none"]

# Word stems (lower case) -> ISO code. Stems cover Russian cases: доллар/доллара/долларов.
CURRENCY_WORDS = {
    "доллар": "USD",
    "бакс": "USD",
    "евро": "EUR",
    "рубл": "RUB",
    "юан": "CNY",
    "фунт": "GBP",
    "иен": "JPY",
    "йен": "JPY",
    "лир": "TRY",
    "тенге": "KZT",
    "франк": "CHF",
    "гривн": "UAH",
    "дирхам": "AED",
    "злот": "PLN",
    "dollar": "USD",
    "buck": "USD",
    "euro": "EUR",
    "ruble": "RUB",
    "rouble": "RUB",
    "yuan": "CNY",
    "renminbi": "CNY",
    "pound": "GBP",
    "sterling": "GBP",
    "yen": "JPY",
    "lira": "TRY",
    "tenge": "KZT",
    "franc": "CHF",
    "hryvnia": "UAH",
    "dirham": "AED",
    "zloty": "PLN",
    "rupee": "INR",
}
SYMBOLS = {"$": "USD", "€": "EUR", "₽": "RUB", "£": "GBP", "¥": "JPY", "₺": "TRY", "₸": "KZT"}
ISO_CODES = {
    "USD",
    "EUR",
    "RUB",
    "CNY",
    "GBP",
    "JPY",
    "TRY",
    "KZT",
    "CHF",
    "UAH",
    "AED",
    "PLN",
    "INR",
    "BYN",
    "AMD",
    "GEL",
    "UZS",
    "KGS",
    "AZN",
    "CZK",
    "SEK",
    "NOK",
    "DKK",
    "HUF",
    "RON",
    "BGN",
    "CAD",
    "AUD",
    "NZD",
    "HKD",
    "SGD",
    "KRW",
    "THB",
    "IDR",
    "VND",
    "BRL",
    "MXN",
    "ZAR",
    "ILS",
    "EGP",
    "MNT",
    "TJS",
    "TMT",
    "MDL",
    "RSD",
    "QAR",
    "SAR",
    "IRR",
    "ISK",
    "PHP",
    "MYR",
}
CURRENCY_TRIGGERS = (
    "курс",
    "стоит",
    "стоимость",
    "обмен",
    "конверт",
    "rate",
    "exchange",
    "convert",
    "price of",
    "worth",
)
WEATHER_TRIGGERS = ("погод", "прогноз", "температур", "weather", "forecast", "temperature")
CYRILLIC = re.compile(r"[а-яё]", re.IGNORECASE)
TOKEN = re.compile(r"[A-Za-zА-Яа-яЁё]+|\d+(?:[.,]\d+)?|[$€₽£¥₺₸/]")


@dataclass(frozen=True)
class Plan:
    kind: Kind
    language: Literal["ru", "en"]
    base: str | None = None
    quote: str | None = None
    amount: Decimal = Decimal(1)
    places: tuple[str, ...] = field(default=())  # geocoding candidates, best first
    day: int = 0  # 0 today, 1 tomorrow, 2 the day after


def pick(query: str) -> Plan:
    text = " ".join(query.split())
    language: Literal["ru", "en"] = "ru" if CYRILLIC.search(text) else "en"
    lowered = text.lower()
    if any(trigger in lowered for trigger in WEATHER_TRIGGERS):
        places = _places(text, language)
        if places:
            return Plan("weather", language, places=places, day=_day(lowered))
    codes = _currencies(text)
    if codes and (len(codes) >= 2 or any(t in lowered for t in CURRENCY_TRIGGERS) or _amount(text) is not None):
        base = codes[0]
        quote = codes[1] if len(codes) > 1 else ("RUB" if language == "ru" or base != "USD" else "EUR")
        if base == quote:
            quote = "USD" if base == "RUB" else "RUB"
        return Plan("currency", language, base=base, quote=quote, amount=_amount(text) or Decimal(1))
    return Plan("none", language)


def _currencies(text: str) -> list[str]:
    found: list[str] = []
    for token in TOKEN.findall(text):
        code = SYMBOLS.get(token) or (token.upper() if token.upper() in ISO_CODES and len(token) == 3 else None)
        if code is None:
            lowered = token.lower()
            code = next((iso for stem, iso in CURRENCY_WORDS.items() if lowered.startswith(stem)), None)
        if code and code not in found:
            found.append(code)
    return found


def _amount(text: str) -> Decimal | None:
    match = re.search(r"(?<![\w.,])(\d+(?:[.,]\d+)?)(?![\w.,])", text)
    if not match:
        return None
    try:
        amount = Decimal(match.group(1).replace(",", "."))
    except InvalidOperation:
        return None
    return amount if amount > 0 else None


def _day(lowered: str) -> int:
    if "послезавтра" in lowered or "day after tomorrow" in lowered:
        return 2
    if "завтра" in lowered or "tomorrow" in lowered:
        return 1
    return 0


PLACE_STOPWORDS = {
    "today",
    "tomorrow",
    "now",
    "сегодня",
    "завтра",
    "послезавтра",
    "сейчас",
    "the",
    "day",
    "after",
    "week",
    "неделю",
    "на",
    "for",
    "please",
    "пожалуйста",
}


def _places(text: str, language: str) -> tuple[str, ...]:
    """The place after 'в/во' or 'in/for/at', with Russian case endings undone as fallbacks."""
    pattern = r"(?:^|\s)(?:в|во)\s+(.+)$" if language == "ru" else r"(?:^|\s)(?:in|for|at)\s+(.+)$"
    match = re.search(pattern, text, re.IGNORECASE)
    if not match:
        return ()
    words = []
    for word in re.findall(r"[A-Za-zА-Яа-яЁё-]+", match.group(1)):
        if word.lower() in PLACE_STOPWORDS:
            break
        words.append(word)
    if not words:
        return ()
    place = " ".join(words)
    if language != "ru":
        return (place,)
    return tuple(dict.fromkeys([place, *_nominatives(place)]))


def _nominatives(place: str) -> list[str]:
    """Москве -> Москва, Казани -> Казань, Санкт-Петербурге -> Санкт-Петербург, Сочи -> Сочи."""
    last = place[-1].lower()
    stem = place[:-1]
    if last == "е":
        return [stem + "а", stem, stem + "ь"]
    if last == "и":
        return [stem + "ь", stem + "а"]
    if last == "у":
        return [stem + "а"]
    return []
