"""The example platform's roles: the owner may do everything in the app, other staff
record consent only (``apps_glue.APP_ROLES``, and a change there changes it); a member
whose own flag withholds recording is refused that too.  The downloads of
``integrations/flask_exports.py`` need the export permission, and their links are
replaced by the reason for staff without it."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from example_support import BACKENDS, example_platform
from flask import Flask
from flask.testing import FlaskClient
from markupsafe import escape
from sqlalchemy import func, select
from werkzeug.security import generate_password_hash

ROOT = Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT))

from examples.host_app import apps_glue  # noqa: E402
from examples.host_app.models import Client, Staff  # noqa: E402
from examples.host_app.testing import activate, add_practice, csrf_from, platform_of  # noqa: E402
from hookspecs.types import (  # noqa: E402
    ALL_PERMISSIONS,
    Permission,
    StaffContext,
    StaffRef,
    TenantRef,
)
from samtycke_plugin import roles  # noqa: E402
from samtycke_plugin.i18n import t  # noqa: E402
from samtycke_plugin.models import ConsentEvent  # noqa: E402

P = "/apps/samtycke"


@pytest.fixture(scope="module", params=BACKENDS)
def platform_app(request: pytest.FixtureRequest,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    yield from example_platform(request, tmp_path_factory, "roles")


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
    monkeypatch.setitem(apps_glue.APP_ROLES, "staff", ["record_consent", "export"])
    download = recorder.get(f"/clients/{cid}/consent.zip")
    assert download.status_code == 200 and download.data[:2] == b"PK"
    assert recorder.get(f"{P}/setup").status_code == 403


def _staff_ids(app: Flask, practice: dict[str, Any]) -> dict[str, int]:
    platform = platform_of(app)
    try:
        found = {email: ref for email, ref in platform.db().execute(select(
            Staff.email, Staff.id).where(Staff.practice_id == practice["id"]))}
    finally:
        platform.sessions.remove()
    return {"owner": found[practice["emails"][0]], "barred": found[practice["emails"][1]],
            "recorder": found[practice["recorder"]]}


def test_the_command_line_asks_the_host_for_the_same_roles_as_the_pages(
        platform_app: Flask) -> None:
    """``PlatformHost.staff_member`` (the command line's ``--staff``) maps the role as the
    sign-in does: the owner everything, staff recording only, the member's own flag
    withholds recording; nobody outside the practice."""
    app = platform_app
    practice, other = _practice(app), _practice(app)
    ids, tenant = _staff_ids(app, practice), TenantRef(str(practice["id"]))
    platform = platform_of(app)
    host = platform.host
    try:
        with host.unit_of_work():
            def member(ref: object, where: TenantRef = tenant) -> StaffContext | None:
                return host.staff_member(where, StaffRef(str(ref)))

            owner, recorder, barred = (member(ids[k]) for k in ("owner", "recorder", "barred"))
            assert owner is not None and owner.permissions == ALL_PERMISSIONS
            assert recorder is not None and recorder.permissions == {Permission.RECORD_CONSENT}
            assert barred is not None and barred.permissions == frozenset()
            assert owner.name == "Behandlare 1" and owner.ref == str(ids["owner"])
            assert member(ids["owner"], TenantRef(str(other["id"]))) is None
            assert member(_staff_ids(app, other)["owner"]) is None  # another practice's
            assert member("99999999") is None and member("x1") is None and member("") is None
    finally:
        platform.sessions.remove()


def test_staff_commands_on_the_example_platform(platform_app: Flask) -> None:
    """``samtycke --host … export client --staff <id>``: the owner gets the client's
    history with the platform's names; staff who may only record are refused, told who
    may, and the access log is untouched."""
    from cli_support import EXAMPLE_HOSTS
    from click.testing import CliRunner

    from samtycke_plugin.cli import main
    from samtycke_plugin.models import AccessLogEntry

    app = platform_app
    practice = _practice(app)
    ids, tenant, cid = _staff_ids(app, practice), str(practice["id"]), str(practice["client"])
    platform = platform_of(app)
    EXAMPLE_HOSTS.append(platform.host)
    logged = select(func.count()).select_from(AccessLogEntry).where(
        AccessLogEntry.tenant_ref == tenant)
    try:
        base = ["--host", "cli_support:example_host", "export", "client", "--tenant", tenant,
                "--client", cid, "--staff"]
        refused = CliRunner().invoke(main, [*base, str(ids["recorder"])])
        platform.sessions.remove()
        assert refused.exit_code == 1
        assert "was refused for Rut Rec" in refused.output
        assert " ".join(t("en", roles.REFUSED[Permission.EXPORT]).split()) in " ".join(
            refused.output.split())
        assert _scalar(app, logged) == 0
        done = CliRunner().invoke(main, [*base, str(ids["owner"])])
        platform.sessions.remove()
        assert done.exit_code == 0, done.output
        assert json.loads(done.stdout)["client"]["name"] == "Ida Ek"
        assert _scalar(app, select(AccessLogEntry.actor).where(
            AccessLogEntry.tenant_ref == tenant)) == f"staff:{ids['owner']}"
    finally:
        EXAMPLE_HOSTS.remove(platform.host)
        platform.sessions.remove()
