"""Settings, all from the environment (django-environ). Every variable is listed in README.md.

Development defaults need nothing: SQLite and media under var/, a secret key generated once
into var/, and an embedded Valkey on a unix socket under var/ (started by ``llmops up`` or by
the test suite). Set DJANGO_DEBUG=false for production: then DJANGO_SECRET_KEY and
DJANGO_ALLOWED_HOSTS are required and the security settings pass ``check --deploy``.
"""

from __future__ import annotations

import os
import re
import secrets
import sys
import warnings
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from llmops.config.broker import parse_redis_url

BASE_DIR = Path(__file__).resolve().parents[3]
env = environ.Env()

# Under pytest the suite keeps its own var/ folder, Redis and database, so a running
# `make run` is never touched: TEST_REDIS_URL / TEST_DATABASE_URL select real servers,
# otherwise tests/conftest.py starts an embedded Valkey on var/test/valkey-<pid>/valkey.sock.
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
        _strict(name, cast)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # django-environ warns on unknown DB schemes; we raise
            value = cast(name, default=default)
        if cast == env.db_url and (value.get("ENGINE") not in _DB_ENGINES or not value.get("NAME")):
            raise ValueError("use postgres://user:password@host:5432/name or sqlite:////absolute/path.db")
        return value
    except (ValueError, TypeError, ImproperlyConfigured) as exc:
        shown = _hide_password(os.environ.get(name))
        raise ImproperlyConfigured(f"{name}: invalid value {shown!r} ({_hide_password(str(exc))})") from exc


def _hide_password(text: str | None) -> str | None:
    """user:secret@host -> user:***@host, so an error message never prints a password."""
    return re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", text) if text else text


# django-environ is lenient where a typo should stop start-up: bool() takes anything that is
# not a known "true" word as False (DJANGO_DEBUG=maybe), float() drops non-digits ("5s" -> 5).
_BOOL_WORDS = {*environ.Env.BOOLEAN_TRUE_STRINGS, "false", "off", "no", "n", "0", ""}
# The database drivers the platform installs (psycopg, the stdlib's sqlite3).
_DB_ENGINES = {"django.db.backends.postgresql", "django.db.backends.sqlite3"}


def _strict(name: str, cast) -> None:
    raw = os.environ.get(name)
    if raw is None:
        return
    if cast == env.bool and raw.strip().lower() not in _BOOL_WORDS:
        raise ValueError("expected true or false")
    if cast == env.float:
        float(raw)


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
    # One file per pytest process, so concurrent test sessions on one machine never collide.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-db-{os.getpid()}.sqlite3")}
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", 60)
    # An unreachable database must fail fast, not hold a request or a health probe for minutes.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- redis / valkey: broker, results, channel layer, cache -------------------------------------
EMBEDDED_REDIS_SOCKET = VAR_DIR / (f"valkey-{os.getpid()}" if TESTING else "valkey") / "valkey.sock"
REDIS_URL = _env("REDIS_URL", env.str, "")
REDIS_EMBEDDED = not REDIS_URL
try:
    REDIS = parse_redis_url(REDIS_URL or f"unix://{EMBEDDED_REDIS_SOCKET}")
except ValueError as exc:
    raise ImproperlyConfigured(f"REDIS_URL: {_hide_password(str(exc))}") from exc

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
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns at start-up when it is missing
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
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # torchao 0.18 on a CPU-only torch warns at import that its CUDA kernels do not load, and
        # torch deprecates an Enum registration torchao makes: noise in every worker's output.
        "torchao": {"level": "ERROR"},
        "torch.utils._pytree": {"level": "ERROR"},
    },
}

