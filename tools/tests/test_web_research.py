"""web-research against providers replayed from recorded shapes (shared/reference/providers.md)
by a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client

from .fixtures import LoopbackServer

pytestmark = pytest.mark.django_db(transaction=True)

# Recorded CBR daily sample, extended with Nominal != 1 (TRY 10, IRR 1000000 with E-05) and CNY.
CBR_XML = (
    '<?xml version="1.0" encoding="windows-1251"?><ValCurs Date="25.04.2026" name="Foreign Currency Market">'
    '<Valute ID="R01235"><NumCode>840</NumCode><CharCode>USD</CharCode><Nominal>1</Nominal><Name>Доллар США</Name>'
    "<Value>75,5273</Value><VunitRate>75,5273</VunitRate></Valute>"
    '<Valute ID="R01239"><NumCode>978</NumCode><CharCode>EUR</CharCode><Nominal>1</Nominal><Name>Евро</Name>'
    "<Value>88,2826</Value><VunitRate>88,2826</VunitRate></Valute>"
    '<Valute ID="R01700J"><NumCode>949</NumCode><CharCode>TRY</CharCode><Nominal>10</Nominal><Name>Турецких лир</Name>'
    "<Value>19,6543</Value></Valute>"
    '<Valute ID="R01300"><NumCode>364</NumCode><CharCode>IRR</CharCode><Nominal>1000000</Nominal>'
    "<Name>Иранских риалов</Name><Value>53,9256</Value><VunitRate>5,39256E-05</VunitRate></Valute>"
    "</ValCurs>"
).encode("windows-1251")

MOSCOW = {
    "id": 524901,
    "name": "Москва",
    "latitude": 55.75204,
    "longitude": 37.61781,
    "country_code": "RU",
    "timezone": "Europe/Moscow",
    "population": 10381222,
    "country": "Россия",
    "admin1": "Москва",
}
MOSCOW_IDAHO = {
    "id": 5601538,
    "name": "Moscow",
    "latitude": 46.73239,
    "longitude": -117.00017,
    "country_code": "US",
    "population": 25435,
    "country": "United States",
    "admin1": "Idaho",
}
FORECAST = {
    "latitude": 55.75,
    "longitude": 37.625,
    "utc_offset_seconds": 10800,
    "timezone": "Europe/Moscow",
    "current_units": {"temperature_2m": "°C", "weather_code": "wmo code"},
    "current": {"time": "2026-08-23T18:45", "interval": 900, "temperature_2m": 23.2, "weather_code": 0},
    "daily": {
        "time": ["2026-08-23", "2026-08-24", "2026-08-25"],
        "weather_code": [0, 61, 3],
        "temperature_2m_max": [25.1, 19.4, 21.0],
        "temperature_2m_min": [14.2, 12.8, 11.5],
        "precipitation_sum": [0.0, 4.2, 0.0],
    },
}


def _json(status: int, body: Any) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(body, ensure_ascii=False).encode()


def _query(handler: BaseHTTPRequestHandler) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(handler.path).query).items()}


def frankfurter(handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
    q = _query(handler)
    table = {("USD", "EUR"): 0.8642, ("EUR", "USD"): 1.1571, ("GBP", "JPY"): 196.4}
    rate = table.get((q.get("base", ""), q.get("symbols", "")))
    if rate is None:
        return _json(422, {"message": "bad currency pair"})
    amount = float(q.get("amount", 1))
    return _json(
        200,
        {"amount": amount, "base": q["base"], "date": "2026-08-20", "rates": {q["symbols"]: round(rate * amount, 4)}},
    )


def geocoding(handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
    name = _query(handler).get("name", "")
    if name in ("Москва", "Moscow"):
        return _json(200, {"results": [MOSCOW_IDAHO, MOSCOW], "generationtime_ms": 0.27})
    return _json(200, {"generationtime_ms": 0.2})  # nothing found: no "results" key


@pytest.fixture(scope="module")
def providers() -> Iterator[LoopbackServer]:
    server = LoopbackServer(
        {
            "/cbr/daily": lambda _: (200, {"Content-Type": "text/xml; charset=windows-1251"}, CBR_XML),
            "/cbr-down/daily": lambda _: (503, {"Content-Type": "text/html"}, b"<h1>maintenance</h1>"),
            "/cbr-html/daily": lambda _: (200, {"Content-Type": "text/html"}, b"<html>captcha</html>"),
            "/fx/v1/latest": frankfurter,
            "/geo/v1/search": geocoding,
            "/meteo/v1/forecast": lambda _: _json(200, FORECAST),
        }
    )
    yield server
    server.close()


@pytest.fixture
def replayed(settings: Any, providers: LoopbackServer) -> LoopbackServer:
    settings.TOOLS = {
        **settings.TOOLS,
        "FETCH_ALLOW": [f"127.0.0.1:{providers.port}"],
        "RATE_ANONYMOUS": 1000,
        "CBR_URL": f"{providers.url}/cbr/daily",
        "FRANKFURTER_URL": f"{providers.url}/fx/v1",
        "OPEN_METEO_URL": f"{providers.url}/meteo",
        "OPEN_METEO_GEOCODING_URL": f"{providers.url}/geo",
        "RESEARCH_CACHE_SECONDS": 0,
    }
    providers.hits.clear()
    return providers


def research(query: str) -> Any:
    return Client().post("/api/web-research", {"query": query}, content_type="application/json")


def test_rub_pairs_come_from_the_central_bank(replayed: LoopbackServer) -> None:
    body = research("курс доллара к рублю").json()
    assert body["kind"] == "currency" and body["data"]["rate"] == 75.5273 and body["data"]["date"] == "25.04.2026"
    assert "1 USD = 75,5273 RUB" in body["text"] and "25.04.2026" in body["text"]
    assert [s["name"] for s in body["sources"]] == ["Bank of Russia", "banki.ru"]
    assert set(body) == {"query", "kind", "sources", "data", "text"}


def test_nominal_scientific_notation_and_inverse_pairs(replayed: LoopbackServer) -> None:
    lira = research("USD/TRY").json()  # not RUB: Frankfurter has no TRY here -> clear error
    assert lira["error"]["code"] == "no_rate"
    rub_try = research("курс лиры к рублю").json()
    assert rub_try["data"]["rate"] == pytest.approx(1.96543)  # 19,6543 RUB per 10 TRY
    rial = research("1000000 IRR в рублях").json()
    assert rial["data"]["total"] == pytest.approx(53.9256)
    inverse = research("100 rub in usd").json()
    assert inverse["data"]["total"] == pytest.approx(100 / 75.5273)


def test_other_pairs_come_from_frankfurter(replayed: LoopbackServer) -> None:
    body = research("100 usd in eur").json()
    assert body["data"]["rate"] == pytest.approx(0.8642) and body["data"]["total"] == pytest.approx(86.42)
    assert "100 USD = 86.42 EUR" in body["text"] and body["sources"][0]["name"] == "Frankfurter (ECB)"


def test_weather_in_russian_and_english(replayed: LoopbackServer) -> None:
    moscow = research("погода в Москве").json()
    assert moscow["kind"] == "weather" and moscow["data"]["place"] == "Москва, Россия"  # most populous Moscow
    assert "от 14.2 до 25.1 °C, ясно" in moscow["text"] and "Сейчас 23.2 °C" in moscow["text"]
    tomorrow = research("weather in Moscow tomorrow").json()
    assert tomorrow["data"]["date"] == "2026-08-24" and "slight rain" in tomorrow["text"]
    assert "Open-Meteo" in tomorrow["sources"][0]["name"]
    nowhere = research("погода в Нигдеграде").json()
    assert nowhere["kind"] == "weather" and nowhere["data"] is None and "Нигдеграде" in nowhere["text"]


def test_unknown_kinds_get_a_clear_answer(replayed: LoopbackServer) -> None:
    body = research("расскажи анекдот").json()
    assert body == {
        "query": "расскажи анекдот",
        "kind": "none",
        "sources": [],
        "data": None,
        "text": "Для этого запроса нет источника: сейчас доступны курсы валют и погода.",
    }
    assert replayed.hits == []


@pytest.mark.parametrize("path", ["/cbr-down/daily", "/cbr-html/daily"])
def test_provider_failures_are_502(replayed: LoopbackServer, settings: Any, path: str) -> None:
    settings.TOOLS = {**settings.TOOLS, "CBR_URL": f"{replayed.url}{path}"}
    response = research("курс евро")
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "upstream_error"


def test_provider_answers_are_cached(replayed: LoopbackServer, settings: Any) -> None:
    settings.TOOLS = {**settings.TOOLS, "RESEARCH_CACHE_SECONDS": 60}
    from django.core.cache import cache

    cache.clear()
    research("курс евро")
    research("курс доллара")
    assert sum("/cbr/" in hit for hit in replayed.hits) == 1


@pytest.mark.parametrize("body", [{}, {"query": ""}, {"query": 7}, {"query": "x" * 600}])
def test_bad_queries_are_400(body: dict[str, Any]) -> None:
    assert Client().post("/api/web-research", body, content_type="application/json").status_code == 400


# Yandex Weather /v2/forecast: built from the fields its API documentation lists for the
# response (fact, forecasts[].parts with night/morning/day/evening and *_short). No live
# recording is available (a key is needed), so this fixture follows the documented format.
YANDEX_KEY = "yw-test-key-0123456789"
YANDEX_FORECAST = {
    "now": 1795425900,
    "now_dt": "2026-11-22T08:05:00.000Z",
    "info": {"lat": 55.75204, "lon": 37.61781, "url": "https://yandex.ru/pogoda/?lat=55.75204&lon=37.61781"},
    "fact": {"temp": -3, "feels_like": -8, "condition": "overcast", "wind_speed": 3.6, "humidity": 86},
    "forecasts": [
        {
            "date": "2026-11-22",
            "parts": {
                "night": {"temp_min": -6, "temp_max": -4, "temp_avg": -5, "condition": "cloudy", "prec_mm": 0},
                "morning": {"temp_min": -5, "temp_max": -3, "temp_avg": -4, "condition": "overcast", "prec_mm": 0},
                "day": {"temp_min": -3, "temp_max": -1, "temp_avg": -2, "condition": "light-snow", "prec_mm": 0.4},
                "evening": {"temp_min": -4, "temp_max": -2, "temp_avg": -3, "condition": "light-snow", "prec_mm": 0.3},
                "day_short": {"temp": -1, "temp_min": -3, "condition": "light-snow", "prec_mm": 0.7},
                "night_short": {"temp": -6, "condition": "cloudy", "prec_mm": 0},
            },
        },
        {
            "date": "2026-11-23",
            "parts": {
                "night": {"temp_min": -7, "temp_max": -5, "condition": "clear", "prec_mm": 0},
                "morning": {"temp_min": -8, "temp_max": -6, "condition": "clear", "prec_mm": 0},
                "day": {"temp_min": -5, "temp_max": -2, "condition": "partly-cloudy", "prec_mm": 0},
                "evening": {"temp_min": -6, "temp_max": -4, "condition": "clear", "prec_mm": 0},
                "day_short": {"temp": -2, "temp_min": -5, "condition": "partly-cloudy", "prec_mm": 0},
            },
        },
    ],
}


def yandex(handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
    if handler.headers.get("X-Yandex-Weather-Key") != YANDEX_KEY:
        return _json(403, {"message": "forbidden"})
    return _json(200, YANDEX_FORECAST)


@pytest.fixture
def with_yandex(replayed: LoopbackServer, settings: Any) -> LoopbackServer:
    replayed.routes["/yandex/v2/forecast"] = yandex
    replayed.routes["/yandex-down/v2/forecast"] = lambda _: _json(503, {"message": "down"})
    settings.TOOLS = {
        **settings.TOOLS,
        "YANDEX_WEATHER_KEY": YANDEX_KEY,
        "YANDEX_WEATHER_URL": f"{replayed.url}/yandex",
    }
    return replayed


def test_yandex_weather_is_used_when_a_key_is_configured(with_yandex: LoopbackServer, caplog: Any) -> None:
    today = research("погода в Москве").json()
    assert today["data"]["place"] == "Москва, Россия"
    assert today["data"]["temperature_min"] == -6 and today["data"]["temperature_max"] == -1
    assert "от -6 до -1 °C, небольшой снег, осадки 0.7 мм" in today["text"] and "Сейчас -3 °C" in today["text"]
    assert [s["name"] for s in today["sources"]] == ["Yandex Weather", "Open-Meteo geocoding (CC BY 4.0)"]
    assert today["sources"][0]["url"].startswith("https://yandex.ru/pogoda/")
    tomorrow = research("weather in Moscow tomorrow").json()
    assert tomorrow["data"]["date"] == "2026-11-23" and "partly cloudy" in tomorrow["text"]
    assert not any("/meteo/" in hit for hit in with_yandex.hits)  # the forecast came from Yandex only
    hits = [hit for hit in with_yandex.hits if "/yandex/" in hit]
    assert hits and all(YANDEX_KEY not in hit for hit in hits)  # the key travels in a header
    assert YANDEX_KEY not in caplog.text and YANDEX_KEY not in json.dumps([today, tomorrow])


def test_yandex_failure_falls_back_to_open_meteo(with_yandex: LoopbackServer, settings: Any) -> None:
    settings.TOOLS = {**settings.TOOLS, "YANDEX_WEATHER_URL": f"{with_yandex.url}/yandex-down"}
    body = research("погода в Москве").json()
    assert "Open-Meteo" in body["sources"][0]["name"] and "от 14.2 до 25.1 °C" in body["text"]
    settings.TOOLS = {
        **settings.TOOLS,
        "YANDEX_WEATHER_URL": f"{with_yandex.url}/yandex",
        "YANDEX_WEATHER_KEY": "wrong",
    }
    assert "Open-Meteo" in research("погода в Москве").json()["sources"][0]["name"]
