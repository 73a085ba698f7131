"""The example platform's sign-in: throttling, sessions ended on the server, cookie
flags, and an access log without the e-mailed links' tokens."""

from __future__ import annotations

import logging
import secrets
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

ROOT = Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT))  # the example host is not an installed package

from conftest import create_pg_database, drop_pg_database  # noqa: E402

from examples.host_app import create_app, settings_from_env  # noqa: E402
from examples.host_app.sign_in import source_subject  # noqa: E402
from examples.host_app.testing import LiveServer, add_practice, csrf_from, platform_of  # noqa: E402

SECRET = "test-secret-" + "s" * 40
MAX_SOURCE = 15
PAUSED_SV = "För många felaktiga lösenord: inloggningen är pausad. Vänta 15 minuter"
PAUSED_EN = "Too many wrong passwords: signing in is paused. Wait 15 minutes"


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[Flask]:
    admin = url = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('security') / 'booking.sqlite'}"
    else:
        admin = request.getfixturevalue("pg_server")
        url = create_pg_database(admin)
    flask_app = create_app({"DATABASE_URL": url, "SECRET_KEY": SECRET,
                            "BASE_URL": "http://booking.test", "STRICT_APPS": True,
                            "SIGN_IN_MAX_SOURCE": MAX_SOURCE})
    flask_app.config["TESTING"] = True
    yield flask_app
    platform_of(flask_app).sessions.remove()
    platform_of(flask_app).engine.dispose()
    if admin is not None:
        drop_pg_database(admin, url)


def browser_from(app: Flask, address: str) -> FlaskClient:
    """A browser at its own source address (the throttle counts per source too)."""
    browser = app.test_client()
    browser.environ_base["REMOTE_ADDR"] = address
    return browser


def sign_in(browser: FlaskClient, email: str, password: str) -> Any:
    page = browser.get("/login").text
    return browser.post("/login", data={"email": email, "password": password,
                                        "csrf_token": csrf_from(page)})


def a_new_address() -> str:
    return f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250)}"


@pytest.fixture
def clock(app: Flask) -> Iterator[list[timedelta]]:
    """Move the platform's clock forward by appending to the list it returns."""
    host = platform_of(app).host
    original = host.clock
    shift = [timedelta(0)]
    host.clock = lambda: datetime.now(UTC) + sum(shift, timedelta(0))
    yield shift
    host.clock = original


# -- throttling ------------------------------------------------------------------------------


def test_ten_wrong_passwords_pause_the_account_even_for_the_right_one(
        app: Flask, clock: list[timedelta]) -> None:
    practice = add_practice(platform_of(app))
    email, password = practice["emails"][0], practice["password"]
    attacker = browser_from(app, a_new_address())
    for _ in range(10):
        assert sign_in(attacker, email, "wrong").status_code == 400
    paused = sign_in(attacker, email, password)
    assert paused.status_code == 429
    assert PAUSED_SV in paused.text and "Traceback" not in paused.text
    assert attacker.get("/dashboard").status_code == 302  # not signed in
    # the pause is the account's: the owner at another address is refused too, in English
    owner = browser_from(app, a_new_address())
    owner.post("/language", data={"lang": "en", "csrf_token": csrf_from(owner.get("/").text)})
    refused = sign_in(owner, email, password)
    assert refused.status_code == 429 and PAUSED_EN in refused.text
    clock.append(timedelta(minutes=15, seconds=1))  # the window passes
    assert sign_in(owner, email, password).status_code == 302
    assert owner.get("/dashboard").status_code == 200


def test_a_successful_sign_in_clears_the_accounts_failures(app: Flask) -> None:
    practice = add_practice(platform_of(app))
    email, password = practice["emails"][0], practice["password"]
    browser = app.test_client()
    for _round in range(2):
        # a new source each round: the source's failures stay counted after a success
        browser.environ_base["REMOTE_ADDR"] = a_new_address()
        for _ in range(9):
            assert sign_in(browser, email, "wrong").status_code == 400
        assert sign_in(browser, email, password).status_code == 302
        browser.post("/logout", data={"csrf_token": csrf_from(browser.get("/dashboard").text)})


