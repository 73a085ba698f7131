"""Practitioner POSTs are bound to the host's sign-in session and refuse cross-site posts.

The app's CSRF token is an HMAC over the host's session id (``environ["booking.session"]``),
the practice and the practitioner: a token from another (ended) sign-in fails, and a
host that passes no session id gets every practitioner POST refused.  A browser's
``Origin``/``Sec-Fetch-Site`` saying "another site" is refused whatever the token.
Each refusal is a 403 that says what to do, and nothing is written.  Through the app's
WSGI pages (SQLite and PostgreSQL) and through the example platform's sign-in.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import create_pg_database, drop_pg_database
from flask import Flask
from flask.testing import FlaskClient
from hostkit import TestHost, staff
from markupsafe import escape
from reliability_support import dump
from sqlalchemy import func, select
from werkzeug.test import Client, TestResponse

from samtycke_plugin import common
from samtycke_plugin.i18n import t
from samtycke_plugin.models import ConsentEvent
from samtycke_plugin.web import make_wsgi_app
from samtycke_plugin.web.staff import CROSS_SITE, NO_SESSION, STALE_FORM

sys.path.append(str(Path(__file__).resolve().parents[2]))

from examples.host_app import create_app, demo_seed
from examples.host_app.testing import activate, add_practice, csrf_from, platform_of

P = common.MOUNT_PREFIX
RECORD = {"action": "record", "method": "paper", "given_on": "2026-11-20", "note": ""}
SITE = "http://booking.test"  # TestHost.absolute_url's site
ABSENT = object()


def mounted(host: TestHost, tenant: str, session: object = "sign-in-1") -> Client:
    """The app's pages as a host mounts them, for one practitioner in one sign-in
    (``ABSENT``: the host sets no ``booking.session``)."""
    app = make_wsgi_app()

    def hosted(environ: dict[str, Any], start_response: Any) -> Any:
        environ.update({"booking.host": host, "booking.tenant": tenant, "booking.staff": staff()})
        if session is not ABSENT:
            environ["booking.session"] = session
        if environ["PATH_INFO"].startswith(P):
            environ["SCRIPT_NAME"], environ["PATH_INFO"] = P, environ["PATH_INFO"][len(P):]
        return app(environ, start_response)

    return Client(hosted)


def set_up(host: TestHost) -> tuple[str, str]:
    """An active practice (set-up done) and one of its clients."""
    tenant = host.new_tenant()
    host.activate(host.hooks(), tenant, ask_new_clients=True)
    return tenant, host.new_client(tenant)


def token_of(browser: Client, client: str) -> str:
    page = browser.get(f"{P}/clients/{client}/obtain")
    assert page.status_code == 200
    return csrf_from(page.get_data(as_text=True))


def record(browser: Client, client: str, token: str, headers: dict[str, str] | None = None,
           lang: str = "sv", path: str | None = None) -> TestResponse:
    return browser.post(path or f"{P}/clients/{client}/obtain",
                        data={**RECORD, "csrf_token": token},
                        headers={"Accept-Language": lang, **(headers or {})})


def refused(response: TestResponse, message: str, lang: str = "sv") -> None:
    """A 403 that says what happened and what to do, in the page's language."""
    assert response.status_code == 403, response.status_code
    body = response.get_data(as_text=True)
    assert t(lang, "You are not allowed to do this.") in body
    assert str(escape(t(lang, message))) in body
    assert "Traceback" not in body


def written(host: TestHost, tenant: str) -> dict[str, Any]:
    host.session().rollback()
    return dump(host.engine, [tenant])


def post_paths(client: str) -> list[str]:
    """Every practitioner POST route of the app (from its URL map)."""
    adapter = make_wsgi_app().url_map.bind("x.test")
    paths = [P + adapter.build(str(rule.endpoint), {"client": client})
             for rule in adapter.map.iter_rules()
             if "POST" in (rule.methods or ()) and str(rule.endpoint).startswith("practice.")]
    assert len(paths) >= 5
    return paths


# -- through the app's pages, as a host mounts them ----------------------------------------------


def test_a_token_from_another_sign_in_is_refused_and_writes_nothing(host: TestHost) -> None:
    tenant, client = set_up(host)
    old_token = token_of(mounted(host, tenant, "sign-in-1"), client)
    again = mounted(host, tenant, "sign-in-2")  # signed out, then in again
    before = written(host, tenant)
    for path in post_paths(client):
        for lang in ("sv", "en"):
            refused(record(again, client, old_token, lang=lang, path=path), STALE_FORM, lang)
    assert written(host, tenant) == before
    # The same form with this sign-in's own token records the consent.
    new_token = token_of(again, client)
    assert new_token != old_token
    assert record(again, client, new_token).status_code == 303
    assert written(host, tenant) != before


@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example"},
    {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Origin": SITE, "Sec-Fetch-Site": "cross-site"},
    {"Origin": "http://booking.test.evil.example"},
    {"Origin": "https://booking.test"},  # another scheme is another origin
], ids=["evil-origin", "evil-origin-cross-site", "cross-site", "cross-site-own-origin",
        "lookalike-origin", "other-scheme"])
def test_a_valid_token_posted_from_another_site_is_refused_and_writes_nothing(
    host: TestHost, headers: dict[str, str]
) -> None:
    tenant, client = set_up(host)
    browser = mounted(host, tenant)
    token = token_of(browser, client)
    before = written(host, tenant)
    for path in post_paths(client):
        for lang in ("sv", "en"):
            refused(record(browser, client, token, headers, lang, path), CROSS_SITE, lang)
    assert written(host, tenant) == before


