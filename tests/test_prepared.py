"""PreparedSelect (the hot-path reads) returns exactly what Session.execute returns, is
seen by statement listeners, and wraps driver errors like SQLAlchemy does."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NoReturn

import pytest
from hostkit import TestHost, count_statements, submission
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    Column,
    Engine,
    Integer,
    MetaData,
    Table,
    bindparam,
    event,
    exc,
    insert,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from samtycke_plugin import service
from samtycke_plugin.db import make_engine
from samtycke_plugin.models import ConsentStateRow, UTCDateTime
from samtycke_plugin.prepared import PreparedSelect


def _tuples(row: object) -> tuple[object, ...] | None:
    return None if row is None else tuple(row)  # type: ignore[arg-type]


def test_same_rows_as_session_execute(host: TestHost) -> None:
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, validity_days=365)
    given, unknown = host.new_client(tenant), host.new_client(tenant)
    text_id = service.current_text(
        host.session(), service.require_practice(host.session(), tenant), "sv"
    ).id
    sub = submission(tenant, given, ticked=True, text_id=text_id)
    assert hooks.submit_check(sub) == []
    hooks.submitted(sub, "b1", given)  # type: ignore[arg-type]
    host.session().commit()

    session = host.session()
    cases = [
        (service._GATE, service._GATE_READ, {"tenant": tenant, "client": given}),
        (service._GATE, service._GATE_READ, {"tenant": tenant, "client": unknown}),
        (service._GATE, service._GATE_READ, {"tenant": "t-none", "client": given}),
        (service._GATE_SHOWN, service._GATE_SHOWN_READ,
         {"tenant": tenant, "client": given, "text_id": text_id}),
        (service._GATE_SHOWN, service._GATE_SHOWN_READ,
         {"tenant": tenant, "client": given, "text_id": 10**12}),
    ]
    for statement, prepared, params in cases:
        expected = session.execute(statement, params).one_or_none()
        fast = prepared.one_or_none(session, params)
        assert _tuples(fast) == _tuples(expected)
        if fast is not None:
            assert fast._fields == tuple(expected._fields)  # type: ignore[union-attr]
    row = service._GATE_READ.one_or_none(session, {"tenant": tenant, "client": given})
    assert row.state == "given" and row.since.tzinfo is not None
    assert row.expires_at > row.since and row.active is True
    session.rollback()


def test_listeners_see_the_statement(host: TestHost) -> None:
    tenant = host.new_tenant()
    with count_statements(host.engine) as seen:
        service._GATE_READ.one_or_none(host.session(), {"tenant": tenant, "client": "c1"})
    assert any("samtycke_consent_state" in s for s in seen)
    host.session().rollback()


def test_listeners_on_the_connection_see_the_statement(host: TestHost) -> None:
    """A listener on the session's connection (not the engine) is seen too."""
    tenant = host.new_tenant()
    seen: list[str] = []
    conn = host.session().connection()

    def before(_c: object, _cur: object, statement: str, *_a: object) -> None:
        seen.append(statement)

    event.listen(conn, "before_cursor_execute", before)
    try:
        service._GATE_READ.one_or_none(host.session(), {"tenant": tenant, "client": "c1"})
    finally:
        event.remove(conn, "before_cursor_execute", before)
    assert any("samtycke_consent_state" in s for s in seen)
    host.session().rollback()


def test_the_session_transaction_is_followed(host: TestHost) -> None:
    """Prepared statements run in the session's current transaction: a new one after
    COMMIT, and none at all while a failed one waits for its rollback."""
    session = host.session()
    params = {"tenant": "t-none", "client": "c1"}
    service._GATE_READ.one_or_none(session, params)
    first = session.connection()
    session.commit()
    service._GATE_READ.one_or_none(session, params)
    assert session.connection() is not first and session.connection().in_transaction()
    session.rollback()

    service._GATE_READ.one_or_none(session, params)
    session.add(ConsentStateRow(tenant_ref="t", client_ref="c", state="given", text_major=1,
                                since=host.now()))
    session.add(ConsentStateRow(tenant_ref="t", client_ref="c", state="given", text_major=1,
                                since=host.now()))
    with pytest.raises(exc.IntegrityError):
        session.flush()
    with pytest.raises(exc.PendingRollbackError):
        service._GATE_READ.one_or_none(session, params)
    session.rollback()
    assert service._GATE_READ.one_or_none(session, params) is None
    session.rollback()


