"""What the app's storage promises a host, whatever runs its statements: they are seen by
SQLAlchemy's statement log and by listeners, they run in the host's transaction, and
datetimes are stored as instants and read back in UTC."""

from __future__ import annotations

import logging
import re
import sqlite3
import tempfile
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hostkit import TestHost, staff, submission
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Column, Engine, Integer, MetaData, Table, insert, select
from sqlalchemy.orm import Session

from samtycke_plugin import consent, panels, practice_texts, practices
from samtycke_plugin.models import UTCDateTime


def _activated(host: TestHost) -> tuple[str, str, int]:
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, require_consent_for_online_booking=True)
    client = host.new_client(tenant)
    session = host.session()
    text_id = practice_texts.current_text(session, practices.require_practice(session, tenant), "sv").id
    session.commit()
    return tenant, client, text_id


def test_the_booking_path_is_in_sqlalchemy_s_statement_log(
    host: TestHost, caplog: pytest.LogCaptureFixture
) -> None:
    """With the ``sqlalchemy.engine`` logger at INFO (a host debugging its SQL), the
    booking check's read and the record step's writes are logged like the host's own."""
    tenant, client, text_id = _activated(host)
    hooks = host.hooks()
    sub = submission(tenant, client, ticked=True, text_id=text_id)
    with caplog.at_level(logging.INFO, logger="sqlalchemy.engine"):
        assert hooks.submit_check(sub) == []
        hooks.submitted(sub, "b1", client)  # type: ignore[arg-type]
        host.session().commit()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "samtycke_consent_state" in logged
    assert "INSERT INTO samtycke_consent_event" in logged
    assert "UPDATE samtycke_practice" in logged


def _panel_and_record(host: TestHost, tenant: str, client: str) -> None:
    assert panels.profile_panel(host, tenant, client, staff(), "sv") is not None
    consent.record_manual(host, tenant, client, staff(), method="paper",
                          given_at=host.now(), note="Papper")


def test_a_trace_on_the_host_s_connection_sees_the_app_s_statements(
    host: TestHost,
) -> None:
    """A trace on the host's DB-API connection (the driver's own, set up per request)
    sees the profile panel's read and a manual recording's writes: the app runs its
    statements on the very connection the host gave it."""
    tenant, client, _ = _activated(host)
    dbapi = host.connection()
    if isinstance(dbapi, sqlite3.Connection):
        seen: list[str] = []
        dbapi.set_trace_callback(seen.append)
        try:
            _panel_and_record(host, tenant, client)
        finally:
            dbapi.set_trace_callback(None)
    else:  # libpq's trace of the psycopg connection
        with tempfile.TemporaryFile() as trace:
            dbapi.pgconn.trace(trace.fileno())
            try:
                _panel_and_record(host, tenant, client)
            finally:
                dbapi.pgconn.untrace()
            trace.seek(0)
            traced = trace.read().decode()  # statements keep their line breaks
            seen = re.findall(r'\tParse\t "[^"]*" "(.*?)" \d', traced, re.DOTALL)
    assert any("samtycke_consent_state" in s and s.lstrip().startswith("SELECT") for s in seen)
    assert any(s.startswith("INSERT INTO samtycke_consent_event") for s in seen)
    assert any(s.startswith("INSERT INTO samtycke_evidence") for s in seen)
    host.session().rollback()


def test_reads_and_writes_follow_the_host_s_transaction(host: TestHost) -> None:
    """The app reads what the host's open transaction wrote, and a rollback of that
    transaction takes the app's writes with it."""
    tenant, client, _ = _activated(host)
    consent.record_manual(host, tenant, client, staff(), method="paper",
                          given_at=host.now(), note=None)
    panel = panels.profile_panel(host, tenant, client, staff(), "en")
    assert panel is not None and panel.tone == "ok"  # not committed, read in the same unit
    host.session().rollback()
    panel = panels.profile_panel(host, tenant, client, staff(), "en")
    assert panel is not None and panel.tone != "ok"
    host.session().rollback()


_STAMPS = Table(
    "storage_test_stamps", MetaData(),
    Column("id", Integer, primary_key=True), Column("at", UTCDateTime()),
)


def test_equal_instants_in_other_zones_are_stored_as_one(engine: Engine) -> None:
    """A datetime is stored as its instant: the same moment given in UTC and in Swedish
    summer time reads back equal and in UTC, in one statement or in a batch."""
    utc = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    cest = utc.astimezone(timezone(timedelta(hours=2)))
    _STAMPS.create(engine, checkfirst=True)
    try:
        with Session(engine) as session:
            session.execute(insert(_STAMPS), {"id": 1, "at": utc})
            session.execute(insert(_STAMPS), {"id": 2, "at": cest})
            session.execute(insert(_STAMPS), [{"id": 3, "at": cest}, {"id": 4, "at": None}])
            got = dict(session.execute(select(_STAMPS.c.id, _STAMPS.c.at)).all())
            session.rollback()
    finally:
        _STAMPS.drop(engine)
    assert got == {1: utc, 2: utc, 3: utc, 4: None}
    assert all(at.tzinfo is UTC for at in got.values() if at is not None)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(at=st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1),
                       timezones=st.just(UTC)))
def test_utc_datetimes_round_trip(engine: Engine, at: datetime) -> None:
    """Any aware datetime written through SQLAlchemy reads back equal and in UTC."""
    _STAMPS.create(engine, checkfirst=True)
    try:
        with Session(engine) as session:
            session.execute(insert(_STAMPS), {"id": 1, "at": at})
            got = session.execute(select(_STAMPS.c.at).where(_STAMPS.c.id == 1)).scalar_one()
            assert got == at and got.utcoffset() == timedelta(0)
            session.rollback()
    finally:
        _STAMPS.drop(engine)
