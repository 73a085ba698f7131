"""The example platform's booking reminders and "may not be contacted" marks: it asks the
consent app whether each client consented to the ``reminders`` purpose, one lookup per
practice and batch (or page), on SQLite and PostgreSQL."""

from __future__ import annotations

import re
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import create_pg_database, drop_pg_database
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, event, select

ROOT = Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT))

from examples.host_app import reminders  # noqa: E402
from examples.host_app.__main__ import remind  # noqa: E402
from examples.host_app.models import Booking, Client, DevMail, Service  # noqa: E402
from examples.host_app.scheduling import ZONE, local  # noqa: E402
from examples.host_app.testing import activate, add_practice, csrf_from, platform_of  # noqa: E402
from hookspecs.types import StaffContext, StaffRef  # noqa: E402
from samtycke_plugin import consent, purposes  # noqa: E402
from samtycke_plugin.purpose_catalogue import REMINDERS  # noqa: E402

SECRET = "reminders-" + "x" * 40
#: The consent lookup's statement: the purpose's row outer-joined to the clients' states.
LOOKUP = re.compile(r"FROM samtycke_purpose LEFT OUTER JOIN samtycke_consent_state", re.I)


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def app(request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    admin = url = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('remind') / 'booking.sqlite'}"
    else:
        admin = request.getfixturevalue("pg_server")
        url = create_pg_database(admin)
    flask_app = create_app_for(url)
    yield flask_app
    platform_of(flask_app).sessions.remove()
    platform_of(flask_app).engine.dispose()
    if admin is not None:
        drop_pg_database(admin, url)


def create_app_for(url: str) -> Flask:
    from examples.host_app import create_app

    flask_app = create_app({"DATABASE_URL": url, "SECRET_KEY": SECRET,
                            "BASE_URL": "http://booking.test", "STRICT_APPS": True})
    flask_app.config["TESTING"] = True
    return flask_app


def signed_in(app: Flask, practice: dict[str, Any]) -> FlaskClient:
    browser = app.test_client()
    page = browser.get("/login")
    response = browser.post("/login", data={"email": practice["emails"][0],
                                            "password": practice["password"],
                                            "csrf_token": csrf_from(page.text)})
    assert response.status_code == 302, response.text
    return browser


def tomorrow_at(app: Flask, hour: int) -> datetime:
    now = platform_of(app).now()
    day = local(now).date() + timedelta(days=1)
    return datetime.combine(day, time(hour), tzinfo=ZONE)


def setup_practice(app: Flask, *, samtycke: bool, reminders_purpose: bool
                   ) -> tuple[dict[str, Any], dict[str, int]]:
    """A practice whose clients have bookings tomorrow: ``valid`` agreed to reminders,
    ``withdrawn`` agreed and withdrew, ``never`` was not asked, ``no_email`` agreed but
    has no address; ``later`` agreed and books the day after tomorrow."""
    platform = platform_of(app)
    practice = add_practice(platform)
    if samtycke:
        activate(platform, practice["id"])
    session, host, tenant = platform.db(), platform.host, str(practice["id"])
    if reminders_purpose:
        purposes.add(session, tenant, key=REMINDERS.key, names={"sv": REMINDERS.name.sv},
                     legal_basis={"sv": REMINDERS.legal_basis.sv}, required=False,
                     validity_days=None,
                     bodies={"sv": REMINDERS.text("sv", practice_name=practice["name"],
                                                  practice_contact="018-10 20 30")},
                     actor="staff:1", now=platform.now())
        session.commit()
    service = session.scalars(select(Service).where(
        Service.practice_id == practice["id"])).first()
    assert service is not None
    ids: dict[str, int] = {}
    for hour, name in enumerate(("valid", "withdrawn", "never", "no_email", "later"), start=9):
        email = None if name == "no_email" else f"{name}-{uuid.uuid4().hex[:6]}@example.org"
        client = Client(practice_id=practice["id"], name=name.title(), email=email,
                        locale="en" if name == "valid" else "sv", created_by="staff",
                        created_at=platform.now())
        session.add(client)
        session.flush()
        start = tomorrow_at(app, hour) + timedelta(days=1 if name == "later" else 0)
        session.add(Booking(practice_id=practice["id"], client_id=client.id,
                            service_id=service.id, starts_at=start,
                            ends_at=start + timedelta(minutes=60), channel="staff",
                            created_at=platform.now()))
        ids[name] = client.id
    session.commit()
    if samtycke and reminders_purpose:
        owner = StaffContext(ref=StaffRef("1"), name="Ägare", can_record_consent=True)
        for name in ("valid", "withdrawn", "no_email", "later"):
            consent.record_manual(host, tenant, str(ids[name]), owner, method="paper",
                                  given_at=platform.now() - timedelta(days=3), note=None,
                                  purpose=REMINDERS.key)
            session.commit()
        consent.withdraw(host, tenant, str(ids["withdrawn"]), actor="staff:1",
                         channel="manual", method="email", by_client=True,
                         purpose=REMINDERS.key)
        session.commit()
    platform.sessions.remove()
    return practice, ids


def mail_to(app: Flask, practice_id: int) -> list[DevMail]:
    platform = platform_of(app)
    try:
        return list(platform.db().scalars(select(DevMail).where(
            DevMail.practice_id == practice_id, DevMail.source == "platform")))
    finally:
        platform.sessions.remove()


