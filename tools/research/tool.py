"""web-research: pick a source for the query, fetch, and write text to append to a message."""

from __future__ import annotations

import logging
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.conf import settings

from tools.base import Progress, ToolError, register

from . import providers
from .picker import Plan, pick

logger = logging.getLogger(__name__)

MAX_QUERY = 500
CBR_PAGE = "https://www.cbr.ru/currency_base/daily/"
BANKI_PAGE = "https://www.banki.ru/products/currency/{code}/"
OPEN_METEO_PAGE = "https://open-meteo.com/"

# WMO weather codes (Open-Meteo), grouped as their docs group them.
WMO = {
    0: ("ясно", "clear sky"),
    1: ("преимущественно ясно", "mainly clear"),
    2: ("переменная облачность", "partly cloudy"),
    3: ("пасмурно", "overcast"),
    45: ("туман", "fog"),
    48: ("изморозь, туман", "depositing rime fog"),
    51: ("слабая морось", "light drizzle"),
    53: ("морось", "drizzle"),
    55: ("сильная морось", "dense drizzle"),
    56: ("ледяная морось", "freezing drizzle"),
    57: ("ледяная морось", "freezing drizzle"),
    61: ("небольшой дождь", "slight rain"),
    63: ("дождь", "rain"),
    65: ("сильный дождь", "heavy rain"),
    66: ("ледяной дождь", "freezing rain"),
    67: ("ледяной дождь", "freezing rain"),
    71: ("небольшой снег", "slight snow"),
    73: ("снег", "snow"),
    75: ("сильный снег", "heavy snow"),
    77: ("снежная крупа", "snow grains"),
    80: ("ливень", "rain showers"),
    81: ("ливень", "rain showers"),
    82: ("сильный ливень", "violent rain showers"),
    85: ("снегопад", "snow showers"),
    86: ("сильный снегопад", "heavy snow showers"),
    95: ("гроза", "thunderstorm"),
    96: ("гроза с градом", "thunderstorm with hail"),
    99: ("гроза с градом", "thunderstorm with hail"),
}
DAY_WORDS = {"ru": ("сегодня", "завтра", "послезавтра"), "en": ("today", "tomorrow", "the day after tomorrow")}


def _number(value: Decimal, language: str, places: int = 4) -> str:
    quantized = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP).normalize()
    text = f"{quantized:f}"
    return text.replace(".", ",") if language == "ru" else text


def _source(name: str, url: str, fetched_at: str | None) -> dict[str, Any]:
    return {"name": name, "url": url, "fetched_at": fetched_at}


def currency(plan: Plan) -> dict[str, Any]:
    base, quote, amount = plan.base or "USD", plan.quote or "RUB", plan.amount
    if "RUB" in (base, quote):
        rates = providers.cbr_daily()
        other = quote if base == "RUB" else base
        if other not in rates.per_unit:
            raise ToolError(f"The Central Bank of Russia publishes no rate for {other}.", status=422, code="no_rate")
        rate = rates.per_unit[other] if quote == "RUB" else 1 / rates.per_unit[other]
        date, issuer = rates.date, ("ЦБ РФ" if plan.language == "ru" else "Central Bank of Russia")
        sources = [_source("Bank of Russia", CBR_PAGE, rates.source.fetched_at)]
        if other in ("USD", "EUR", "CNY"):  # banki.ru: commercial banks' rates, a best-effort citation
            sources.append(_source("banki.ru", BANKI_PAGE.format(code=other.lower()), None))
    else:
        data, fetched = providers.frankfurter(base, quote, amount)
        rate = Decimal(str(data["rates"][quote])) / amount
        date, issuer = data.get("date", ""), ("ЕЦБ (Frankfurter)" if plan.language == "ru" else "ECB (Frankfurter)")
        sources = [_source("Frankfurter (ECB)", fetched.url, fetched.fetched_at)]
    total = rate * amount
    lang = plan.language
    if lang == "ru":
        text = f"Курс {issuer} на {date}: 1 {base} = {_number(rate, lang)} {quote}." + (
            f" {_number(amount, lang)} {base} = {_number(total, lang, 2)} {quote}." if amount != 1 else ""
        )
    else:
        text = f"{issuer} rate for {date}: 1 {base} = {_number(rate, lang)} {quote}." + (
            f" {_number(amount, lang)} {base} = {_number(total, lang, 2)} {quote}." if amount != 1 else ""
        )
    data_out = {
        "base": base,
        "quote": quote,
        "rate": float(rate),
        "amount": float(amount),
        "total": float(total),
        "date": date,
    }
    return {"kind": "currency", "sources": sources, "data": data_out, "text": text + _cite(sources, lang)}


