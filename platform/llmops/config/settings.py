"""Settings, all from the environment (django-environ). Every variable is listed in README.md.

Development defaults need nothing: SQLite and media under var/, a secret key generated once
into var/, and an embedded Valkey on a unix socket under var/ (started by ``llmops up`` or by
the test suite). Set DJANGO_DEBUG=false for production: then DJANGO_SECRET_KEY and
DJANGO_ALLOWED_HOSTS are required and the security settings pass ``check --deploy``.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from llmops.config.broker import parse_redis_url

BASE_DIR = Path(__file__).resolve().parents[3]
env = environ.Env()

# Under pytest the suite keeps its own var/ folder, Redis and database, so a running
# `make run` is never touched: TEST_REDIS_URL / TEST_DATABASE_URL select real servers,
# otherwise tests/conftest.py starts an embedded Valkey on var/test/valkey/valkey.sock.
TESTING = "pytest" in sys.modules
if TESTING:
    os.environ.setdefault("LLMOPS_VAR_DIR", str(BASE_DIR / "var" / "test"))
    for _name in ("REDIS_URL", "DATABASE_URL"):
        if os.environ.get(f"TEST_{_name}"):
            os.environ[_name] = os.environ[f"TEST_{_name}"]
        else:
            os.environ.pop(_name, None)


def _env(name: str, cast, default):
    """Read one variable; a bad value stops start-up with a message naming it."""
    try:
        return cast(name, default=default)
    except (ValueError, TypeError, ImproperlyConfigured) as exc:
        raise ImproperlyConfigured(f"{name}: invalid value {os.environ.get(name)!r} ({exc})") from exc


VAR_DIR = Path(_env("LLMOPS_VAR_DIR", env.str, str(BASE_DIR / "var"))).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = _env("DJANGO_DEBUG", env.bool, True)


def _secret_key() -> str:
    key = os.environ.get("DJANGO_SECRET_KEY", "")
    if key:
        return key
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY: required when DJANGO_DEBUG is false")
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()

ALLOWED_HOSTS = _env(
    "DJANGO_ALLOWED_HOSTS", env.list, ["localhost", "127.0.0.1", "[::1]", "testserver"] if DEBUG else []
)
if not DEBUG and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("DJANGO_ALLOWED_HOSTS: required when DJANGO_DEBUG is false")
CSRF_TRUSTED_ORIGINS = _env("DJANGO_CSRF_TRUSTED_ORIGINS", env.list, [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_htmx",
    "template_partials",
    "ninja",
    "llmops.core",
    "llmops.accounts",
    "llmops.builder",
    "llmops.runs",
    "llmops.knowledge",
    "llmops.catalog",
    "llmops.endpoints",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "llmops.accounts.middleware.WorkspaceMiddleware",
]

ROOT_URLCONF = "llmops.config.urls"
ASGI_APPLICATION = "llmops.config.asgi.application"
WSGI_APPLICATION = None

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
                "llmops.accounts.context_processors.workspace",
            ],
        },
    },
]

# --- database -------------------------------------------------------------------------------
DATABASES = {
    "default": _env("DATABASE_URL", env.db_url, f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web and workers are separate processes writing to one file: WAL lets readers and one
    # writer proceed together, IMMEDIATE takes the write lock up front instead of failing late.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # Tests need a file, not :memory:, so that real worker processes see the same database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", 60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- redis / valkey: broker, results, channel layer, cache -------------------------------------
EMBEDDED_REDIS_SOCKET = VAR_DIR / "valkey" / "valkey.sock"
REDIS_URL = _env("REDIS_URL", env.str, "")
REDIS_EMBEDDED = not REDIS_URL
try:
    REDIS = parse_redis_url(REDIS_URL or f"unix://{EMBEDDED_REDIS_SOCKET}")
except ValueError as exc:
    raise ImproperlyConfigured(f"REDIS_URL: {exc}") from exc

CELERY_BROKER_URL = REDIS.celery_url
CELERY_RESULT_BACKEND = REDIS.celery_url
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "cpu"
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_EXPIRES = 3600
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
LLMOPS_QUEUES = ("cpu", "gpu", "serve")

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS.client_url], "prefix": "llmops"},
    }
}
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS.client_url,
        "KEY_PREFIX": "llmops",
    }
}

# --- files ----------------------------------------------------------------------------------
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(_env("LLMOPS_MEDIA_ROOT", env.str, str(VAR_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG
LLMOPS_MAX_UPLOAD_MB = _env("LLMOPS_MAX_UPLOAD_MB", env.int, 50)
LLMOPS_MAX_REQUEST_MB = _env("LLMOPS_MAX_REQUEST_MB", env.int, 200)
# Non-file request bodies (JSON graphs, forms): anything larger is refused with 413.
DATA_UPLOAD_MAX_MEMORY_SIZE = _env("LLMOPS_MAX_JSON_MB", env.int, 5) * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
LLMOPS_ALLOW_TRUST_REMOTE_CODE = _env("LLMOPS_ALLOW_TRUST_REMOTE_CODE", env.bool, False)
LLMOPS_HEALTH_TIMEOUT = _env("LLMOPS_HEALTH_TIMEOUT", env.float, 1.5)

# --- auth -----------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

# --- production security (DJANGO_DEBUG=false) ----------------------------------------------------
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = _env("DJANGO_SECURE_SSL_REDIRECT", env.bool, True)
    SECURE_HSTS_SECONDS = _env("DJANGO_SECURE_HSTS_SECONDS", env.int, 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": _env("LLMOPS_LOG_LEVEL", env.str, "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
