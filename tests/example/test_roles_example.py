"""The example platform's roles: the owner may do everything in the app, other staff
record consent only (``apps_glue.APP_ROLES``, and a change there changes it); a member
whose own flag withholds recording is refused that too.  The downloads of
``integrations/flask_exports.py`` need the export permission, and their links are
replaced by the reason for staff without it."""

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
from markupsafe import escape
from sqlalchemy import func, select
from werkzeug.security import generate_password_hash

ROOT = Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT))

from examples.host_app import apps_glue, create_app  # noqa: E402
from examples.host_app.models import Client, Staff  # noqa: E402
from examples.host_app.testing import activate, add_practice, csrf_from, platform_of  # noqa: E402
from hookspecs.types import Permission  # noqa: E402
from samtycke_plugin import roles  # noqa: E402
from samtycke_plugin.i18n import t  # noqa: E402
from samtycke_plugin.models import ConsentEvent  # noqa: E402

P = "/apps/samtycke"


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def platform_app(request: pytest.FixtureRequest,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    admin = url = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('roles') / 'booking.sqlite'}"
    else:
        admin = request.getfixturevalue("pg_server")
        url = create_pg_database(admin)
    app = create_app({"DATABASE_URL": url, "SECRET_KEY": "roles-" + "x" * 40,
                      "BASE_URL": "http://booking.test", "STRICT_APPS": True})
    app.config["TESTING"] = True
    yield app
    platform_of(app).sessions.remove()
    platform_of(app).engine.dispose()
    if admin is not None:
        drop_pg_database(admin, url)


def _sign_in(app: Flask, email: str, password: str) -> FlaskClient:
    browser = app.test_client()
    form = browser.get("/login")
    response = browser.post("/login", data={"email": email, "password": password,
                                            "csrf_token": csrf_from(form.text)})
    assert response.status_code == 302, response.text
    return browser


def _scalar(app: Flask, statement: Any) -> Any:
    platform = platform_of(app)
    try:
        return platform.db().execute(statement).scalar_one()
    finally:
        platform.sessions.remove()


def _practice(app: Flask) -> dict[str, Any]:
    """A practice with Samtycke set up: its owner, a barred member (the test kit's second
    staff member may not record), a recorder (role "staff") and one client."""
    practice = add_practice(platform_of(app), staff=2)
    activate(platform_of(app), practice["id"])
    platform = platform_of(app)
    recorder = f"rec-{uuid.uuid4().hex[:8]}@example.org"
    session = platform.db()
    session.add(Staff(practice_id=practice["id"], email=recorder, name="Rut Rec", role="staff",
                      can_record_consent=True,
                      password_hash=generate_password_hash(practice["password"])))
    client = Client(practice_id=practice["id"], name="Ida Ek", email="ida@example.org",
                    locale="sv", created_by="staff", created_at=datetime.now(UTC))
    session.add(client)
    session.commit()
    practice["client"] = client.id
    practice["recorder"] = recorder
    platform.sessions.remove()
    return practice


def _events(app: Flask, practice: dict[str, Any]) -> int:
    return int(_scalar(app, select(func.count()).select_from(ConsentEvent)
                       .where(ConsentEvent.tenant_ref == str(practice["id"]))))


def _record(browser: FlaskClient, client: int) -> Any:
    obtain = browser.get(f"{P}/clients/{client}/obtain").text
    return browser.post(f"{P}/clients/{client}/obtain", data={
        "action": "record", "method": "paper", "given_on": "2026-01-15", "note": "",
        "csrf_token": csrf_from(obtain)})


def test_the_owner_may_do_everything_and_staff_record_only(platform_app: Flask) -> None:
    app = platform_app
    practice = _practice(app)
    cid = practice["client"]
    owner = _sign_in(app, practice["emails"][0], practice["password"])
    recorder = _sign_in(app, practice["recorder"], practice["password"])
    barred = _sign_in(app, practice["emails"][1], practice["password"])
    pages = [f"{P}/setup", f"{P}/text", f"{P}/batch", f"{P}/clients/{cid}/history",
             "/clients/consent-status.csv", f"/clients/{cid}/consent.zip",
             f"/clients/{cid}/consent.html"]
    for path in pages:
        assert owner.get(path).status_code == 200, path
        refused = recorder.get(path)
        assert refused.status_code == 403, path
        assert "mottagningens ägare" in refused.text and "Traceback" not in refused.text

    profile = recorder.get(f"/clients/{cid}").text
    assert "consent.zip" not in profile and "consent-status.csv" not in recorder.get(
        "/clients").text
    assert str(escape(t("sv", roles.REFUSED[Permission.EXPORT]))) in profile
    assert "consent.zip" in owner.get(f"/clients/{cid}").text

    before = _events(app, practice)
    assert _record(barred, cid).status_code == 403
    assert _events(app, practice) == before
    assert _record(recorder, cid).status_code == 303
    assert _events(app, practice) == before + 1


def test_the_role_mapping_is_the_platforms_setting(platform_app: Flask,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    app = platform_app
    practice = _practice(app)
    cid = practice["client"]
    recorder = _sign_in(app, practice["recorder"], practice["password"])
    assert recorder.get(f"/clients/{cid}/consent.zip").status_code == 403
    monkeypatch.setattr(apps_glue, "APP_ROLES",
                        {"owner": ["*"], "staff": ["record_consent", "export"]})
    download = recorder.get(f"/clients/{cid}/consent.zip")
    assert download.status_code == 200 and download.data[:2] == b"PK"
    assert recorder.get(f"{P}/setup").status_code == 403
