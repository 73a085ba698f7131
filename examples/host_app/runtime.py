"""The platform object of one running booking site (engine, sessions, host, apps)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from flask import current_app, g, session
from sqlalchemy import Engine
from sqlalchemy.orm import Session, scoped_session

from examples.host_app.models import Staff
from examples.host_app.sign_in import live_staff

if TYPE_CHECKING:
    from examples.host_app.apps_glue import Apps, PlatformHost

LANGUAGES = ("sv", "en")


@dataclass
class Platform:
    engine: Engine
    sessions: scoped_session[Session]
    host: PlatformHost
    apps: Apps
    settings: dict[str, Any]

    def db(self) -> Session:
        return self.sessions()

    def now(self) -> datetime:
        """The platform's clock: the one it shares with its apps (tests move it)."""
        return self.host.now()


def platform() -> Platform:
    found: Platform = current_app.extensions["booking"]
    return found


def db() -> Session:
    return platform().db()


def current_language() -> str:
    chosen = session.get("lang")
    return chosen if chosen in LANGUAGES else "sv"


def current_staff() -> Staff | None:
    """The signed-in practitioner (loaded once per request), or None."""
    if "staff" not in g:
        staff_id, sid = session.get("staff_id"), session.get("sid")
        staff = None
        if isinstance(staff_id, int) and isinstance(sid, str):
            # only a session the server still holds as live: signing out ends it for
            # every copy of the cookie
            site = platform()
            staff = live_staff(db(), staff_id, sid, site.now(), site.settings)
        if staff is not None and session.get("staff_key") != staff.password_hash[-16:]:
            staff = None  # the password changed since sign-in: sign in again
        g.staff = staff
    found: Staff | None = g.staff
    return found