# Yandex Weather condition codes (its API documentation's list).
YANDEX_CONDITIONS = {
    "clear": ("ясно", "clear"),
    "partly-cloudy": ("малооблачно", "partly cloudy"),
    "cloudy": ("облачно с прояснениями", "cloudy"),
    "overcast": ("пасмурно", "overcast"),
    "drizzle": ("морось", "drizzle"),
    "light-rain": ("небольшой дождь", "light rain"),
    "rain": ("дождь", "rain"),
    "moderate-rain": ("умеренно сильный дождь", "moderate rain"),
    "heavy-rain": ("сильный дождь", "heavy rain"),
    "continuous-heavy-rain": ("длительный сильный дождь", "continuous heavy rain"),
    "showers": ("ливень", "showers"),
    "wet-snow": ("дождь со снегом", "sleet"),
    "light-snow": ("небольшой снег", "light snow"),
    "snow": ("снег", "snow"),
    "snow-showers": ("снегопад", "snow showers"),
    "hail": ("град", "hail"),
    "thunderstorm": ("гроза", "thunderstorm"),
    "thunderstorm-with-rain": ("дождь с грозой", "thunderstorm with rain"),
    "thunderstorm-with-hail": ("гроза с градом", "thunderstorm with hail"),
}
YANDEX_PAGE = "https://yandex.ru/pogoda/"
DAY_PARTS = ("night", "morning", "day", "evening")


def _open_meteo_day(place: dict[str, Any], plan: Plan) -> dict[str, Any]:
    forecast, fetched = providers.open_meteo_forecast(place["latitude"], place["longitude"])
    daily = forecast["daily"]
    day = min(plan.day, len(daily.get("time", [])) - 1)
    if day < 0:
        raise ToolError("Open-Meteo sent no forecast.", status=502, code="provider_bad_answer", retryable=True)
    code = daily["weather_code"][day]
    return {
        "date": daily["time"][day],
        "weather_code": code,
        "description": WMO.get(code, ("", ""))[0 if plan.language == "ru" else 1],
        "temperature_min": daily["temperature_2m_min"][day],
        "temperature_max": daily["temperature_2m_max"][day],
        "precipitation_mm": (daily.get("precipitation_sum") or [None] * (day + 1))[day],
        "current_temperature": forecast.get("current", {}).get("temperature_2m"),
        "source": _source("Open-Meteo.com (CC BY 4.0)", OPEN_METEO_PAGE, fetched.fetched_at),
    }


def _yandex_day(place: dict[str, Any], plan: Plan) -> dict[str, Any]:
    data, fetched = providers.yandex_forecast(place["latitude"], place["longitude"], plan.language)
    forecasts = data["forecasts"]
    day = forecasts[min(plan.day, len(forecasts) - 1)]
    parts = day.get("parts") or {}
    try:
        lows = [parts[p]["temp_min"] for p in DAY_PARTS if p in parts]
        highs = [parts[p]["temp_max"] for p in DAY_PARTS if p in parts]
        condition = (parts.get("day_short") or parts.get("day") or {}).get("condition", "")
        rain = sum(float(parts[p].get("prec_mm", 0)) for p in DAY_PARTS if p in parts) if parts else None
        low, high = min(lows), max(highs)
    except (KeyError, TypeError, ValueError):
        raise ToolError(
            "Yandex Weather sent an answer GhostGPT could not read.",
            status=502,
            code="provider_bad_answer",
            retryable=True,
        ) from None
    link = (data.get("info") or {}).get("url") or YANDEX_PAGE
    return {
        "date": day.get("date"),
        "weather_code": condition,
        "description": YANDEX_CONDITIONS.get(condition, (condition, condition))[0 if plan.language == "ru" else 1],
        "temperature_min": low,
        "temperature_max": high,
        "precipitation_mm": round(rain, 1) if rain is not None else None,
        "current_temperature": (data.get("fact") or {}).get("temp"),
        "source": _source("Yandex Weather", link, fetched.fetched_at),
    }


