"""The example platform (``examples/host_app``) as the benchmark drives it: its Flask app
on the benchmark's database, its real request handlers through Flask's test client.

Three things are set up around it, none of them inside its request handlers:

* Mail as in production: the platform's own booking confirmation goes into its mailbox
  table in the booking's transaction, and the app's mail stays in the app's outbox for
  a background relay (the example's demo mode would send the outbox after every POST,
  inside the request; the relay is not part of any figure).
* A clock that hands out booking slots: the platform has one treatment room per practice,
  so each booking needs a free hour; :class:`SlotClock` gives every booking its own slot
  a week ahead of the platform's "now", which moves with the slots.
* The C4 baseline page: the platform's client list where the host filters "without
  valid consent" with hand-written SQL of the same meaning and shows no app badges.
"""

from __future__ import annotations

import re
import threading
from datetime import date, datetime, time, timedelta
from typing import Any

from flask import Blueprint, Flask, render_template, request
from flask.testing import FlaskClient
from sqlalchemy import bindparam, func, select, text

from bench.generate import NOW, PASSWORD
from examples.host_app import create_app
from examples.host_app.models import Client
from examples.host_app.runtime import current_staff, db, platform
from examples.host_app.scheduling import OPENING_HOURS, ZONE, slot_value
from examples.host_app.security import login_required
from examples.host_app.testing import csrf_from, platform_of
from samtycke_plugin.models import ConsentStateRow

SECRET = "bench-secret-" + "k" * 40
FILTER_NOT_VALID = "samtycke.not_valid"
PAGE_SIZE = 50


class SlotClock:
    """The platform's clock and a free booking slot for each booking, thread-safe.

    Slot ``k`` is the k-th weekday opening hour from a week after :data:`NOW`.  In the
    thread that took a slot the clock reads one week before it, so the slot lies in the
    booking page's 14-day window even when that thread's request waits long for the
    database while other threads book on (each thread's time only moves forward)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: list[datetime] = []
        self._day = (NOW + timedelta(days=8)).astimezone(ZONE).date()
        self._next = 0
        self._local = threading.local()

    def __call__(self) -> datetime:
        now: datetime = getattr(self._local, "now", NOW)
        return now

    def next_slot(self) -> datetime:
        with self._lock:
            while self._next >= len(self._slots):
                self._add_day()
            slot = self._slots[self._next]
            self._next += 1
        self._local.now = slot - timedelta(days=7)
        return slot

    def _add_day(self) -> None:
        day: date = self._day
        self._day = day + timedelta(days=1)
        if day.weekday() < 5:
            self._slots.extend(datetime.combine(day, time(hour), tzinfo=ZONE)
                               for hour in OPENING_HOURS)


def _baseline_clients() -> Any:
    """The client list filtered "without valid consent" in the host's own SQL, no badges."""
    staff = current_staff()
    assert staff is not None
    tenant = str(staff.practice_id)
    page_arg = request.args.get("page", "1")
    page = int(page_arg) if page_arg.isdigit() and 0 < int(page_arg) < 100_000 else 1
    without = text(
        "NOT EXISTS (SELECT 1 FROM samtycke_consent_state s "
        "JOIN samtycke_purpose p ON p.tenant_ref = s.tenant_ref AND p.key = s.purpose_key "
        "WHERE s.tenant_ref = :tenant AND s.purpose_key = 'care' "
        "AND s.client_ref = CAST(host_client.id AS VARCHAR) "
        "AND s.state IN ('given', 'renewed') AND s.text_major = p.current_major "
        "AND (s.expires_at IS NULL OR s.expires_at > :now))"
    ).bindparams(bindparam("tenant", tenant),
                 bindparam("now", platform().host.now(),
                           type_=ConsentStateRow.__table__.c.expires_at.type))
    conditions = [Client.practice_id == staff.practice_id, without]
    total = db().scalar(select(func.count()).select_from(Client).where(*conditions)) or 0
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(page, pages)
    rows = db().scalars(
        select(Client).where(*conditions).order_by(Client.name, Client.id)
        .limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)).all()
    return render_template(
        "clients.html", rows=rows, badges={}, total=total, page=page, pages=pages,
        first=(page - 1) * PAGE_SIZE + 1 if total else 0, last=(page - 1) * PAGE_SIZE + len(rows),
        query="", filters=[(FILTER_NOT_VALID, "Klienter utan giltigt samtycke")],
        chosen=FILTER_NOT_VALID, notice=None, exports=False,
    )


def make_app(url: str, clock: SlotClock | None = None, *, migrate: bool = True) -> Flask:
    """The example platform on ``url`` (migrated), set up as the module docstring says."""
    app = create_app({"DATABASE_URL": url, "SECRET_KEY": SECRET,
                      "BASE_URL": "https://booking.example", "STRICT_APPS": True,
                      "DEV_MAILBOX": True, "SMTP_HOST": "", "MIGRATE": migrate})
    platform = platform_of(app)
    # The app's mail waits in its outbox for the relay, as in production (not sent in-request).
    platform.apps.send_outbox = lambda: 0  # type: ignore[method-assign]
    platform.host.clock = clock or (lambda: NOW)
    baseline = Blueprint("bench_baseline", __name__)
    baseline.add_url_rule("/bench/clients-without-consent", "clients",
                          login_required(_baseline_clients))
    app.register_blueprint(baseline)
    return app


def close_app(app: Flask) -> None:
    platform = platform_of(app)
    platform.sessions.remove()
    platform.engine.dispose()


def signed_in(app: Flask, email: str) -> FlaskClient:
    client = app.test_client()
    page = client.get("/login")
    response = client.post("/login", data={"email": email, "password": PASSWORD,
                                           "csrf_token": csrf_from(page.text)})
    if response.status_code != 302:
        raise RuntimeError(f"signing in as {email} failed: {response.status_code}")
    return client


_SERVICE = re.compile(r'name="service" id="service-(\d+)"')
_TEXT_ID = re.compile(r'name="samtycke_text" value="(\d+)"')


class Booker:
    """Online bookings of new clients at one practice, through the booking page's POST."""

    def __init__(self, app: Flask, slug: str, clock: SlotClock, tag: str) -> None:
        self.client = app.test_client()
        self.slug = slug
        self.clock = clock
        self.tag = tag
        self.count = 0
        #: HTTP status of each submit that did not end in the "booked" redirect.
        self.failures: dict[int, int] = {}
        page = self.client.get(f"/book/{slug}").text
        self.csrf = csrf_from(page)
        found = _SERVICE.search(page)
        if found is None:
            raise RuntimeError(f"no service on the booking page of {slug}")
        self.service = found.group(1)
        text_id = _TEXT_ID.search(page)
        #: The consent block is on the form: tick its box (new client, consent given).
        self.consent = {"samtycke_consent": "yes", "samtycke_text": text_id.group(1)} \
            if text_id else {}

    def form(self) -> dict[str, str]:
        self.count += 1
        return {"csrf_token": self.csrf, "name": f"Ny Klient {self.count}",
                "email": f"new-{self.tag}-{self.count}@bench.example", "phone": "",
                "service": self.service, "slot": slot_value(self.clock.next_slot()),
                **self.consent}

    def submit(self, form: dict[str, str]) -> bool:
        """One booking; True when the platform answered with its "booked" redirect."""
        response = self.client.post(f"/book/{self.slug}", data=form)
        if response.status_code == 302:
            return True
        self.failures[response.status_code] = self.failures.get(response.status_code, 0) + 1
        return False
