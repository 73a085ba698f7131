"""One client per practice and e-mail address in the example platform, under concurrency.

Twenty first-time online bookings with the same new address and different times,
sent at the same moment, must give one client, one consent and one receipt (the
address is unique per practice; a booking that loses the race uses the client the
winner inserted, and the app records nothing for a client whose consent is valid).
"""

from __future__ import annotations

import re
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import test_example_host
from alembic import command
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, func, inspect, select, text
from sqlalchemy.exc import IntegrityError

ROOT = Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT))  # the example host is not an installed package

from conftest import create_pg_database, drop_pg_database  # noqa: E402

from examples.host_app import create_app  # noqa: E402
from examples.host_app.database import alembic_config, make_engine  # noqa: E402
from examples.host_app.models import Booking, Client  # noqa: E402
from examples.host_app.testing import activate, add_practice, csrf_from, platform_of  # noqa: E402
from samtycke_plugin.models import ConsentEvent, OutboxMessage  # noqa: E402

SECRET = "test-secret-" + "u" * 40
BOOKINGS = 20


#: A database of its own, once on SQLite and once on PostgreSQL (module-scoped).
database_url = test_example_host.database_url


@pytest.fixture(scope="module")
def app(database_url: str) -> Iterator[Flask]:
    flask_app = create_app({"DATABASE_URL": database_url, "SECRET_KEY": SECRET,
                            "BASE_URL": "http://booking.test", "STRICT_APPS": True})
    flask_app.config["TESTING"] = True
    yield flask_app
    platform_of(flask_app).sessions.remove()
    platform_of(flask_app).engine.dispose()


def scalar(app: Flask, statement: Any) -> Any:
    platform = platform_of(app)
    try:
        return platform.db().scalar(statement)
    finally:
        platform.sessions.remove()


def booking_form(browser: FlaskClient, slug: str, email: str, slot_index: int) -> dict[str, str]:
    page = browser.get(f"/book/{slug}").text
    slots = re.findall(r'<option value="([0-9T:Z-]+)"', page)
    service = re.search(r'name="service" id="service-(\d+)"', page)
    shown = re.search(r'name="samtycke_text" value="(\d+)"', page)
    assert service and shown and len(slots) > slot_index
    return {"csrf_token": csrf_from(page), "service": service.group(1),
            "slot": slots[slot_index], "name": "Samma Person", "email": email,
            "samtycke_text": shown.group(1), "samtycke_consent": "yes"}


