"""The scan of a signed paper form reaches the app through the Flask platform's mount:
a multipart form (larger than a form of text fields may be) is forwarded whole, the
app reads the file from its own request, and the history's download comes back."""

from __future__ import annotations

import hashlib
import io
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from example_support import BACKENDS, example_platform
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

ROOT = Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT))

from examples.host_app.models import Client  # noqa: E402
from examples.host_app.testing import activate, add_practice, csrf_from, platform_of  # noqa: E402
from samtycke_plugin.models import ConsentEvent  # noqa: E402

P = "/apps/samtycke"
#: Larger than the app's limit for a form of text fields alone.
SCAN = b"%PDF-1.7\n" + b"scan " * 600_000


@pytest.fixture(scope="module", params=BACKENDS)
def platform_app(request: pytest.FixtureRequest,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    yield from example_platform(request, tmp_path_factory, "paper")


def _owner(app: Flask) -> tuple[FlaskClient, int, int]:
    platform = platform_of(app)
    practice = add_practice(platform)
    activate(platform, practice["id"])
    session = platform.db()
    client = Client(practice_id=practice["id"], name="Ida Ek", email="ida@example.org",
                    locale="sv", created_by="staff", created_at=datetime.now(UTC))
    session.add(client)
    session.commit()
    cid = client.id
    platform.sessions.remove()
    browser = app.test_client()
    form = browser.get("/login")
    signed_in = browser.post("/login", data={"email": practice["emails"][0],
                                             "password": practice["password"],
                                             "csrf_token": csrf_from(form.text)})
    assert signed_in.status_code == 302, signed_in.text
    return browser, int(practice["id"]), cid


def test_a_scan_posted_through_the_flask_mount_is_recorded_and_downloaded(
    platform_app: Flask,
) -> None:
    assert len(SCAN) > 2 * 1024 * 1024
    browser, tenant, cid = _owner(platform_app)
    obtain = browser.get(f"{P}/clients/{cid}/obtain").text
    response = browser.post(f"{P}/clients/{cid}/obtain", data={
        "action": "record", "method": "paper", "given_on": "2026-01-15", "note": "",
        "csrf_token": csrf_from(obtain), "scan": (io.BytesIO(SCAN), "blankett.pdf")})
    assert response.status_code == 303, response.text
    platform = platform_of(platform_app)
    try:
        event = platform.db().scalars(select(ConsentEvent).where(
            ConsentEvent.tenant_ref == str(tenant))).one()
        digest = event.attachment_sha256
    finally:
        platform.sessions.remove()
    assert digest == hashlib.sha256(SCAN).hexdigest()
    download = browser.get(f"{P}/clients/{cid}/attachments/{digest}")
    assert download.status_code == 200 and download.data == SCAN
