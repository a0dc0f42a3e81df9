"""What the API docs page shows and /api.json serves: one description of the deployment."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest

from chat.backends import registry


def base_url(request: HttpRequest) -> str:
    return settings.WEB["PUBLIC_BASE_URL"] or request.build_absolute_uri("/").rstrip("/")


ENDPOINTS = [
    ("GET", "/v1/models", "key", "Models you may use, with prices", "Доступные модели и цены"),
    ("POST", "/v1/chat/completions", "key", "Chat completion (stream or not)", "Чат-ответ (потоком или целиком)"),
    ("POST", "/v1/completions", "key", "Legacy text completion", "Устаревшее дополнение текста"),
    (
        "POST",
        "/v1/audio/transcriptions",
        "key",
        "Speech to text (OpenAI contract)",
        "Распознавание речи (как у OpenAI)",
    ),
    ("GET", "/health", "none", "Readiness of the models", "Готовность моделей"),
    ("GET", "/api.json", "none", "This manifest", "Этот манифест"),
    ("POST", "/api/session/bootstrap", "none", "Anonymous browser session (gg_sess)", "Анонимная сессия (gg_sess)"),
    ("POST", "/api/share", "session", "Share conversation blocks", "Поделиться перепиской"),
    ("GET", "/api/share/{id}", "none", "A shared snapshot as JSON", "Снимок переписки в JSON"),
    ("GET", "/share/{id}", "none", "A shared snapshot as a page", "Снимок переписки страницей"),
    ("GET", "/api/v1/balance", "key", "Wallet balance", "Баланс кошелька"),
    ("GET", "/api/v1/usage", "key", "Usage and costs", "Расход и стоимость"),
    (
        "GET",
        "/console",
        "none",
        "Console: usage charts, keys, requests, rates",
        "Консоль: графики расхода, ключи, цены",
    ),
    (
        "GET",
        "/console/ops",
        "none",
        "Operators: accounts, model health, traffic",
        "Операторам: аккаунты, модели, трафик",
    ),
    ("GET", "/api/jobs/{id}", "none", "Status of a tool job", "Статус задачи инструмента"),
]

TOOLS = [
    ("POST", "/api/fetch-url", '{"url": "https://…"}', "Main text of a web page", "Основной текст страницы"),
    ("POST", "/api/web-research", '{"query": "курс доллара"}', "Currency rates, weather", "Курсы валют, погода"),
    ("POST", "/api/pdf/extract", "multipart file=@doc.pdf", "Text of a PDF, page by page", "Текст PDF по страницам"),
    ("POST", "/api/transcribe", "multipart file=@talk.mp3", "Transcript of audio", "Расшифровка аудио"),
]

ERRORS = [
    (400, "invalid_request_error", "Bad JSON or parameters", "Неверный JSON или параметры"),
    (401, "authentication_error", "No key or session, or a wrong one", "Нет ключа или сессии, или он неверен"),
    (402, "insufficient_balance_error", "Balance too low", "Недостаточно средств"),
    (403, "permission_error", "Not allowed (e.g. CSRF check failed)", "Нет доступа (например, CSRF)"),
    (404, "invalid_request_error", "Wrong path or model (use /v1/…)", "Неверный путь или модель (/v1/…)"),
    (413, "invalid_request_error", "Body or file too large", "Слишком большой запрос или файл"),
    (415, "invalid_request_error", "Unsupported file type", "Неподдерживаемый тип файла"),
    (422, "invalid_request_error", "Unreadable file", "Файл не читается"),
    (429, "rate_limit_error", "Rate limit: see Retry-After", "Лимит запросов: см. Retry-After"),
    (502, "upstream_error", "A provider failed", "Ошибка поставщика"),
    (503, "service_unavailable_error", "Busy or model loading: retry", "Занято или модель загружается"),
    (504, "timeout_error", "A provider timed out", "Поставщик не ответил вовремя"),
]


def limits() -> dict[str, Any]:
    tiers = settings.GHOSTGPT
    return {
        "rate_window_seconds": tiers["RATE_WINDOW_SECONDS"],
        "max_tokens": {"min": tiers["MAX_TOKENS_MIN"], "max": tiers["MAX_TOKENS_MAX"]},
        "max_body_bytes": settings.DATA_UPLOAD_MAX_MEMORY_SIZE,
        "share_max_bytes": settings.WEB["SHARE_MAX_BYTES"],
        "pdf_max_bytes": settings.TOOLS["PDF_MAX_BYTES"],
        "document_max_bytes": settings.DOCUMENTS["MAX_BYTES"],
        "audio_max_bytes": settings.TOOLS["TRANSCRIBE_MAX_BYTES"],
        "image_max_bytes": tiers["IMAGE_MAX_BYTES"],
        "tools_per_window": {
            "anonymous": settings.TOOLS["RATE_ANONYMOUS"],
            "session": settings.TOOLS["RATE_SESSION"],
            "key": settings.TOOLS["RATE_KEY"],
        },
    }


def manifest(request: HttpRequest) -> dict[str, Any]:
    base = base_url(request)
    models = [
        {"id": info.id, "owned_by": info.owned_by, "context_length": info.context_length}
        for info, _ in registry.all_models()
    ]
    return {
        "name": "GhostGPT",
        "base_url": f"{base}/v1",
        "site_url": base,
        "default_model": settings.GHOSTGPT["MODEL_ID"],
        "models": models,
        "auth": [
            {"scheme": "bearer", "header": "Authorization: Bearer <key>", "for": "/v1, /api"},
            {"scheme": "api_key_header", "header": "x-api-key: <key>", "for": "/v1 (Anthropic-style clients)"},
            {"scheme": "cookie", "cookie": settings.WEB["SESSION_COOKIE"], "for": "the web chat; needs X-CSRFToken"},
        ],
        "endpoints": [{"method": m, "path": p, "auth": a, "description": en} for m, p, a, en, _ in ENDPOINTS],
        "tools": [{"method": m, "path": p, "body": b, "description": en} for m, p, b, en, _ in TOOLS],
        "errors": [{"status": s, "type": t, "meaning": en} for s, t, en, _ in ERRORS],
        "limits": limits(),
    }
