"""Helpers for testing the platform: a live server in a thread, fresh practices and
reading CSRF tokens.  Used by the repository's tests; handy for a host's own tests."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from flask import Flask
from werkzeug.security import generate_password_hash
from werkzeug.serving import BaseWSGIServer, make_server

from examples.host_app import create_app
from examples.host_app.models import Practice, Service, Staff
from examples.host_app.runtime import Platform
from examples.host_app.serving import redacting_handler

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_from(html: str) -> str:
    """The page's form token: on an app's page in the platform's layout, the app's own
    (its forms are inside ``sp-page``; the header's forms carry the platform's)."""
    found = _CSRF.search(html, max(html.find('class="sp-page"'), 0))
    if found is None:
        raise AssertionError("no CSRF token in the page")
    return found.group(1)


def platform_of(app: Flask) -> Platform:
    found: Platform = app.extensions["booking"]
    return found


def add_practice(platform: Platform, *, name: str | None = None, password: str = "test-pass",  # noqa: S107
                 staff: int = 1) -> dict[str, Any]:
    """A fresh practice with an owner (and more staff), two services, no apps active."""
    tag = uuid.uuid4().hex[:8]
    session = platform.db()
    now = datetime.now(UTC)
    practice = Practice(slug=f"p-{tag}", name=name or f"Praktik {tag}", city="Uppsala",
                        email=f"info-{tag}@example.org", phone="018-10 20 30", locale="sv",
                        created_at=now)
    session.add(practice)
    session.flush()
    emails = []
    for index in range(staff):
        email = f"{'owner' if index == 0 else 'staff'}{index}-{tag}@example.org"
        session.add(Staff(practice_id=practice.id, email=email, name=f"Behandlare {index + 1}",
                          role="owner" if index == 0 else "staff",
                          can_record_consent=index == 0,
                          password_hash=generate_password_hash(password)))
        emails.append(email)
    session.add_all([
        Service(practice_id=practice.id, name_sv="Behandling", name_en="Treatment", minutes=60,
                price_sek=800),
        Service(practice_id=practice.id, name_sv="Kort behandling", name_en="Short treatment",
                minutes=30, price_sek=450),
    ])
    session.commit()
    info = {"id": practice.id, "slug": practice.slug, "name": practice.name, "emails": emails,
            "password": password}
    platform.sessions.remove()
    return info


def activate(platform: Platform, practice_id: int, **settings: object) -> None:
    """Activate Samtycke for a practice with settings (what the setup wizard stores)."""
    platform.apps.set_active(practice_id, "samtycke", True, None, settings or
                             {"ask_new_clients": True})
    platform.db().commit()
    platform.sessions.remove()


class LiveServer:
    """The platform served by Werkzeug on a free loopback port, in a daemon thread."""

    def __init__(self, overrides: Mapping[str, Any]) -> None:
        self.app: Flask | None = None
        self.server: BaseWSGIServer = make_server(
            "127.0.0.1", 0, self._wsgi, threaded=True,
            request_handler=redacting_handler(lambda path: self.platform.apps.log_path(path)))
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.app = create_app({"BASE_URL": self.url, "STRICT_APPS": True, **overrides})
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        assert self.app is not None
        return self.app(environ, start_response)

    @property
    def platform(self) -> Platform:
        assert self.app is not None
        return platform_of(self.app)

    def __enter__(self) -> LiveServer:
        self.platform.apps.start_worker(1.0)  # batch jobs and mail, as the server runs them
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.platform.apps.worker is not None:
            self.platform.apps.worker.stop()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
        self.platform.sessions.remove()
        self.platform.engine.dispose()