def test_driver_errors_are_wrapped(host: TestHost) -> None:
    broken = PreparedSelect(
        select(ConsentStateRow.__table__.c.state).where(
            ConsentStateRow.__table__.c.tenant_ref == bindparam("tenant"),
            text("no_such_column = 1"),
        )
    )
    with pytest.raises(exc.DBAPIError):
        broken.one_or_none(host.session(), {"tenant": "t"})
    host.session().rollback()



def test_run_together_raises_a_wrapped_error_and_the_session_recovers(host: TestHost) -> None:
    from samtycke_plugin.prepared import run_together

    tenant = host.new_tenant()
    broken = PreparedSelect(
        select(ConsentStateRow.__table__.c.state).where(
            ConsentStateRow.__table__.c.tenant_ref == bindparam("tenant"),
            text("no_such_column = 1"),
        )
    )
    session = host.session()
    with pytest.raises(exc.DBAPIError):
        run_together(session, [(service._GATE_READ, {"tenant": tenant, "client": "c1"}),
                                (broken, {"tenant": tenant})])
    session.rollback()
    assert service._GATE_READ.one_or_none(session, {"tenant": tenant, "client": "c1"}) is None
    session.rollback()


def test_run_together_converts_each_value_as_one_by_one_does(host: TestHost) -> None:
    """A unit of work converts each datetime once per type (a booking's writes share
    their "now"), and equal instants in other zones are not taken for one another:
    what ``run_together`` and ``executemany`` store is what the statements store one
    by one."""
    from datetime import UTC, datetime, timedelta, timezone

    from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, cast, insert

    from samtycke_plugin.models import UTCDateTime
    from samtycke_plugin.prepared import PreparedWrite, run_together

    metadata = MetaData()
    table = Table(
        "test_prepared_datetimes", metadata,
        Column("id", Integer, primary_key=True),
        Column("plain", DateTime(timezone=True)),  # SQLite keeps the wall-clock time
        Column("utc", UTCDateTime()),
    )
    metadata.create_all(host.engine)
    try:
        write = PreparedWrite(insert(table), column_keys=["id", "plain", "utc"])
        utc = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
        cest = utc.astimezone(timezone(timedelta(hours=2)))
        assert utc == cest and hash(utc) == hash(cest)
        rows = [
            {"id": 1, "plain": utc, "utc": utc},
            {"id": 2, "plain": cest, "utc": cest},
            {"id": 3, "plain": utc, "utc": cest},
            {"id": 4, "plain": None, "utc": utc},
        ]
        stored = select(
            table.c.id, cast(table.c.plain, String), cast(table.c.utc, String)
        ).order_by(table.c.id)
        session = host.session()
        session.rollback()
        run_together(session, [(write, row) for row in rows])
        together = [tuple(r) for r in session.execute(stored)]
        session.rollback()
        write.executemany(session, rows)
        many = [tuple(r) for r in session.execute(stored)]
        session.rollback()
        for row in rows:
            write.execute(session, row)
        alone = [tuple(r) for r in session.execute(stored)]
        session.rollback()
        assert together == alone
        assert many == alone
        assert len(together) == 4 and together[3][1] is None
        if host.engine.dialect.name == "sqlite":  # the zone mattered, and was kept
            assert together[0][1] != together[1][1]
    finally:
        host.session().rollback()
        metadata.drop_all(host.engine)


_STAMPS = Table(
    "prepared_test_stamps", MetaData(),
    Column("id", Integer, primary_key=True), Column("at", UTCDateTime()),
)
_READ_STAMP = PreparedSelect(select(_STAMPS.c.at).where(_STAMPS.c.id == bindparam("id")))


@pytest.mark.parametrize("stored", [
    "2026-03-04 05:06:07.123456",  # what SQLAlchemy writes
    "2026-03-04 05:06:07",  # the same without microseconds
    "2026-10-25 01:30:00.000000",  # the night the clocks go back in Sweden
    "2026-03-04",  # hand-written: a date only
    "2026-03-04T05:06:07.123456",  # hand-written: ISO with a T
    "2026-03-04 05:06:07.123456+02:00",  # hand-written: with an offset
    "2026-03-04 05:06:07.1234",  # hand-written: four decimals
    # SQLAlchemy's shape and length, but no parse with a zone appended: the general path
    "2026-03-04 05:06:07.1-0100",
    "2026-03-04 05:06:07.12345Z",
    "2026-03-04 05:06.07212345:",  # refused by both (fromisoformat would read it with a zone)
    None,
])
def test_utc_datetimes_read_as_sqlalchemy_reads_them(tmp_path: Path, stored: str | None) -> None:
    """On SQLite a prepared read turns stored text into an aware UTC datetime in one
    step (``UTCDateTime.fused_result_processor``); whatever the text, it gives what
    ``Session.execute`` gives."""
    engine = make_engine(f"sqlite:///{tmp_path / 'stamps.sqlite'}")
    _STAMPS.create(engine)
    try:
        with Session(engine) as session:
            session.execute(text("INSERT INTO prepared_test_stamps (id, at) VALUES (1, :at)"),
                            {"at": stored})
            try:
                expected = session.execute(
                    select(_STAMPS.c.at).where(_STAMPS.c.id == 1)
                ).scalar()
            except ValueError:
                with pytest.raises(ValueError):
                    _READ_STAMP.one_or_none(session, {"id": 1})
                return
            got = _READ_STAMP.one_or_none(session, {"id": 1}).at
            assert got == expected
            if expected is not None:
                assert got.tzinfo is UTC and got.utcoffset() == expected.utcoffset()
            session.rollback()
    finally:
        engine.dispose()


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(at=st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1),
                       timezones=st.just(UTC)))
