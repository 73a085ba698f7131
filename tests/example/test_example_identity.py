"""The example platform tells the app who is booking: someone typing an existing
client's address and another name gets an unconfirmed consent and the client a mail
to confirm it; the client booking through their personal link is signed in and their
consent is valid at once (SQLite and PostgreSQL)."""

from __future__ import annotations

import re
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from example_support import BACKENDS, example_platform
from flask import Flask
from sqlalchemy import select

ROOT = Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT))

from examples.host_app.models import Client, DevMail  # noqa: E402
from examples.host_app.testing import activate, add_practice, csrf_from, platform_of  # noqa: E402
from samtycke_plugin.chain import verify_chain  # noqa: E402
from samtycke_plugin.models import ConsentEvent  # noqa: E402


@pytest.fixture(scope="module", params=BACKENDS)
def platform_app(request: pytest.FixtureRequest,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    yield from example_platform(request, tmp_path_factory, "identity")


def _query(app: Flask, statement: Any) -> list[Any]:
    platform = platform_of(app)
    try:
        return list(platform.db().execute(statement).all())
    finally:
        platform.sessions.remove()


def _book(app: Flask, path: str, *, tick: bool, **typed: str) -> Any:
    browser = app.test_client()
    page = browser.get(path).text
    slot = re.search(r'<option value="([0-9T:Z-]+)"', page)
    service = re.search(r'name="service" id="service-(\d+)"', page)
    shown = re.search(r'name="samtycke_text" value="(\d+)"', page)
    returning = re.search(r'name="r" value="([^"]+)"', page)
    assert slot and service and shown
    data = {"csrf_token": csrf_from(page), "service": service.group(1), "slot": slot.group(1),
            "samtycke_text": shown.group(1), **typed}
    if returning:
        data["r"] = returning.group(1)
    if tick:
        data["samtycke_consent"] = "yes"
    return browser.post(path.split("?")[0], data=data)


def _states(app: Flask, practice: int) -> list[str]:
    return [s for (s,) in _query(app, select(ConsentEvent.state)
                                 .where(ConsentEvent.tenant_ref == str(practice))
                                 .order_by(ConsentEvent.seq))]


def test_a_stranger_with_the_clients_address_needs_the_clients_confirmation(
    platform_app: Flask,
) -> None:
    app = platform_app
    practice = add_practice(platform_of(app), staff=1)
    activate(platform_of(app), practice["id"], ask_clients_without_consent=True, pause_days=0)
    slug = f"/book/{practice['slug']}"
    email = f"ebba-{uuid.uuid4().hex[:6]}@example.org"

    assert _book(app, slug, tick=False, name="Ebba Lund", email=email).status_code == 302
    assert _states(app, practice["id"]) == ["refused"]
    typed = _book(app, slug, tick=True, name="Eva Annan", email=email)
    assert typed.status_code == 302
    assert _states(app, practice["id"]) == ["refused", "unconfirmed"]
    assert _query(app, select(Client.name).where(Client.email == email)) == [("Ebba Lund",)]
    mails = _query(app, select(DevMail.to, DevMail.subject, DevMail.text)
                   .where(DevMail.source == "samtycke", DevMail.to == email))
    [(to, _subject, body)] = [m for m in mails if "Bekräfta" in m[1]]
    assert to == email and "Ebba Lund" in body and "Eva Annan" not in body
    assert "http://booking.test/apps/samtycke/v/" in body

    # The client's own link from the platform's booking mail: signed in, valid at once.
    [(platform_mail,)] = _query(app, select(DevMail.text).where(
        DevMail.to == email, DevMail.source == "platform").limit(1))
    link = re.search(r"http://booking\.test(/book/\S+)", platform_mail)
    assert link is not None
    assert _book(app, link.group(1), tick=True).status_code == 302
    assert _states(app, practice["id"]) == ["refused", "unconfirmed", "given"]
    platform = platform_of(app)
    try:
        assert verify_chain(platform.db(), str(practice["id"])).ok
    finally:
        platform.sessions.remove()
