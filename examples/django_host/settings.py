"""Django settings of the example clinic.

Configured from the environment: ``CLINIC_DATABASE_URL`` (``sqlite:///path`` or
``postgresql://user@host:port/name``; default: a SQLite file in ``instance/`` beside
this module), ``CLINIC_SECRET_KEY`` (default: a random key kept in ``instance/``),
``CLINIC_BASE_URL`` and ``CLINIC_EMAIL_BACKEND`` (default: the console).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import unquote, urlsplit

from samtycke_plugin.integrations.django import sqlite_options

HERE = Path(__file__).resolve().parent
INSTANCE = Path(os.environ.get("CLINIC_INSTANCE_DIR") or HERE / "instance")
INSTANCE.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    path = INSTANCE / "secret_key"  # kept, so sign-ins survive a restart
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def database(url: str) -> dict[str, object]:
    """A ``DATABASES`` entry from a URL."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": unquote(parts.path[1:]),
                "OPTIONS": sqlite_options()}
    return {"ENGINE": "django.db.backends.postgresql", "NAME": parts.path.lstrip("/"),
            "USER": unquote(parts.username or ""), "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "", "PORT": str(parts.port or "")}


SECRET_KEY = os.environ.get("CLINIC_SECRET_KEY") or _secret_key()
DEBUG = False
ALLOWED_HOSTS = ["*"]  # a demo on loopback; name the real host names in production
BASE_URL = os.environ.get("CLINIC_BASE_URL", "http://127.0.0.1:8000")

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "examples.django_host.clinic",
    "samtycke_plugin.integrations.django",
]
SAMTYCKE = {
    "HOST": "examples.django_host.clinic.samtycke_glue.ClinicHost",
    "BASE_URL": BASE_URL,
    # What each of the clinic's roles may do in the app (role → permission names, "*" for
    # all): the owner everything, other staff record consent only.
    "ROLES": {"owner": ["*"], "staff": ["record_consent"]},
}

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "examples.django_host.urls"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
        "examples.django_host.clinic.texts.texts",
    ]},
}]
WSGI_APPLICATION = "examples.django_host.wsgi.application"

DATABASES = {"default": database(
    os.environ.get("CLINIC_DATABASE_URL") or f"sqlite:///{INSTANCE / 'clinic.sqlite3'}")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "sv"
LANGUAGES = [("sv", "Svenska"), ("en", "English")]
USE_I18N = True
USE_TZ = True
TIME_ZONE = "Europe/Stockholm"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "clients"
LOGOUT_REDIRECT_URL = "index"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"

EMAIL_BACKEND = os.environ.get("CLINIC_EMAIL_BACKEND",
                               "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = os.environ.get("CLINIC_FROM_EMAIL", "kliniken@localhost")
EMAIL_HOST = os.environ.get("CLINIC_SMTP_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("CLINIC_SMTP_PORT") or 25)

LOGGING = {"version": 1, "disable_existing_loggers": False,
           "handlers": {"console": {"class": "logging.StreamHandler"}},
           "root": {"handlers": ["console"], "level": "WARNING"}}