# --- runs (issue 4): engine timings, worker heartbeats, broker redelivery ---------------------
# A running node's worker writes a heartbeat every LLMOPS_HEARTBEAT_S; a node silent for
# LLMOPS_STALE_AFTER_S is presumed lost (SIGKILL, OOM, power) and re-queued by the reaper, which
# runs every LLMOPS_REAPER_INTERVAL_S in every worker's pool processes and as a beat task. After
# LLMOPS_NODE_MAX_ATTEMPTS lost attempts the node fails instead.
LLMOPS_HEARTBEAT_S = _env("LLMOPS_HEARTBEAT_S", env.float, 5.0)
LLMOPS_STALE_AFTER_S = _env("LLMOPS_STALE_AFTER_S", env.float, 30.0)
LLMOPS_REAPER_INTERVAL_S = _env("LLMOPS_REAPER_INTERVAL_S", env.float, 15.0)
LLMOPS_NODE_MAX_ATTEMPTS = _env("LLMOPS_NODE_MAX_ATTEMPTS", env.int, 3)
# Progress events per node are throttled to one per interval (metrics, logs and state changes
# are never dropped); 0.25 s is four a second, smooth enough for a progress bar.
LLMOPS_PROGRESS_INTERVAL_S = _env("LLMOPS_PROGRESS_INTERVAL_S", env.float, 0.25)
# A worker that finishes a node runs a ready successor on the same queue itself, without the
# broker round trip, when no other message waits on that queue (false: every node is queued).
LLMOPS_LOCAL_CONTINUATION = _env("LLMOPS_LOCAL_CONTINUATION", env.bool, True)
# A cancelled node that ignores ctx.cancelled() this long gets its worker process killed.
LLMOPS_CANCEL_GRACE_S = _env("LLMOPS_CANCEL_GRACE_S", env.float, 120.0)
LLMOPS_WORK_DIR = Path(_env("LLMOPS_WORK_DIR", env.str, str(VAR_DIR / "work")))
LLMOPS_ARTIFACT_CACHE_DIR = VAR_DIR / "cache" / "artifacts"  # remote-storage downloads
# Redis transport: a message a worker took but never acknowledged (the whole worker was
# SIGKILLed) goes back to its queue after visibility_timeout, checked every restore interval.
# Kombu's default is one hour; 5 minutes is short enough not to strand a run, long enough that
# healthy long nodes are rarely re-delivered (a re-delivered duplicate is a no-op: the node's
# claim is a conditional UPDATE). The heartbeat reaper usually recovers a lost node sooner.
LLMOPS_BROKER_VISIBILITY_TIMEOUT = _env("LLMOPS_BROKER_VISIBILITY_TIMEOUT", env.int, 300)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": LLMOPS_BROKER_VISIBILITY_TIMEOUT,
    "unacked_restore_interval": min(10, LLMOPS_BROKER_VISIBILITY_TIMEOUT),
    "unacked_restore_throttle": 1,
}

# --- knowledge (issue 5): search answers, knowledge worker tasks ------------------------------
# The web waits this long for a serve worker's search answer, then answers 503 with the reason
# (no serve worker, or one still loading the embedding model: ~5-8 s on 2 CPU cores).
LLMOPS_SEARCH_TIMEOUT_S = _env("LLMOPS_SEARCH_TIMEOUT_S", env.float, 10.0)

# --- catalog (issue 6): models and datasets ----------------------------------------------------
# Models built or registered on this machine; the bundled demo model is built into
# LLMOPS_MODELS_DIR/demo by `llmops demo-model` (or by the first run that uses it).
LLMOPS_MODELS_DIR = Path(_env("LLMOPS_MODELS_DIR", env.str, str(VAR_DIR / "models"))).resolve()
LLMOPS_DEMO_MODEL_DIR = LLMOPS_MODELS_DIR / "demo"
# Pre-training steps when a worker has to build the demo model itself (tests lower it: the
# model's shape is the same, it only generates less fluent words).
LLMOPS_DEMO_STEPS = _env("LLMOPS_DEMO_STEPS", env.int, 300)
# A model registered (or used) by local path must be inside one of these folders: a workspace
# member must not be able to point the workers at arbitrary files of the machine.
LLMOPS_MODEL_ROOTS = [
    Path(p).resolve() for p in _env("LLMOPS_MODEL_ROOTS", env.list, [str(LLMOPS_MODELS_DIR)])
]

# --- endpoints (issue 8): serving requests through serve workers ------------------------------
# A request no serve worker accepts within LLMOPS_SERVE_ACCEPT_TIMEOUT_S is answered 503 with
# Retry-After (never a hung request); an accepted one gets LLMOPS_SERVE_TIMEOUT_S in all (504).
LLMOPS_SERVE_ACCEPT_TIMEOUT_S = _env("LLMOPS_SERVE_ACCEPT_TIMEOUT_S", env.float, 10.0)
LLMOPS_SERVE_TIMEOUT_S = _env("LLMOPS_SERVE_TIMEOUT_S", env.float, 120.0)
# Each serve worker process keeps this many services (model + index) warm, least recently used
# evicted, and answers up to LLMOPS_SERVE_MAX_BATCH waiting requests of one service together.
LLMOPS_SERVE_CACHE_SIZE = _env("LLMOPS_SERVE_CACHE_SIZE", env.int, 2)
LLMOPS_SERVE_MAX_BATCH = _env("LLMOPS_SERVE_MAX_BATCH", env.int, 16)