def weather(plan: Plan) -> dict[str, Any]:
    place, geocoded = None, None
    for candidate in plan.places:
        place, geocoded = providers.geocode(candidate, plan.language)
        if place:
            break
    if place is None:
        name = plan.places[0] if plan.places else "?"
        text = (
            f"Не удалось найти место «{name}»." if plan.language == "ru" else f"Could not find a place called {name!r}."
        )
        return {"kind": "weather", "sources": [], "data": None, "text": text}
    forecast = None
    if settings.TOOLS["YANDEX_WEATHER_KEY"]:
        try:
            forecast = _yandex_day(place, plan)
        except ToolError as exc:
            if exc.status < 500:
                raise
            # Yandex down, over quota or key revoked: Open-Meteo answers instead.
            logger.warning("Yandex Weather failed (%s); using Open-Meteo", exc.code)
    if forecast is None:
        forecast = _open_meteo_day(place, plan)
    lang = plan.language
    low, high, rain = forecast["temperature_min"], forecast["temperature_max"], forecast["precipitation_mm"]
    described, current = forecast["description"], forecast["current_temperature"]
    where = ", ".join(p for p in (place.get("name"), place.get("country")) if p)
    when = DAY_WORDS[lang][plan.day] + f", {forecast['date']}"
    if lang == "ru":
        text = (
            f"Погода: {where}, {when}: от {low} до {high} °C, {described}"
            + (f", осадки {rain} мм" if rain is not None else "")
            + "."
            + (f" Сейчас {current} °C." if current is not None and plan.day == 0 else "")
        )
    else:
        text = (
            f"Weather for {where}, {when}: {low} to {high} °C, {described}"
            + (f", precipitation {rain} mm" if rain is not None else "")
            + "."
            + (f" Now {current} °C." if current is not None and plan.day == 0 else "")
        )
    sources = [forecast.pop("source")]
    if sources[0]["name"] == "Yandex Weather" and geocoded is not None:
        sources.append(_source("Open-Meteo geocoding (CC BY 4.0)", OPEN_METEO_PAGE, geocoded.fetched_at))
    data = {"place": where, "latitude": place["latitude"], "longitude": place["longitude"], **forecast}
    return {"kind": "weather", "sources": sources, "data": data, "text": text + _cite(sources, lang)}


def _cite(sources: list[dict[str, Any]], language: str) -> str:
    label = "Источники" if language == "ru" else "Sources"
    return f"\n{label}: " + "; ".join(f"{s['name']} — {s['url']}" for s in sources)


class WebResearchTool:
    name = "web-research"

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        query = params.get("query")
        if not isinstance(query, str) or not query.strip():
            raise ToolError('Send {"query": "…"}.', code="missing_query")
        if len(query) > MAX_QUERY:
            raise ToolError(f"The query is longer than {MAX_QUERY} characters.", code="query_too_long")
        return {"query": query.strip()}

    def run(self, params: dict[str, Any], progress: Progress) -> dict[str, Any]:
        query = params["query"]
        plan = pick(query)
        if plan.kind == "currency":
            answer = currency(plan)
        elif plan.kind == "weather":
            answer = weather(plan)
        else:
            text = (
                "Для этого запроса нет источника: сейчас доступны курсы валют и погода."
                if plan.language == "ru"
                else "No source for this query: currency rates and weather are available now."
            )
            answer = {"kind": "none", "sources": [], "data": None, "text": text}
        return {"query": query, **answer}


register(WebResearchTool())
