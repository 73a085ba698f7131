"""The example platform's downloads (the Flask integration's export routes) leave one
access-log row each, naming the signed-in practitioner; another practice's download is
not found and logs nothing; another site cannot make the browser download (and log)
in the practitioner's name.  The app's access-log page shows the downloads.  SQLite
and PostgreSQL."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import create_pg_database, drop_pg_database
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

sys.path.append(str(Path(__file__).resolve().parents[2]))

from examples.host_app import create_app
from examples.host_app.models import Client, Staff
from examples.host_app.testing import activate, add_practice, csrf_from, platform_of
from hookspecs.types import StaffContext, StaffRef
from samtycke_plugin import consent
from samtycke_plugin.models import AccessLogEntry


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[Flask]:
    admin = url = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('host') / 'booking.sqlite'}"
    else:
        admin = request.getfixturevalue("pg_server")
        url = create_pg_database(admin)
    flask_app = create_app({"DATABASE_URL": url, "SECRET_KEY": "audit-" + "x" * 40,
                            "BASE_URL": "http://booking.test", "STRICT_APPS": True})
    flask_app.config["TESTING"] = True
    yield flask_app
    platform_of(flask_app).sessions.remove()
    platform_of(flask_app).engine.dispose()
    if admin is not None:
        drop_pg_database(admin, url)


def _query(app: Flask, statement: Any) -> list[Any]:
    platform = platform_of(app)
    try:
        return [tuple(r) for r in platform.db().execute(statement).all()]
    finally:
        platform.sessions.remove()


def _practice(app: Flask) -> tuple[dict[str, Any], str, str]:
    """A practice with Samtycke, one client with consent; its owner's staff ref."""
    platform = platform_of(app)
    practice = add_practice(platform, staff=1)
    activate(platform, practice["id"], ask_new_clients=True)
    session = platform.db()
    client = Client(practice_id=practice["id"], name="Vera Logg",
                    email=f"vera-{uuid.uuid4().hex[:6]}@example.org", locale="sv",
                    created_by="staff", created_at=datetime.now(UTC))
    session.add(client)
    session.commit()
    cid = str(client.id)
    owner = session.scalar(select(Staff.id).where(Staff.email == practice["emails"][0]))
    platform.sessions.remove()
    who = StaffContext(ref=StaffRef(str(owner)), name="x", can_record_consent=True)
    consent.record_manual(platform.host, str(practice["id"]), cid, who, method="paper",
                          given_at=platform.host.now(), note=None)
    platform.db().commit()
    platform.sessions.remove()
    return practice, cid, f"staff:{owner}"


def _signed_in(app: Flask, practice: dict[str, Any]) -> FlaskClient:
    browser = app.test_client()
    page = browser.get("/login").text
    response = browser.post("/login", data={"email": practice["emails"][0],
                                            "password": practice["password"],
                                            "csrf_token": csrf_from(page)})
    assert response.status_code == 302, response.text
    return browser


def _log(app: Flask, practice: dict[str, Any]) -> list[tuple[Any, ...]]:
    return _query(app, select(AccessLogEntry.actor, AccessLogEntry.action,
                              AccessLogEntry.client_ref, AccessLogEntry.via)
                  .where(AccessLogEntry.tenant_ref == str(practice["id"]))
                  .order_by(AccessLogEntry.id))


KINDS = {"json": "download_json", "csv": "download_csv", "html": "view_proof_page",
         "zip": "download_bundle"}


def test_each_download_leaves_one_row_naming_the_practitioner(app: Flask) -> None:
    practice, cid, actor = _practice(app)
    staff = _signed_in(app, practice)
    expected = []
    for kind, action in KINDS.items():
        response = staff.get(f"/clients/{cid}/consent.{kind}")
        assert response.status_code == 200, kind
        expected.append((actor, action, cid, "download"))
        assert _log(app, practice) == expected
    status = staff.get("/clients/consent-status.csv")
    assert status.status_code == 200 and "Vera Logg" in status.text
    expected.append((actor, "export_status_list", None, "download"))
    assert _log(app, practice) == expected
    page = staff.get("/apps/samtycke/access-log")
    assert page.status_code == 200
    assert "Laddade ner bevispaketet" in page.text and "Nedladdning i bokningssystemet" in page.text


def test_another_practice_or_another_site_logs_nothing(app: Flask) -> None:
    practice, cid, _actor = _practice(app)
    other, _other_cid, _ = _practice(app)
    stranger = _signed_in(app, other)
    for kind in KINDS:
        assert stranger.get(f"/clients/{cid}/consent.{kind}").status_code == 404
    assert _log(app, practice) == [] and _log(app, other) == []
    staff = _signed_in(app, practice)
    fetched = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}
    assert staff.get(f"/clients/{cid}/consent.zip", headers=fetched).status_code == 403
    assert staff.get("/clients/consent-status.csv", headers=fetched).status_code == 403
    assert _log(app, practice) == []
    assert app.test_client().get(f"/clients/{cid}/consent.json").status_code in (302, 404)
    assert _log(app, practice) == []