@pytest.mark.parametrize("headers", [
    {},  # a non-browser client, or an older browser
    {"Origin": SITE, "Sec-Fetch-Site": "same-origin"},
    {"Origin": SITE + "/"},
    {"Origin": "null", "Sec-Fetch-Site": "same-origin"},  # a host's no-referrer policy
    {"Sec-Fetch-Site": "same-site"},
    {"Sec-Fetch-Site": "none"},  # typed or bookmarked: no page posted it
], ids=["no-headers", "same-origin", "origin-slash", "null-origin", "same-site", "none"])
def test_the_same_sign_in_from_the_same_site_records(
    host: TestHost, headers: dict[str, str]
) -> None:
    tenant, client = set_up(host)
    browser = mounted(host, tenant)
    response = record(browser, client, token_of(browser, client), headers)
    assert response.status_code == 303, response.get_data(as_text=True)
    host.session().rollback()
    assert host.session().scalar(select(func.count()).select_from(ConsentEvent).where(
        ConsentEvent.tenant_ref == tenant, ConsentEvent.state == "given")) == 1


@pytest.mark.parametrize("session", [ABSENT, None, "", "x" * 513, 42],
                         ids=["absent", "none", "empty", "too-long", "not-a-string"])
def test_without_the_hosts_session_id_every_post_is_refused_with_what_to_do(
    host: TestHost, session: object
) -> None:
    tenant, client = set_up(host)
    browser = mounted(host, tenant, session)
    page = browser.get(f"{P}/clients/{client}/obtain")
    assert page.status_code == 200  # the pages show; only posting is refused
    assert 'name="csrf_token" value=""' in page.get_data(as_text=True)
    some_token = token_of(mounted(host, tenant), client)  # valid for another sign-in
    before = written(host, tenant)
    for path in post_paths(client):
        for token in ("", some_token):
            for lang in ("sv", "en"):
                refused(record(browser, client, token, lang=lang, path=path), NO_SESSION, lang)
    assert written(host, tenant) == before


# -- through the example platform: sign out, sign in again ---------------------------------------


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def platform_app(request: pytest.FixtureRequest,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    admin = url = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('csrf') / 'booking.sqlite'}"
    else:
        admin = request.getfixturevalue("pg_server")
        url = create_pg_database(admin)
    flask_app = create_app({"DATABASE_URL": url, "SECRET_KEY": "csrf-" + "x" * 40,
                            "BASE_URL": "http://booking.test", "STRICT_APPS": True})
    flask_app.config["TESTING"] = True
    assert demo_seed.seed(platform_of(flask_app))
    yield flask_app
    platform_of(flask_app).sessions.remove()
    platform_of(flask_app).engine.dispose()
    if admin is not None:
        drop_pg_database(admin, url)


def _sign_in(browser: FlaskClient, practice: dict[str, Any]) -> None:
    page = browser.get("/login").text
    response = browser.post("/login", data={"email": practice["emails"][0],
                                            "password": practice["password"],
                                            "csrf_token": csrf_from(page)})
    assert response.status_code == 302, response.text


def _events(app: Flask, practice: dict[str, Any]) -> int:
    platform = platform_of(app)
    try:
        rows = platform.db().scalars(select(ConsentEvent.id).where(
            ConsentEvent.tenant_ref == str(practice["id"]))).all()
        return len(rows)
    finally:
        platform.sessions.remove()


def test_the_example_platform_binds_the_apps_forms_to_the_sign_in(platform_app: Flask) -> None:
    app = platform_app
    practice = add_practice(platform_of(app))
    activate(platform_of(app), practice["id"], ask_new_clients=True)
    browser = app.test_client()
    _sign_in(browser, practice)
    created = browser.post("/clients/new", data={
        "name": "Lo Ny", "email": f"lo-{uuid.uuid4().hex[:6]}@example.org", "locale": "sv",
        "phone": "", "notes": "", "csrf_token": csrf_from(browser.get("/clients/new").text)})
    cid = int(created.location.rsplit("/", 1)[1])
    obtain = f"/apps/samtycke/clients/{cid}/obtain"
    old_token = csrf_from(browser.get(obtain).text)

    browser.post("/logout", data={"csrf_token": csrf_from(browser.get("/").text)})
    signed_out = browser.get(obtain)  # signed out: the platform's sign-in, no app page
    assert signed_out.status_code == 303 and signed_out.location.startswith("/login?next=")
    _sign_in(browser, practice)
    stale = browser.post(obtain, data={**RECORD, "csrf_token": old_token})
    assert stale.status_code == 403
    assert str(escape(t("sv", STALE_FORM))) in stale.text
    assert _events(app, practice) == 0

    new_token = csrf_from(browser.get(obtain).text)
    assert new_token != old_token
    cross = browser.post(obtain, data={**RECORD, "csrf_token": new_token},
                         headers={"Origin": "https://evil.example"})
    assert cross.status_code == 403 and str(escape(t("sv", CROSS_SITE))) in cross.text
    assert _events(app, practice) == 0
    done = browser.post(obtain, data={**RECORD, "csrf_token": new_token},
                        headers={"Origin": "http://booking.test", "Sec-Fetch-Site": "same-origin"})
    assert done.status_code == 303
    assert _events(app, practice) == 1