class Statements:
    """The consent lookups' statements run while counting (on any engine: the app runs
    its statements through its own engine over the platform's connection)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def _record(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if LOOKUP.search(" ".join(statement.split())):
            self.seen.append(statement)

    def __enter__(self) -> Statements:
        event.listen(Engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(Engine, "before_cursor_execute", self._record)


def test_reminders_go_only_to_clients_with_valid_reminders_consent(app: Flask) -> None:
    practice, ids = setup_practice(app, samtycke=True, reminders_purpose=True)
    browser = signed_in(app, practice)
    dashboard = browser.get("/dashboard").text
    rows = dict((int(c), k) for k, c in re.findall(
        r'data-reminder="(\w+)">\s*<span class="time">[^<]*</span>\s*<a href="/clients/(\d+)"',
        dashboard))
    assert rows == {ids["valid"]: "due", ids["withdrawn"]: "not_allowed",
                    ids["never"]: "not_allowed", ids["no_email"]: "no_email"}
    assert "Får inte kontaktas" in dashboard

    with Statements() as statements:
        sent = browser.post("/reminders", data={"csrf_token": csrf_from(dashboard)})
    assert sent.status_code == 302
    assert len(statements.seen) == 1  # one lookup for the whole batch
    mails = mail_to(app, practice["id"])
    assert len(mails) == 1 and mails[0].to.startswith("valid-")
    assert mails[0].subject == f"Reminder: your booking at {practice['name']} tomorrow"
    assert "A reminder of your booking tomorrow:" in mails[0].text  # the client's language
    flashed = browser.get("/dashboard").text
    assert "Skickade påminnelser: 1. Inte påminda: 3." in flashed
    assert 'data-reminder="sent">' in flashed

    again = browser.post("/reminders", data={"csrf_token": csrf_from(flashed)})
    assert again.status_code == 302 and len(mail_to(app, practice["id"])) == 1  # never twice


def test_a_client_who_withdraws_gets_no_reminder_and_one_who_agrees_gets_one(app: Flask) -> None:
    practice, ids = setup_practice(app, samtycke=True, reminders_purpose=True)
    platform = platform_of(app)
    tenant = str(practice["id"])
    consent.withdraw(platform.host, tenant, str(ids["valid"]), actor="client",
                     channel="link", method=None, by_client=True, purpose=REMINDERS.key)
    owner = StaffContext(ref=StaffRef("1"), name="Ägare", can_record_consent=True)
    consent.record_manual(platform.host, tenant, str(ids["never"]), owner, method="verbal",
                          given_at=platform.now(), note=None, purpose=REMINDERS.key)
    platform.db().commit()
    platform.sessions.remove()
    browser = signed_in(app, practice)
    browser.post("/reminders", data={"csrf_token": csrf_from(browser.get("/dashboard").text)})
    assert [m.to.split("-")[0] for m in mail_to(app, practice["id"])] == ["never"]


def test_the_client_list_marks_who_may_not_be_contacted_with_one_lookup(app: Flask) -> None:
    practice, ids = setup_practice(app, samtycke=True, reminders_purpose=True)
    browser = signed_in(app, practice)
    with Statements() as statements:
        page = browser.get("/clients").text
    assert len(statements.seen) == 1  # one lookup for the page of clients
    rows = dict(re.findall(r'<tr data-client="(\d+)">(.*?)</tr>', page, re.S))
    marked = {int(c) for c, row in rows.items() if "data-no-contact" in row}
    assert marked == {ids["withdrawn"], ids["never"]}
    assert "Får inte kontaktas" in rows[str(ids["never"])]
    assert "inget giltigt samtycke till påminnelser" in page


def test_a_practice_without_the_app_reminds_everyone_with_an_address(app: Flask) -> None:
    practice, _ids = setup_practice(app, samtycke=False, reminders_purpose=False)
    browser = signed_in(app, practice)
    assert "data-no-contact" not in browser.get("/clients").text  # the platform's own rule
    browser.post("/reminders", data={"csrf_token": csrf_from(browser.get("/dashboard").text)})
    assert sorted(m.to.split("-")[0] for m in mail_to(app, practice["id"])) == [
        "never", "valid", "withdrawn"]


def test_a_practice_with_the_app_but_no_reminders_purpose_reminds_nobody(app: Flask) -> None:
    practice, _ids = setup_practice(app, samtycke=True, reminders_purpose=False)
    browser = signed_in(app, practice)
    page = browser.get("/clients").text
    rows = dict(re.findall(r'<tr data-client="(\d+)">(.*?)</tr>', page, re.S))
    assert all("data-no-contact" in row for row in rows.values()) and len(rows) == 5
    browser.post("/reminders", data={"csrf_token": csrf_from(browser.get("/dashboard").text)})
    assert mail_to(app, practice["id"]) == []


def test_the_remind_command_sends_each_practices_reminders_once(
        app: Flask, capsys: pytest.CaptureFixture[str]) -> None:
    practice, ids = setup_practice(app, samtycke=True, reminders_purpose=True)
    remind(app)
    out = capsys.readouterr().out
    assert (f"{practice['name']}: 1 reminder(s) sent, 2 client(s) may not be contacted, "
            "1 without an e-mail address") in out
    assert [m.to.split("-")[0] for m in mail_to(app, practice["id"])] == ["valid"]
    remind(app)
    assert f"{practice['name']}: 0 reminder(s) sent" in capsys.readouterr().out
    assert len(mail_to(app, practice["id"])) == 1
    platform = platform_of(app)
    sent = platform.db().scalars(select(Booking.reminder_sent_at).where(
        Booking.client_id == ids["valid"])).one()
    platform.sessions.remove()
    assert sent is not None and reminders.PURPOSE == REMINDERS.key
