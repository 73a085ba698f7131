"""PreparedSelect (the hot-path reads) returns exactly what Session.execute returns, is
seen by statement listeners, and wraps driver errors like SQLAlchemy does."""

from __future__ import annotations

import pytest
from hostkit import TestHost, count_statements, submission
from sqlalchemy import bindparam, event, exc, select, text

from samtycke_plugin import service
from samtycke_plugin.models import ConsentStateRow
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


def test_run_together_gives_what_one_by_one_gives(host: TestHost) -> None:
    """Statements sent together (PostgreSQL pipeline mode) return the rows and counts
    that running them one by one returns, in order, in the same transaction."""
    from samtycke_plugin.ledger import _SET_HEAD_HASH, LOCK_HEAD
    from samtycke_plugin.prepared import run_together

    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, validity_days=365)
    given = host.new_client(tenant)
    text_id = service.current_text(
        host.session(), service.require_practice(host.session(), tenant), "sv"
    ).id
    sub = submission(tenant, given, ticked=True, text_id=text_id)
    hooks.submitted(sub, "b1", given)  # type: ignore[arg-type]
    host.session().commit()
    session = host.session()
    steps = [
        (LOCK_HEAD, {"tenant": tenant}),
        (service._GATE_READ, {"tenant": tenant, "client": given}),
        (service._GATE_SHOWN_READ, {"tenant": tenant, "client": "nobody", "text_id": text_id}),
        (_SET_HEAD_HASH, {"tenant": "no-such-practice", "digest": "0" * 64}),
    ]
    together = run_together(session, steps)
    session.rollback()
    alone = [prepared._run(session, params) for prepared, params in steps]
    session.rollback()
    assert [(_tuples(row), count) for row, count in together][:3] == [
        (_tuples(row), count) for row, count in alone
    ][:3]
    assert together[3][1] == alone[3][1] == 0  # an UPDATE that matched nothing
    head, gate = together[0][0], together[1][0]
    assert head.head_seq == 1 and gate.state == "given" and gate.since.tzinfo is not None


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
