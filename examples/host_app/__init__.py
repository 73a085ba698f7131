"""An example booking platform ("Boka Lugnt") with Samtycke installed.

Run it with ``python -m examples.host_app`` (see ``README.md`` here).  The
platform finds its apps through the ``booking.apps`` entry-point group; every
line that knows about apps is in :mod:`examples.host_app.apps_glue`.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, g, request, url_for
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.security import generate_password_hash
from werkzeug.wrappers import Response

from examples.host_app import i18n, sign_in
from examples.host_app.apps_glue import Apps, PlatformHost, dev_mailbox
from examples.host_app.database import make_engine, make_sessions, migrate
from examples.host_app.inputs import FieldError, IdConverter, PlatformRequest, check_request_text
from examples.host_app.runtime import Platform, current_language, current_staff
from examples.host_app.security import CSRFError, check_csrf, csrf_token

log = logging.getLogger(__name__)

CSP = ("default-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; object-src 'none'")

ERRORS = {
    400: (i18n.mark("The request could not be understood."),
          i18n.mark("Go back, reload the page and try again.")),
    403: (i18n.mark("You are not allowed to do this."),
          i18n.mark("Ask the practice owner if you need access.")),
    404: (i18n.mark("The page was not found."),
          i18n.mark("Check the address, or start again from the start page.")),
    405: (i18n.mark("This page cannot be used like that."),
          i18n.mark("Go back and use the buttons on the page.")),
    413: (i18n.mark("What you sent is too large."),
          i18n.mark("Shorten the text and try again.")),
    500: (i18n.mark("Something went wrong on our side."),
          i18n.mark("Nothing more was saved. Try again in a moment.")),
}
CSRF_MESSAGE = (i18n.mark("The form had expired."),
                i18n.mark("Nothing was saved. Reload the page and send the form again."))


def settings_from_env(instance: Path, overrides: Mapping[str, Any]) -> dict[str, Any]:
    env = os.environ
    smtp_host = env.get("BOOKING_SMTP_HOST", "")
    settings: dict[str, Any] = {
        "DATABASE_URL": env.get("BOOKING_DATABASE_URL")
        or f"sqlite:///{instance / 'booking.sqlite'}",
        "SECRET_KEY": env.get("BOOKING_SECRET_KEY") or "",
        "BASE_URL": env.get("BOOKING_BASE_URL") or "http://127.0.0.1:5000",
        "DEV_MAILBOX": not smtp_host,
        "SMTP_HOST": smtp_host,
        "SMTP_PORT": int(env.get("BOOKING_SMTP_PORT") or 587),
        "SMTP_USER": env.get("BOOKING_SMTP_USER", ""),
        "SMTP_PASSWORD": env.get("BOOKING_SMTP_PASSWORD", ""),
        "SMTP_FROM": env.get("BOOKING_SMTP_FROM", "bokning@localhost"),
        "SMTP_STARTTLS": env.get("BOOKING_SMTP_STARTTLS", "1") not in ("0", "false", "no"),
        "COOKIE_SECURE": _flag(env.get("BOOKING_COOKIE_SECURE")),
        "MIGRATE": True,
        "STRICT_APPS": False,
        **sign_in.DEFAULTS,
    }
    settings.update(overrides)
    if not settings["SECRET_KEY"]:
        settings["SECRET_KEY"] = _instance_secret(instance)
    if settings["COOKIE_SECURE"] is None:  # unset: Secure whenever the site is served over https
        settings["COOKIE_SECURE"] = str(settings["BASE_URL"]).lower().startswith("https://")
    return settings


def _flag(value: str | None) -> bool | None:
    if value is None or not value.strip():
        return None
    return value.strip().lower() not in ("0", "false", "no", "off")


def _instance_secret(instance: Path) -> str:
    """A random key kept in the instance folder, so sign-ins survive a restart."""
    path = instance / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def create_app(overrides: Mapping[str, Any] | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=True)
    app.request_class = PlatformRequest  # a broken encoding shows (see inputs.FormParser)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    settings = settings_from_env(Path(app.instance_path), overrides or {})
    app.config.update(
        SECRET_KEY=settings["SECRET_KEY"],
        SESSION_COOKIE_NAME="booking_session",
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SECURE=bool(settings["COOKIE_SECURE"]),
        MAX_CONTENT_LENGTH=256 * 1024,
    )
    settings["DUMMY_HASH"] = generate_password_hash(secrets.token_hex(8))

    engine = make_engine(settings["DATABASE_URL"])
    if settings["MIGRATE"]:
        migrate(engine)
    sessions = make_sessions(engine)
    host = PlatformHost(sessions, secret_key=settings["SECRET_KEY"].encode(),
                        base_url=settings["BASE_URL"],
                        mailbox=dev_mailbox if settings["DEV_MAILBOX"] else None)
    apps = Apps(host, strict=settings["STRICT_APPS"])
    app.extensions["booking"] = Platform(engine=engine, sessions=sessions, host=host, apps=apps,
                                         settings=settings)

    from examples.host_app import views_dev, views_public, views_staff

    app.url_map.converters["id"] = IdConverter  # before the routes that use <id:...>
    app.register_blueprint(views_public.bp)
    app.register_blueprint(views_staff.bp)
    app.register_blueprint(views_dev.bp)
    apps.mount(app, locale=current_language, sign_in=lambda: url_for("public.login"),
               home=lambda: (url_for("staff.dashboard"), "Praktika"), exports="/clients")

    app.jinja_env.add_extension("jinja2.ext.i18n")
    app.jinja_env.install_gettext_callables(  # type: ignore[attr-defined]
        gettext=i18n.gettext, ngettext=i18n.ngettext, newstyle=True)
    app.jinja_env.globals.update(
        csrf_token=csrf_token, current_staff=current_staff, current_language=current_language,
        day_label=i18n.day_label, time_label=i18n.time_label, when_label=i18n.when_label,
    )

    @app.before_request
    def _before() -> None:
        g.lang = current_language()
        endpoint = request.endpoint or ""
        if not endpoint.startswith("app_mount:"):  # the apps' pages check their own
            check_request_text()
            if request.method == "POST":
                check_csrf()

    @app.after_request
    def _after(response: Response) -> Response:
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault("Content-Security-Policy", CSP)
        headers.setdefault("Cache-Control", "no-store")
        headers.setdefault("Content-Language", current_language())
        if request.method == "POST" and settings["DEV_MAILBOX"]:
            sessions().rollback()
            apps.send_outbox()  # demo mode: deliver queued app mail at once
        return response

    @app.teardown_request
    def _teardown(_exc: BaseException | None) -> None:
        sessions.remove()

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Any:
        from flask import render_template

        sessions().rollback()
        code = exc.code or 500
        if code in (301, 302, 303, 307, 308):
            return exc
        title, message = CSRF_MESSAGE if isinstance(exc, CSRFError) else ERRORS.get(
            code, ERRORS[400 if code < 500 else 500])
        if isinstance(exc, FieldError):
            message = exc.message  # already translated: it names the field
        return render_template("error.html", title=title, message=message, code=code), code

    @app.errorhandler(Exception)
    def _error(exc: Exception) -> Any:
        log.exception("unhandled error in %s %s", request.method, apps.log_path(request.path))
        return _http_error(InternalServerError())

    return app
