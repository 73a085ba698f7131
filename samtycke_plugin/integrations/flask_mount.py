"""The apps' WSGI pages mounted into a Flask host, and the paths a host may log.

Part of :mod:`samtycke_plugin.integrations.flask` (needs Flask): :meth:`FlaskApps.mount
<samtycke_plugin.integrations.flask.FlaskApps.mount>` adds one route per app mount.
Its view drops any ``booking.*`` key the request brought, puts the signed-in
practitioner (from the host's session, never from the request), the page language,
the host's "back" link and its sign-in page into the environ, ends the request
session's transaction and hands the request to the app.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from flask import Flask, request
from werkzeug.wrappers import Response

from hookspecs.types import TenantRef, WebMount
from samtycke_plugin import web as samtycke_web

if TYPE_CHECKING:
    from samtycke_plugin.integrations.flask import FlaskApps

#: Flask endpoints of the mounted app pages start with this: a host's own CSRF check
#: and request-text checks skip them (the apps' pages check their own).
MOUNT_ENDPOINT = "app_mount:"


def mount_pages(
    apps: FlaskApps, app: Flask, *, locale: Callable[[], str],
    home: Callable[[], tuple[str, str] | None] | None,
    sign_in: Callable[[], str] | None,
) -> list[str]:
    """Forward ``<prefix>/...`` to each app's WSGI application; returns the prefixes."""
    prefixes = []
    for mount in apps.hooks.web_mounts():
        forward = _forward(apps, mount, locale=locale, home=home, sign_in=sign_in)
        endpoint = MOUNT_ENDPOINT + mount.key
        methods = ["GET", "HEAD", "POST"]
        for exact in (mount.prefix, mount.prefix + "/"):
            app.add_url_rule(exact, endpoint, forward, methods=methods, defaults={"rest": ""})
        app.add_url_rule(mount.prefix + "/<path:rest>", endpoint, forward, methods=methods)
        prefixes.append(mount.prefix)
    return prefixes


def _forward(
    apps: FlaskApps, mount: WebMount, *, locale: Callable[[], str],
    home: Callable[[], tuple[str, str] | None] | None,
    sign_in: Callable[[], str] | None,
) -> Callable[[str], Response]:
    def forward(rest: str) -> Response:
        environ = dict(request.environ)
        environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + mount.prefix
        environ["PATH_INFO"] = request.environ["PATH_INFO"][len(mount.prefix):]
        for key in list(environ):
            if key.startswith("booking."):  # only this code sets them
                del environ[key]
        environ["booking.host"] = apps.host
        environ["booking.locale"] = locale()
        if home is not None and (link := home()) is not None:
            environ["booking.home"] = link
        if sign_in is not None:
            environ["booking.sign_in"] = sign_in()
        who = apps.signed_in()
        if who is not None:
            environ["booking.tenant"] = TenantRef(str(who.tenant))
            environ["booking.staff"] = who.staff
            environ["booking.session"] = who.session
        # The app's page runs in its own unit of work: the request's session holds no
        # transaction (nor, on SQLite, the write lock) meanwhile.
        apps.host.sessions().rollback()
        response = Response.from_app(mount.app, environ)
        if request.method == "POST" and apps.worker is not None:
            apps.worker.wake()  # the POST may have recorded a batch job
        return response

    return forward


def log_path(prefixes: list[str], path: str) -> str:
    """``path`` as the host may log it: below an app's mount only its first segment (the
    e-mailed links carry a token there, which no log may keep), and never a query string."""
    path = path.split("?", 1)[0]
    for prefix in prefixes:
        if path.startswith(prefix + "/"):
            return prefix + samtycke_web.redact_path(path[len(prefix):])
    return path
