"""Helpers for the proof-of-consent tests: fresh databases, a tamper connection that
switches the append-only triggers off (as a database superuser could), a ledger with
one event of every kind, and the attacker who recomputes the whole chain."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, NamedTuple

import pytest
from conftest import create_pg_database, drop_pg_database
from hostkit import TestHost
from sqlalchemy import Connection, Engine, select, text

from hookspecs.types import TenantRef
from samtycke_plugin.chain import CHAINED_FIELDS, row_hash
from samtycke_plugin.db import make_engine, upgrade
from samtycke_plugin.ledger import NewEvent, append
from samtycke_plugin.models import GENESIS_HASH, ConsentEvent, Evidence, Practice, TextVersion
from samtycke_plugin.rules import State

EVENT_TABLE = "samtycke_consent_event"


@pytest.fixture(
    name="fresh", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def fresh_fixture(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Engine]:
    """A migrated database of this test's own (destructive tests only)."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'tamper.sqlite'}")
        upgrade(engine)
        yield engine
        engine.dispose()
        return
    admin = request.getfixturevalue("pg_server")
    url = create_pg_database(admin)
    engine = make_engine(url)
    upgrade(engine)
    yield engine
    engine.dispose()
    drop_pg_database(admin, url)


@pytest.fixture(name="fhost")
def fhost_fixture(fresh: Engine) -> Iterator[TestHost]:
    h = TestHost(fresh)
    yield h
    h.close()


@contextmanager
def tampering(engine: Engine) -> Iterator[Connection]:
    """A transaction in which the ledger's triggers and foreign keys do not apply.

    SQLite: the triggers are dropped and recreated afterwards (same SQL), foreign keys
    switched off for the connection.  PostgreSQL: ``session_replication_role =
    replica`` for this transaction only, which skips user triggers and foreign keys.
    Use only on a database of the test's own.
    """
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            raw = conn.connection.driver_connection
            assert raw is not None
            raw.execute("PRAGMA foreign_keys = OFF")
            triggers = raw.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?",
                (EVENT_TABLE,),
            ).fetchall()
            assert {name for name, _ in triggers} == {
                f"{EVENT_TABLE}_no_update", f"{EVENT_TABLE}_no_delete"
            }
            try:
                with conn.begin():
                    for name, _ in triggers:
                        conn.exec_driver_sql(f"DROP TRIGGER {name}")
                    yield conn
            finally:
                with conn.begin():
                    for _name, sql in triggers:
                        conn.exec_driver_sql(sql)
                raw.execute("PRAGMA foreign_keys = ON")
        else:
            with conn.begin():
                conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
                yield conn


def triggers_refuse(engine: Engine, tenant: str) -> bool:
    """True when an UPDATE of a ledger row is refused by the database (the triggers work)."""
    try:
        with engine.begin() as conn:
            conn.execute(
                text(f"UPDATE {EVENT_TABLE} SET actor = 'x' WHERE tenant_ref = :t"), {"t": tenant}
            )
    except Exception:  # the database's refusal, whatever the driver calls it
        return True
    return False


#: One event of every kind the ledger knows, with the columns each kind typically fills.
KINDS: tuple[State, ...] = tuple(State)


class Made(NamedTuple):
    """An appended event, as plain values (safe to use after the session rolls back)."""

    id: int
    seq: int
    client_ref: str
    evidence_sha256: str | None


def every_kind_history(host: TestHost, tenant: str) -> dict[State, Made]:
    """Append one event of every state (plus a trailing event), committed.

    Returns the event of each state.  Most events carry evidence (IP, user agent or a
    note), all carry a text version; the erased event belongs to its own client.
    """
    session = host.session()
    texts = list(
        session.scalars(
            select(TextVersion).where(TextVersion.tenant_ref == tenant).order_by(TextVersion.id)
        )
    )
    text = texts[0]
    base = host.now()
    made: dict[State, Made] = {}
    for i, state in enumerate(KINDS):
        at = base + timedelta(minutes=i, microseconds=123457)
        client = "c-erased" if state is State.ERASED else "c-main"
        new = NewEvent(
            tenant_ref=tenant, client_ref=client, state=state,
            channel="online_booking" if i % 2 else "manual",
            method="checkbox" if i % 2 else "paper",
            actor="client" if i % 2 else "staff:s1", occurred_at=at,
            text_version_id=text.id, text_major=text.major, text_sha256=text.sha256,
            language=text.language,
            given_at=at - timedelta(hours=1) if state in (State.GIVEN, State.RENEWED) else None,
            expires_at=at + timedelta(days=365) if state in (State.GIVEN, State.RENEWED) else None,
            booking_ref=f"b-{i}" if i % 3 else None,
            request_id=1000 + i if i % 4 == 1 else None,
            # Erasure's own event keeps no evidence (as in the app), whatever its place.
            ip_address="198.51.100.23" if i % 2 and state is not State.ERASED else None,
            user_agent=(
                "Mozilla/5.0 (tamper test)" if i % 2 and state is not State.ERASED else None
            ),
            note=f"Note for {state.value}" if i % 3 == 0 and state is not State.ERASED else None,
        )
        [ev] = append(session, [new])
        made[state] = Made(ev.id, ev.seq, ev.client_ref, ev.evidence_sha256)
    append(
        session,
        [NewEvent(
            tenant_ref=tenant, client_ref="c-last", state=State.GIVEN, channel="manual",
            method="verbal", actor="staff:s1", occurred_at=base + timedelta(hours=1),
            text_version_id=text.id, text_major=text.major, text_sha256=text.sha256,
            language=text.language, given_at=base,
        )],
    )
    session.commit()
    # the events above run an hour ahead of the host's clock: catch the clock up, so
    # that what the test records next does not lie before them (verify refuses that)
    host.advance(hours=1, minutes=1)
    return made


def new_practice(host: TestHost) -> TenantRef:
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant)
    return tenant


def recompute_chain(conn: Connection, tenant: str) -> None:
    """The attacker who can write the database: recompute every hash of a practice's
    chain from its current rows and move the practice's chain head along."""
    table = ConsentEvent.__table__
    rows = conn.execute(
        select(table).where(table.c.tenant_ref == tenant).order_by(table.c.seq)
    ).mappings().all()
    prev = GENESIS_HASH
    for row in rows:
        fields: dict[str, Any] = {k: row[k] for k in CHAINED_FIELDS}
        digest = row_hash(prev, fields)
        conn.execute(
            table.update().where(table.c.id == row["id"]).values(prev_hash=prev, row_hash=digest)
        )
        prev = digest
    last = rows[-1]["seq"] if rows else 0
    conn.execute(
        Practice.__table__.update()
        .where(Practice.__table__.c.tenant_ref == tenant)
        .values(head_seq=last, head_hash=prev)
    )


def evidence_of(conn: Connection, event_id: int) -> Any:
    return conn.execute(
        select(Evidence.__table__).where(Evidence.__table__.c.event_id == event_id)
    ).mappings().first()