def test_simultaneous_first_bookings_with_one_address_make_one_client_and_one_consent(
        app: Flask) -> None:
    platform = platform_of(app)
    practice = add_practice(platform)
    activate(platform, practice["id"], ask_new_clients=True)
    slug = practice["slug"]
    # One booking first, with another address: every template and mail the booking path
    # uses is compiled before the threads start (that is not what this test is about).
    warm = app.test_client()
    assert warm.post(f"/book/{slug}", data=booking_form(
        warm, slug, f"warm-{uuid.uuid4().hex[:6]}@example.org", 0)).status_code == 302

    email = f"Ny.Klient-{uuid.uuid4().hex[:6]}@Example.org"
    browsers = [app.test_client() for _ in range(BOOKINGS)]
    forms = [booking_form(browser, slug, email, index) for index, browser in enumerate(browsers)]
    assert len({form["slot"] for form in forms}) == BOOKINGS
    barrier = threading.Barrier(BOOKINGS)
    statuses: list[int] = []

    def submit(browser: FlaskClient, form: dict[str, str]) -> None:
        barrier.wait(timeout=60)
        statuses.append(browser.post(f"/book/{slug}", data=form).status_code)

    threads = [threading.Thread(target=submit, args=pair) for pair in zip(browsers, forms,
                                                                          strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert statuses == [302] * BOOKINGS  # every time was free: every booking went through

    key = email.lower()
    clients = platform.db().scalars(select(Client.id).where(
        Client.practice_id == practice["id"], func.lower(Client.email) == key)).all()
    platform.sessions.remove()
    assert len(clients) == 1
    client = str(clients[0])
    assert scalar(app, select(func.count()).select_from(Booking)
                  .where(Booking.client_id == clients[0])) == BOOKINGS
    events = platform.db().execute(select(ConsentEvent.state).where(
        ConsentEvent.tenant_ref == str(practice["id"]), ConsentEvent.client_ref == client)).all()
    platform.sessions.remove()
    assert [state for (state,) in events] == ["given"]
    assert scalar(app, select(func.count()).select_from(OutboxMessage).where(
        OutboxMessage.tenant_ref == str(practice["id"]), OutboxMessage.client_ref == client,
        OutboxMessage.kind == "receipt")) == 1


def test_staff_cannot_add_a_second_client_with_the_same_address(app: Flask) -> None:
    platform = platform_of(app)
    practice = add_practice(platform)
    browser = app.test_client()
    page = browser.get("/login").text
    assert browser.post("/login", environ_base={"REMOTE_ADDR": "10.9.0.1"}, data={
        "email": practice["emails"][0], "password": practice["password"],
        "csrf_token": csrf_from(page)}).status_code == 302
    for email, status in (("Bo@Example.org", 302), ("bo@example.org", 400), ("", 302), ("", 302)):
        form = browser.get("/clients/new").text
        response = browser.post("/clients/new", data={
            "csrf_token": csrf_from(form), "name": "Bo", "email": email, "locale": "sv"})
        assert response.status_code == status, email
        if status == 400:
            assert "Det finns redan en klient med den här e-postadressen." in response.text
    assert scalar(app, select(func.count()).select_from(Client)
                  .where(Client.practice_id == practice["id"])) == 3  # two without an address


# -- the migration ---------------------------------------------------------------------------


@pytest.fixture
def empty_engine(database_url: str, request: pytest.FixtureRequest,
                 tmp_path: Path) -> Iterator[Engine]:
    if database_url.startswith("sqlite"):
        engine = make_engine(f"sqlite:///{tmp_path / 'migrate.sqlite'}")
        yield engine
        engine.dispose()
        return
    admin = request.getfixturevalue("pg_server")
    url = create_pg_database(admin)
    engine = make_engine(url)
    yield engine
    engine.dispose()
    drop_pg_database(admin, url)


def _migrate(engine: Engine, verb: str, revision: str) -> None:
    with engine.begin() as connection:
        getattr(command, verb)(alembic_config(connection), revision)


def test_migration_keys_the_oldest_of_existing_duplicates_and_downgrades(
        empty_engine: Engine) -> None:
    _migrate(empty_engine, "upgrade", "0001")
    with empty_engine.begin() as conn:
        conn.execute(text("INSERT INTO host_practice (id, slug, name, locale, created_at) "
                          "VALUES (1, 'a', 'A', 'sv', CURRENT_TIMESTAMP), "
                          "(2, 'b', 'B', 'sv', CURRENT_TIMESTAMP)"))
        for cid, pid, email in [(1, 1, "Eva@Example.org"), (2, 1, "eva@example.org"),
                                (3, 1, None), (4, 1, None), (5, 2, "eva@example.org"),
                                (6, 1, "bo@example.org")]:
            conn.execute(text(
                "INSERT INTO host_client (id, practice_id, name, email, locale, created_by, "
                "created_at) VALUES (:id, :pid, 'X', :email, 'sv', 'staff', CURRENT_TIMESTAMP)"),
                {"id": cid, "pid": pid, "email": email})
    _migrate(empty_engine, "upgrade", "head")
    with empty_engine.connect() as conn:
        keys = conn.execute(text("SELECT id, email_key FROM host_client ORDER BY id")).all()
    assert [tuple(row) for row in keys] == [
        (1, "eva@example.org"), (2, None), (3, None), (4, None), (5, "eva@example.org"),
        (6, "bo@example.org")]
    with pytest.raises(IntegrityError), empty_engine.begin() as conn:
        conn.execute(text("UPDATE host_client SET email_key = 'bo@example.org' WHERE id = 2"))
    assert {"host_staff_session", "host_sign_in_failure"} <= set(
        inspect(empty_engine).get_table_names())
    _migrate(empty_engine, "downgrade", "0001")
    assert "email_key" not in {c["name"] for c in inspect(empty_engine).get_columns("host_client")}
    assert "host_staff_session" not in inspect(empty_engine).get_table_names()
    _migrate(empty_engine, "upgrade", "head")
