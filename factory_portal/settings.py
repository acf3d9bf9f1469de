"""Factory Portal settings: one module, everything from the environment (see .env.example)."""

from __future__ import annotations

import importlib.util
import secrets
from pathlib import Path

from factory_portal.env import cache_from_url, database_from_url, envbool, envint, envlist, envstr, load_env_file

BASE_DIR = Path(__file__).resolve().parent.parent
load_env_file(BASE_DIR / ".env")
VAR_DIR = Path(envstr("VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

PRODUCTION = envbool("PRODUCTION", False)
DEBUG = envbool("DEBUG", not PRODUCTION)


def _secret_key() -> str:
    key = envstr("SECRET_KEY")
    if key:
        return key
    if PRODUCTION:
        raise RuntimeError("SECRET_KEY must be set when PRODUCTION=1")
    # Outside production the key is generated once and kept, so sessions survive restarts.
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
# Encrypts secrets stored in the database (endpoint bearer tokens). Falls back to SECRET_KEY.
SECRETS_ENCRYPTION_KEY = envstr("SECRETS_ENCRYPTION_KEY", SECRET_KEY)

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "factory_portal",
    "sites",
    "telemetry",
    "tenants",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "factory_portal.urls"
WSGI_APPLICATION = "factory_portal.wsgi.application"

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
                "factory_portal.context_processors.navigation",
            ],
        },
    },
]

DATABASES = {"default": database_from_url(envstr("DATABASE_URL", "sqlite:///var/db.sqlite3"), BASE_DIR)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Covering indexes (INCLUDE) are PostgreSQL's; on SQLite Django drops the extra columns and warns on every migrate.
SILENCED_SYSTEM_CHECKS = ["models.W040"]
# Per process by default; CACHE_URL=redis://... (or file://... on one machine, as `make run` does) shares it between
# the web processes and the workers, which the dashboards' heatmap pre-warm needs to reach users (docs/dashboards.md).
CACHE_URL = envstr("CACHE_URL", "")
CACHES = {"default": cache_from_url(CACHE_URL, BASE_DIR)}

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

# Login lockout: 5 failures per user and address lock for 15 minutes.
AXES_FAILURE_LIMIT = envint("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = envint("AXES_COOLOFF_MINUTES", 15) / 60
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [
    BASE_DIR / "static",
    # Plotly's own plotly.min.js from the installed package (not committed): /static/vendor/plotly/plotly.min.js.
    ("vendor/plotly", Path(importlib.util.find_spec("plotly").submodule_search_locations[0]) / "package_data"),
]
STATIC_ROOT = Path(envstr("STATIC_ROOT", str(BASE_DIR / "staticfiles")))

EMAIL_BACKEND = envstr("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = envstr("EMAIL_HOST", "localhost")
EMAIL_PORT = envint("EMAIL_PORT", 25)
EMAIL_HOST_USER = envstr("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = envstr("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = envstr("DEFAULT_FROM_EMAIL", "factory-portal@localhost")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "tenants.authentication.ApiKeyAuthentication",  # tenant API keys: Authorization: Bearer fpk_...
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "factory_portal.exceptions.api_exception_handler",
    "DEFAULT_THROTTLE_RATES": {
        "auth": envstr("THROTTLE_AUTH", "20/min"),
        "signup": envstr("THROTTLE_SIGNUP", "10/min"),
        "ingest": envstr("THROTTLE_INGEST", "600/min"),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Factory Portal API",
    "DESCRIPTION": "Inventory, telemetry, usage, tenants and economics of multi-tenant AI factories.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {"EngineEnum": "sites.choices.Engine"},
}

# Cache-based limits on HTML forms per client address (DRF endpoints use the throttles above).
HTML_RATE_LIMITS = {"signup": envstr("RATE_SIGNUP", "10/hour"), "token": envstr("RATE_TOKEN_LINKS", "30/hour")}

# Celery. The embedded default is kombu's filesystem transport under var/, so `make run`
# needs no broker server; production sets CELERY_BROKER_URL=redis://...
CELERY_BROKER_URL = envstr("CELERY_BROKER_URL", "filesystem://")
CELERY_BROKER_DIR = VAR_DIR / "broker"
if CELERY_BROKER_URL.startswith("filesystem://"):
    for folder in ("queue", "processed", "control"):
        (CELERY_BROKER_DIR / folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_BROKER_DIR / "queue"),
        "data_folder_out": str(CELERY_BROKER_DIR / "queue"),
        "processed_folder": str(CELERY_BROKER_DIR / "processed"),
        "control_folder": str(CELERY_BROKER_DIR / "control"),
        "store_processed": False,
    }
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # A task a dead worker held (acks_late) comes back after this, not after kombu's default hour.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": envint("CELERY_VISIBILITY_TIMEOUT_S", 600)}
CELERY_RESULT_BACKEND = envstr("CELERY_RESULT_BACKEND", "") or None
CELERY_TASK_ALWAYS_EAGER = envbool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = envint("CELERY_WORKER_PREFETCH_MULTIPLIER", 4)
CELERY_TASK_DEFAULT_QUEUE = "default"
# Routes by task name, so `.delay()` from anywhere lands on the right queue (DESIGN.md §2), not on "default".
CELERY_TASK_ROUTES = {
    "telemetry.endpoints_scrape_schedule_task": {"queue": "scrape"},
    "telemetry.endpoints_scrape_task": {"queue": "scrape"},
    "telemetry.usage_rollup_task": {"queue": "rollup"},
    "telemetry.counter_snapshots_prune_task": {"queue": "rollup"},
}
CELERY_TIMEZONE = "UTC"

# Collection intervals (seconds); a site may override the GPU poll interval.
GPU_POLL_INTERVAL_S = envint("GPU_POLL_INTERVAL_S", 10)
# The most node reports one ingest task takes from the queue at once (one transaction, one COPY).
GPU_INGEST_BATCH_MAX = envint("GPU_INGEST_BATCH_MAX", 100)
ENGINE_SCRAPE_INTERVAL_S = envint("ENGINE_SCRAPE_INTERVAL_S", 15)
SCRAPE_TIMEOUT_S = float(envstr("SCRAPE_TIMEOUT_S", "5"))
SCRAPE_MAX_BYTES = envint("SCRAPE_MAX_BYTES", 20 * 1024 * 1024)
# Private ranges are the normal case on premises; link-local / cloud-metadata are never fetched.
SCRAPE_ALLOW_PRIVATE = envbool("SCRAPE_ALLOW_PRIVATE", True)
SCRAPE_ALLOW_LOOPBACK = envbool("SCRAPE_ALLOW_LOOPBACK", not PRODUCTION)
RAW_SAMPLE_RETENTION_DAYS = envint("RAW_SAMPLE_RETENTION_DAYS", 7)
# A node clock off by more than this (seconds) has its readings re-timed to the server's clock and raises a
# dashboard alert. Above NTP error and a push's transit time, well below a rollup minute (telemetry/clock.py).
NODE_CLOCK_SKEW_TOLERANCE_S = float(envstr("NODE_CLOCK_SKEW_TOLERANCE_S", "5"))

# Production hardening (PRODUCTION=1 behind a TLS-terminating proxy).
if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = envint("SESSION_COOKIE_AGE", 12 * 3600)
X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO")},
    # httpx logs every engine scrape at INFO: thousands of lines a minute with many endpoints.
    "loggers": {"django.db.backends": {"level": "WARNING"}, "httpx": {"level": "WARNING"}},
}
