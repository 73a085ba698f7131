"""Sign-in throttling and live sessions (kept on the server, ended by signing out).

Throttling counts wrong passwords per account (the address typed, known or not) and
per source address.  After ``SIGN_IN_MAX_ACCOUNT`` failures for an account, or
``SIGN_IN_MAX_SOURCE`` from one source, within ``SIGN_IN_WINDOW`` seconds, further
attempts are refused, the right password included, until the oldest failure has
aged out of the window.  A successful sign-in clears the account's failures.

Each attempt is recorded before its password is checked and committed at once, so a
burst of simultaneous attempts cannot all slip under the limit; refused attempts
remove their record again, so they do not stretch the lockout.
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from examples.host_app.models import SignInFailure, Staff, StaffSession

DEFAULTS: dict[str, int] = {
    "SIGN_IN_MAX_ACCOUNT": 10,
    "SIGN_IN_MAX_SOURCE": 50,
    "SIGN_IN_WINDOW": 15 * 60,
    "SESSION_LIFETIME": 12 * 60 * 60,
}


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def account_subject(email: str) -> str:
    return _digest("account:" + email.strip().lower())


def source_subject(address: str | None) -> str:
    """IPv6 sources count per /64: one machine usually has the whole block."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return _digest("source:" + (address or "-"))
    if ip.version == 6:
        return _digest("source:" + str(ipaddress.ip_network(f"{ip}/64", strict=False)))
    return _digest("source:" + str(ip))


class Attempt:
    """One sign-in attempt: recorded as a failure until :meth:`succeeded` says otherwise."""

    def __init__(self, session: Session, settings: dict[str, Any], now: datetime, *,
                 email: str, source: str | None) -> None:
        self.session = session
        self.account = account_subject(email)
        self.source = source_subject(source)
        window = timedelta(seconds=int(settings.get("SIGN_IN_WINDOW",
                                                    DEFAULTS["SIGN_IN_WINDOW"])))
        self.since = now - window
        self.window_minutes = max(1, -(-int(window.total_seconds()) // 60))
        self.limits = {
            self.account: int(settings.get("SIGN_IN_MAX_ACCOUNT",
                                           DEFAULTS["SIGN_IN_MAX_ACCOUNT"])),
            self.source: int(settings.get("SIGN_IN_MAX_SOURCE", DEFAULTS["SIGN_IN_MAX_SOURCE"])),
        }
        session.execute(delete(SignInFailure).where(SignInFailure.failed_at < self.since))
        rows = [SignInFailure(subject=subject, failed_at=now) for subject in self.limits]
        session.add_all(rows)
        session.flush()
        self.ids = [row.id for row in rows]
        session.commit()

    def allowed(self) -> bool:
        """False when the account or the source has used up its attempts; the attempt
        then leaves no record of its own."""
        counts: dict[str, int] = {
            subject: count for subject, count in self.session.execute(
                select(SignInFailure.subject, func.count())
                .where(SignInFailure.subject.in_(list(self.limits)),
                       SignInFailure.failed_at >= self.since)
                .group_by(SignInFailure.subject))}
        if all(counts.get(subject, 0) <= limit for subject, limit in self.limits.items()):
            return True
        self._forget(SignInFailure.id.in_(self.ids))
        return False

    def failed(self) -> None:
        self.session.rollback()  # the failure rows are committed already

    def succeeded(self) -> None:
        """The account's failures are forgotten; the source's earlier ones still count."""
        self._forget((SignInFailure.subject == self.account) | SignInFailure.id.in_(self.ids))

    def _forget(self, condition: Any) -> None:
        self.session.execute(delete(SignInFailure).where(condition))
        self.session.commit()


# -- live sessions ---------------------------------------------------------------------------


def sid_hash(sid: str) -> str:
    return _digest("sid:" + sid)


def new_session_id() -> str:
    return secrets.token_urlsafe(32)


def start_session(session: Session, staff: Staff, sid: str, now: datetime,
                  settings: dict[str, Any]) -> None:
    """Record ``sid`` as live for ``staff`` (expired sign-ins are cleared on the way)."""
    session.execute(delete(StaffSession).where(StaffSession.created_at < _oldest(now, settings)))
    session.add(StaffSession(sid_hash=sid_hash(sid), staff_id=staff.id, created_at=now))
    session.commit()


def live_staff(session: Session, staff_id: int, sid: str, now: datetime,
               settings: dict[str, Any]) -> Staff | None:
    """The staff member of a live session, or None (signed out, expired or unknown)."""
    return session.scalar(
        select(Staff).join(StaffSession, StaffSession.staff_id == Staff.id)
        .where(Staff.id == staff_id, StaffSession.sid_hash == sid_hash(sid),
               StaffSession.created_at >= _oldest(now, settings)))


def end_session(session: Session, sid: str) -> None:
    session.execute(delete(StaffSession).where(StaffSession.sid_hash == sid_hash(sid)))
    session.commit()


def _oldest(now: datetime, settings: dict[str, Any]) -> datetime:
    lifetime = int(settings.get("SESSION_LIFETIME", DEFAULTS["SESSION_LIFETIME"]))
    return now - timedelta(seconds=lifetime)