def test_one_source_is_paused_after_failures_across_many_accounts(app: Flask) -> None:
    practice = add_practice(platform_of(app))
    address = a_new_address()
    spray = browser_from(app, address)
    for index in range(MAX_SOURCE):  # a different, unknown account each time
        assert sign_in(spray, f"guess{index}-{uuid.uuid4().hex[:6]}@example.org",
                       "wrong").status_code == 400
    paused = sign_in(browser_from(app, address), practice["emails"][0], practice["password"])
    assert paused.status_code == 429 and PAUSED_SV in paused.text
    elsewhere = sign_in(browser_from(app, a_new_address()), practice["emails"][0],
                        practice["password"])
    assert elsewhere.status_code == 302


def test_ipv6_sources_count_per_64_block() -> None:
    assert source_subject("2001:db8:1:2::1") == source_subject("2001:db8:1:2:ffff::9")
    assert source_subject("2001:db8:1:2::1") != source_subject("2001:db8:1:3::1")
    assert source_subject("192.0.2.1") != source_subject("192.0.2.2")


# -- sessions ---------------------------------------------------------------------------------


def test_a_cookie_copied_before_sign_out_does_not_work_afterwards(app: Flask) -> None:
    practice = add_practice(platform_of(app))
    browser = browser_from(app, a_new_address())
    assert sign_in(browser, practice["emails"][0], practice["password"]).status_code == 302
    cookie = browser.get_cookie("booking_session")
    assert cookie is not None
    thief = app.test_client()
    thief.set_cookie("booking_session", cookie.value)
    assert thief.get("/dashboard").status_code == 200  # the copy works while signed in
    page = browser.get("/dashboard").text
    assert browser.post("/logout", data={"csrf_token": csrf_from(page)}).status_code == 302
    again = thief.get("/dashboard")
    assert again.status_code == 302 and "/login" in again.location
    app_page = thief.get("/apps/samtycke/setup")
    assert app_page.status_code == 303 and app_page.location.startswith("/login?next=")


# -- cookie flags -------------------------------------------------------------------------------


def test_session_cookie_is_secure_on_https_and_when_configured(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BOOKING_COOKIE_SECURE", raising=False)
    assert settings_from_env(tmp_path, {"BASE_URL": "https://boka.example"})["COOKIE_SECURE"]
    assert not settings_from_env(tmp_path, {"BASE_URL": "http://127.0.0.1:5000"})["COOKIE_SECURE"]
    monkeypatch.setenv("BOOKING_COOKIE_SECURE", "0")
    assert not settings_from_env(tmp_path, {"BASE_URL": "https://boka.example"})["COOKIE_SECURE"]
    monkeypatch.setenv("BOOKING_COOKIE_SECURE", "1")
    assert settings_from_env(tmp_path, {"BASE_URL": "http://127.0.0.1:5000"})["COOKIE_SECURE"]
    monkeypatch.delenv("BOOKING_COOKIE_SECURE")

    for base_url, secure in (("https://boka.example", True), ("http://127.0.0.1:5000", False)):
        app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / (str(secure) + '.sqlite')}",
                          "SECRET_KEY": SECRET, "BASE_URL": base_url})
        try:
            practice = add_practice(platform_of(app))
            browser = app.test_client()
            response = sign_in(browser, practice["emails"][0], practice["password"])
            assert response.status_code == 302
            cookie = next(h for h in response.headers.getlist("Set-Cookie")
                          if h.startswith("booking_session="))
            flags = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
            assert {"httponly", "samesite"} <= flags and "SameSite=Lax" in cookie
            assert ("secure" in flags) is secure, cookie
        finally:
            platform_of(app).sessions.remove()
            platform_of(app).engine.dispose()


# -- the access log -------------------------------------------------------------------------------


def test_the_access_log_keeps_no_link_tokens(tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="werkzeug")
    consent, withdraw, again = (secrets.token_urlsafe(32) for _ in range(3))
    with LiveServer({"DATABASE_URL": f"sqlite:///{tmp_path / 'log.sqlite'}",
                     "SECRET_KEY": SECRET}) as server:
        practice = add_practice(server.platform)
        for path in (f"/apps/samtycke/c/{consent}", f"/apps/samtycke/w/{withdraw}?lang=en",
                     f"/book/{practice['slug']}?r={again}"):
            try:
                urllib.request.urlopen(server.url + path, timeout=30).close()
            except urllib.error.HTTPError as error:
                error.close()
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "/apps/samtycke/c/…" in logged and "/apps/samtycke/w/…" in logged
    assert f"/book/{practice['slug']} " in logged
    for token in (consent, withdraw, again):
        assert token not in logged
