"""Data providers for web-research. Every request goes through the SafeFetcher; answers
are cached briefly (settings.TOOLS["RESEARCH_CACHE_SECONDS"])."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode

from defusedxml import ElementTree
from django.conf import settings
from django.core.cache import cache

from tools.base import ToolError
from tools.fetching import SafeFetcher

XML_TYPES = ("text/xml", "application/xml")
JSON_TYPES = ("application/json",)


@dataclass(frozen=True)
class Fetched:
    url: str
    fetched_at: str
    body: bytes


def _get(url: str, accept: tuple[str, ...], headers: dict[str, str] | None = None) -> Fetched:
    key = "research:" + hashlib.sha256(url.encode()).hexdigest()
    cached = cache.get(key)
    if cached is not None:
        return Fetched(*cached)
    try:
        page = SafeFetcher().fetch(url, accept=accept, headers=headers)
    except ToolError as exc:
        if exc.code == "unsupported_content_type":  # e.g. an HTML error page instead of XML/JSON
            raise ToolError(
                "A data provider sent an error page instead of data.",
                status=502,
                code="provider_bad_answer",
                retryable=True,
            ) from None
        raise
    fetched = Fetched(page.final_url, page.fetched_at, page.body)
    cache.set(key, (fetched.url, fetched.fetched_at, fetched.body), settings.TOOLS["RESEARCH_CACHE_SECONDS"])
    return fetched


def _bad_answer(name: str) -> ToolError:
    return ToolError(
        f"{name} sent an answer GhostGPT could not read.", status=502, code="provider_bad_answer", retryable=True
    )


def _json(fetched: Fetched, name: str) -> Any:
    try:
        return json.loads(fetched.body)
    except ValueError:
        raise _bad_answer(name) from None


# --- Central Bank of Russia -------------------------------------------------------------------


@dataclass(frozen=True)
class CbrRates:
    date: str  # as the bank stamped it, dd.mm.yyyy
    per_unit: dict[str, Decimal]  # RUB for one unit of each currency
    source: Fetched


def _decimal(text: str | None) -> Decimal:
    if not text:
        raise InvalidOperation
    return Decimal(text.strip().replace(",", "."))


def cbr_daily() -> CbrRates:
    fetched = _get(settings.TOOLS["CBR_URL"], XML_TYPES)
    try:
        root = ElementTree.fromstring(fetched.body)  # honours encoding="windows-1251"
        rates = {}
        for valute in root.iter("Valute"):
            code = valute.findtext("CharCode")
            unit = valute.findtext("VunitRate")
            rate = _decimal(unit) if unit else _decimal(valute.findtext("Value")) / _decimal(valute.findtext("Nominal"))
            rates[str(code)] = rate
        date = root.attrib["Date"]
    except (ElementTree.ParseError, InvalidOperation, KeyError, ZeroDivisionError, ValueError):
        raise _bad_answer("The Central Bank of Russia") from None
    if not rates:
        raise _bad_answer("The Central Bank of Russia")
    return CbrRates(date=date, per_unit=rates, source=fetched)


# --- Frankfurter (ECB) ------------------------------------------------------------------------


def frankfurter(base: str, quote: str, amount: Decimal) -> tuple[dict[str, Any], Fetched]:
    query = urlencode({"base": base, "symbols": quote, "amount": str(amount)})
    try:
        fetched = _get(f"{settings.TOOLS['FRANKFURTER_URL']}/latest?{query}", JSON_TYPES)
    except ToolError as exc:
        if exc.code == "upstream_status" and exc.status == 502 and not exc.retryable:
            raise ToolError(f"No exchange rate is published for {base}/{quote}.", status=422, code="no_rate") from None
        raise
    data = _json(fetched, "Frankfurter")
    if not isinstance(data, dict) or quote not in data.get("rates", {}):
        raise ToolError(f"No exchange rate is published for {base}/{quote}.", status=422, code="no_rate")
    return data, fetched


# --- Weather ----------------------------------------------------------------------------------


def geocode(name: str, language: str) -> tuple[dict[str, Any] | None, Fetched]:
    query = urlencode({"name": name, "count": 5, "language": language, "format": "json"})
    fetched = _get(f"{settings.TOOLS['OPEN_METEO_GEOCODING_URL']}/v1/search?{query}", JSON_TYPES)
    data = _json(fetched, "Open-Meteo")
    results = data.get("results") if isinstance(data, dict) else None  # no "results" key = nothing found
    if not results:
        return None, fetched
    # Ambiguous names (Moscow, Idaho): the most populous match.
    return max(results, key=lambda r: r.get("population") or 0), fetched


def open_meteo_forecast(latitude: float, longitude: float) -> tuple[dict[str, Any], Fetched]:
    query = urlencode(
        {
            "latitude": latitude,
            "longitude": longitude,
            "current": "temperature_2m,apparent_temperature,relative_humidity_2m,weather_code,wind_speed_10m",
            "daily": "weather_code,temperature_2m_max,temperature_2m_min,precipitation_sum",
            "timezone": "auto",
            "forecast_days": 3,
        }
    )
    fetched = _get(f"{settings.TOOLS['OPEN_METEO_URL']}/v1/forecast?{query}", JSON_TYPES)
    data = _json(fetched, "Open-Meteo")
    if not isinstance(data, dict) or "daily" not in data:
        raise _bad_answer("Open-Meteo")
    return data, fetched


def yandex_forecast(latitude: float, longitude: float, language: str) -> tuple[dict[str, Any], Fetched]:
    """Yandex Weather `/v2/forecast` (fact + forecasts[].parts); only called when
    GHOSTGPT_YANDEX_WEATHER_KEY is set. The key travels in a header, never in the URL, so it
    is in no cache key, source link or log line."""
    query = urlencode(
        {
            "lat": latitude,
            "lon": longitude,
            "lang": "ru_RU" if language == "ru" else "en_US",
            "limit": 3,
            "hours": "false",
        }
    )
    key = settings.TOOLS["YANDEX_WEATHER_KEY"]
    fetched = _get(
        f"{settings.TOOLS['YANDEX_WEATHER_URL']}/v2/forecast?{query}",
        JSON_TYPES,
        # The current header name, and the one the legacy REST tariff documented.
        headers={"X-Yandex-Weather-Key": key, "X-Yandex-API-Key": key},
    )
    data = _json(fetched, "Yandex Weather")
    if not isinstance(data, dict) or not isinstance(data.get("forecasts"), list) or not data["forecasts"]:
        raise _bad_answer("Yandex Weather")
    return data, fetched