def test_utc_datetimes_round_trip_through_prepared_reads(engine: Engine, at: datetime) -> None:
    """Any aware datetime written through SQLAlchemy reads back equal and in UTC."""
    _STAMPS.create(engine, checkfirst=True)
    try:
        with Session(engine) as session:
            session.execute(insert(_STAMPS), {"id": 1, "at": at})
            got = _READ_STAMP.one_or_none(session, {"id": 1}).at
            assert got == at and got.utcoffset() == timedelta(0)
            session.rollback()
    finally:
        _STAMPS.drop(engine)


def test_a_utc_datetime_has_no_fused_reader_off_sqlite() -> None:
    assert UTCDateTime().fused_result_processor(postgresql.dialect()) is None
    assert UTCDateTime().fused_result_processor(sqlite.dialect()) is not None


def test_parameters_are_picked_by_name_in_the_statement_s_order(host: TestHost) -> None:
    """A read whose parameters need no conversion takes them straight from the caller's
    mapping (one C call), in the order the compiled statement uses them; extra keys are
    ignored and a missing one is an error, as before."""
    session = host.session()
    tenant = host.new_tenant()
    hooks = host.hooks()
    host.activate(hooks, tenant, validity_days=365)
    client = host.new_client(tenant)
    plan = service._GATE_SHOWN_READ._plan(session.connection().dialect)
    assert plan.binds == () and plan.fixed == {}
    if plan.positional is not None:
        assert plan.pick is not None
        params = {"tenant": tenant, "client": client, "text_id": 7, "unused": object()}
        assert plan.pick(params) == tuple(params[name] for name in plan.positional)
    with pytest.raises((KeyError, exc.DBAPIError)):  # PostgreSQL's driver names it
        service._GATE_SHOWN_READ.one_or_none(session, {"tenant": tenant, "client": client})
    session.rollback()


def test_statements_are_logged_when_sqlalchemy_logs(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """With SQLAlchemy's statement log on (``echo`` or the ``sqlalchemy.engine`` logger
    at INFO), a prepared read goes through ``Session.execute`` and is logged like every
    other statement."""
    with caplog.at_level(logging.INFO, logger="sqlalchemy.engine"), Session(engine) as session:
        service._GATE_READ.one_or_none(session, {"tenant": "t-log", "client": "c1"})
        session.rollback()
    assert any("samtycke_consent_state" in r.getMessage() for r in caplog.records)

    def not_this_way(*_args: object) -> NoReturn:
        raise AssertionError("ran through Session.execute with nothing listening")

    with Session(engine) as session, pytest.MonkeyPatch.context() as patch:  # not otherwise
        patch.setattr(PreparedSelect, "_observed_run", not_this_way)
        assert service._GATE_READ.one_or_none(
            session, {"tenant": "t-log", "client": "c1"}) is None
        session.rollback()


def test_a_disconnect_is_raised_wrapped_and_invalidates(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A driver error the dialect calls a disconnect invalidates the connection and is
    raised as SQLAlchemy's wrapped error (closing the cursor of the closed connection
    must not hide it)."""
    broken = PreparedSelect(
        select(ConsentStateRow.__table__.c.state).where(text("no_such_column = 1"))
    )
    with Session(engine) as session:
        conn = session.connection()
        monkeypatch.setattr(conn.dialect, "is_disconnect", lambda *_a, **_k: True)
        with pytest.raises(exc.DBAPIError) as raised:
            broken.one_or_none(session, {})
        assert raised.value.connection_invalidated
        assert conn.invalidated
        session.rollback()
