"""Faults (checklist F5, F6, F7, F8, F9, F11): a failure at every statement of every
consent write path leaves the database exactly as before and a retry records exactly
one event; a killed PostgreSQL backend mid-transaction; SQLite busy; an unreachable
database fails closed; a writer killed during a burst loses nothing it confirmed;
read-only and full storage give a clean error; migrations fail atomically."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hostkit import QueryHost, TestHost, staff, submission
from reliability_support import (
    FIGURES,
    FaultInjector,
    SqliteDriverFaults,
    assert_invariants,
    book,
    dialect,
    dump,
    each_fault,
    events,
    form_text_id,
)
from sqlalchemy import Engine, create_engine, event, inspect, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from werkzeug.test import Client
from werkzeug.wrappers import Response

from hookspecs.types import ClientRef, TenantRef
from samtycke_plugin import consent, practice_texts, practices
from samtycke_plugin.db import (
    configure_sqlite,
    is_transient_error,
    make_engine,
    run_in_transaction,
    upgrade,
)
from samtycke_plugin.email import batch as batch_requests
from samtycke_plugin.errors import Unavailable
from samtycke_plugin.ledger import NewEvent, append
from samtycke_plugin.models import OutboxMessage
from samtycke_plugin.rules import State
from samtycke_plugin.web.base import WebApp

pytestmark = pytest.mark.timeout(300)

MODES = [
    pytest.param(("sqlite", "raise"), id="sqlite-raise"),
    pytest.param(("postgres", "raise"), id="postgres-raise", marks=pytest.mark.postgres),
    pytest.param(("postgres", "terminate"), id="postgres-terminate", marks=pytest.mark.postgres),
]


@pytest.fixture(params=MODES)
def faulty(request: pytest.FixtureRequest) -> Iterator[tuple[TestHost, FaultInjector]]:
    """A host and a fault injector: a driver error at step N, or (PostgreSQL) the
    session's backend killed with ``pg_terminate_backend`` at step N."""
    db, mode = request.param
    engine: Engine = request.getfixturevalue("sqlite_engine" if db == "sqlite" else "pg_engine")
    admin = request.getfixturevalue("pg_server") if mode == "terminate" else None
    host = TestHost(engine)
    injector = FaultInjector(engine, mode=mode, admin_url=admin)
    yield host, injector
    injector.close()
    host.close()


def _run_every_fault(
    host: TestHost, injector: FaultInjector, tenant: str, path: Callable[[], object]
) -> tuple[int, object]:
    host.session().rollback()
    faults, result = each_fault(
        injector, path,
        reset=host.rollback,
        snapshot=lambda: dump(host.engine, [tenant]),
    )
    assert faults >= 3, "the path ran fewer statements than expected"
    return faults, result


def _active(host: TestHost, **settings: object) -> tuple[TenantRef, Any]:
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, **settings)
    return tenant, hooks


def test_fault_at_every_step_of_activation(faulty: tuple[TestHost, FaultInjector]) -> None:
    host, injector = faulty
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.active.setdefault(tenant, set()).add("samtycke")

    def path() -> None:
        hooks.activate(tenant, "samtycke", {"require_consent_for_online_booking": True})
        host.session().commit()

    _faults, _ = _run_every_fault(host, injector, tenant, path)
    practice = practices.require_practice(host.session(), tenant)
    assert practice.setup_complete and practice.head_seq == 0
    assert sorted(practice_texts.text_languages(host.session(), practice)) == ["en", "sv"]
    host.session().rollback()
    assert_invariants(host.engine, [tenant])


def test_fault_at_every_step_of_a_booking(faulty: tuple[TestHost, FaultInjector]) -> None:
    """F5 for the booking: check and record in the host's transaction."""
    host, injector = faulty
    tenant, hooks = _active(host, require_consent_for_online_booking=True)
    client = host.new_client(tenant)
    shown = form_text_id(host, hooks, tenant, client)
    vetoes_seen: list[str] = []

    def path() -> list[Any]:
        result = book(host, hooks, tenant, client, booking="b-1", ticked=True, text_id=shown)
        vetoes_seen.extend(v.key for v in result)
        return result

    _faults, result = _run_every_fault(host, injector, tenant, path)
    assert result == []
    # a fault during the check is a retryable veto (fail closed), never an acceptance
    assert set(vetoes_seen) <= {"booking.check_failed"} and vetoes_seen
    [ev] = events(host.engine, tenant)
    assert (ev.state, ev.text_version_id, ev.booking_ref) == ("given", shown, "b-1")
    assert_invariants(host.engine, [tenant])


@pytest.mark.usefixtures("unobserved")
def test_driver_level_fault_at_every_step_of_a_booking(sqlite_engine: Engine) -> None:
    """Faults below SQLAlchemy, with no statement listener installed (as in production):
    the SQLite library interrupts the N-th statement of the booking, for every N."""
    host = TestHost(sqlite_engine)
    injector = SqliteDriverFaults(sqlite_engine)
    tenant, hooks = _active(host, require_consent_for_online_booking=True)
    client = host.new_client(tenant)
    shown = form_text_id(host, hooks, tenant, client)
    assert not sqlite_engine.dispatch.before_cursor_execute  # nothing observes
    vetoes_seen: list[str] = []

    def path() -> list[Any]:
        result = book(host, hooks, tenant, client, booking="b-1", ticked=True, text_id=shown)
        vetoes_seen.extend(v.key for v in result)
        return result

    faults, result = _run_every_fault(host, injector, tenant, path)  # type: ignore[arg-type]
    assert result == [] and faults >= 5
    assert set(vetoes_seen) == {"booking.check_failed"}
    [ev] = events(host.engine, tenant)
    assert (ev.state, ev.text_version_id) == ("given", shown)
    host.close()
    assert_invariants(sqlite_engine, [tenant])


@pytest.mark.postgres
@pytest.mark.usefixtures("unobserved")
@pytest.mark.parametrize("when", ["before-check", "between-check-and-record"])
def test_postgres_backend_killed_during_a_booking(
    pg_engine: Engine, pg_server: str, when: str
) -> None:
    """With no statement listener (as in production), the session's PostgreSQL backend
    is killed before the gate read (→ a retryable veto) or between check and record (→ the host's
    transaction fails with a disconnect it can retry); nothing is written, and the
    host's retry records exactly one event on a fresh connection."""
    host = TestHost(pg_engine)
    tenant, hooks = _active(host, require_consent_for_online_booking=True)
    client = host.new_client(tenant)
    shown = form_text_id(host, hooks, tenant, client)
    assert not pg_engine.dispatch.before_cursor_execute
    admin = create_engine(pg_server.replace("postgresql://", "postgresql+psycopg://"),
                          isolation_level="AUTOCOMMIT")

    def kill() -> None:
        pid = host.session().connection().connection.dbapi_connection.info.backend_pid
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})
        FIGURES["faults injected (postgresql, terminate, unobserved)"] += 1

    before = dump(pg_engine, [tenant])
    if when == "before-check":
        kill()
        vetoes = book(host, hooks, tenant, client, booking="b-1", ticked=True, text_id=shown)
        assert [(v.key, v.retryable) for v in vetoes] == [("booking.check_failed", True)]
    else:
        with pytest.raises(OperationalError) as err:
            book(host, hooks, tenant, client, booking="b-1", ticked=True, text_id=shown,
                 between=kill)
        assert is_transient_error(err.value)  # the host knows it may run the booking again
    host.rollback()
    assert dump(pg_engine, [tenant]) == before
    assert book(host, hooks, tenant, client, booking="b-1", ticked=True, text_id=shown) == []
    assert [e.state for e in events(pg_engine, tenant)] == ["given"]
    admin.dispose()
    host.close()
    assert_invariants(pg_engine, [tenant])


def test_fault_at_every_step_of_manual_recording(faulty: tuple[TestHost, FaultInjector]) -> None:
    host, injector = faulty
    tenant, _hooks = _active(host)
    client = host.new_client(tenant)

    def path() -> int:
        ev = consent.record_manual(
            host, tenant, client, staff(), method="paper",
            given_at=host.now() - timedelta(days=2), note="Signerat papper",
        )
        host.session().commit()
        return ev.seq

    _faults, seq = _run_every_fault(host, injector, tenant, path)
    assert seq == 1
    [ev] = events(host.engine, tenant)
    assert (ev.channel, ev.method, ev.state) == ("manual", "paper", "given")
    assert_invariants(host.engine, [tenant])


def test_fault_at_every_step_of_a_set_based_batch(
    faulty: tuple[TestHost, FaultInjector],
) -> None:
    """F5 for "ask everyone" by a host that gives its client query (one transaction of a
    few statements): a fault at any of them leaves nothing queued, and the run that
    completes queues each client once with the right counts."""
    host, injector = faulty
    qhost = QueryHost(host.engine)
    tenant, _hooks = _active(qhost)
    clients = [qhost.new_client(tenant, email=f"k{i}@example.org") for i in range(5)]
    qhost.new_client(tenant, email="inte-en-adress")

    def path() -> batch_requests.BatchResult:
        return batch_requests.request_batch(qhost, tenant, actor="staff:s1")

    _faults, result = _run_every_fault(qhost, injector, tenant, path)
    assert isinstance(result, batch_requests.BatchResult)
    assert (result.asked, result.skipped_no_email, result.total) == (5, 1, 6)
    queued = qhost.session().scalars(
        select(OutboxMessage.client_ref).where(OutboxMessage.tenant_ref == tenant)
    ).all()
    assert sorted(queued) == sorted(clients)
    qhost.session().rollback()
    assert_invariants(qhost.engine, [tenant])
    qhost.close()


def test_fault_at_every_step_of_withdrawal(faulty: tuple[TestHost, FaultInjector]) -> None:
    host, injector = faulty
    tenant, _hooks = _active(host)
    client = host.new_client(tenant)
    consent.record_manual(host, tenant, client, staff(), method="verbal",
                          given_at=host.now(), note=None)
    host.session().commit()

    def path() -> None:
        consent.withdraw(host, tenant, client, actor="client", channel="manual",
                         method="verbal", by_client=True, note="Ringde och återkallade")
        host.session().commit()

    _run_every_fault(host, injector, tenant, path)
    assert [e.state for e in events(host.engine, tenant)] == ["given", "withdrawn"]
    assert consent.client_status(host, tenant, client).status.value == "withdrawn"
    host.session().rollback()
    assert_invariants(host.engine, [tenant])


@pytest.mark.parametrize("kind", ["correction", "content"])
def test_fault_at_every_step_of_publishing_a_text(
    faulty: tuple[TestHost, FaultInjector], kind: str
) -> None:
    host, injector = faulty
    tenant, _hooks = _active(host)
    client = host.new_client(tenant)
    consent.record_manual(host, tenant, client, staff(), method="paper",
                          given_at=host.now(), note=None)
    host.session().commit()

    def path() -> list[int]:
        versions = practice_texts.publish_text(
            host, tenant, bodies={"sv": "Vi sparar dina uppgifter för att kunna boka tider.\n",
                                  "en": "We keep your details so that we can book your visits.\n"},
            kind=kind, reason="Ny text", actor="staff:s1", expected_major=1,
        )
        host.session().commit()
        return [v.id for v in versions]

    _run_every_fault(host, injector, tenant, path)
    practice = practices.require_practice(host.session(), tenant)
    assert practice.current_major == (2 if kind == "content" else 1)
    expected = "outdated" if kind == "content" else "valid"
    assert consent.client_status(host, tenant, client).status.value == expected
    host.session().rollback()
    assert_invariants(host.engine, [tenant])


def test_fault_at_every_step_of_a_ledger_append(faulty: tuple[TestHost, FaultInjector]) -> None:
    host, injector = faulty
    tenant, _hooks = _active(host)
    for k in range(3):  # a chain with history, so a fault can't pass as an empty chain
        append(host.session(), [NewEvent(
            tenant_ref=tenant, client_ref=f"c{k}", state=State.GIVEN, channel="manual",
            actor="staff:s1", occurred_at=host.now(), text_major=1)])
    host.session().commit()

    def path() -> int:
        [ev] = append(host.session(), [NewEvent(
            tenant_ref=tenant, client_ref="c1", state=State.WITHDRAWN, channel="manual",
            actor="staff:s1", occurred_at=host.now(), text_major=1,
            ip_address="198.51.100.7", user_agent="Firefox", note="med bevis")])
        host.session().commit()
        return ev.seq

    _faults, seq = _run_every_fault(host, injector, tenant, path)
    assert seq == 4
    assert [e.seq for e in events(host.engine, tenant)] == [1, 2, 3, 4]
    assert_invariants(host.engine, [tenant])


def test_a_rolled_back_append_leaves_nothing_behind_in_the_session(host: TestHost) -> None:
    """Regression: ``ledger.append`` attached the event it returned to the session
    outside the transaction, so after a rollback the session still held an object for
    a row that no longer existed, and the host's retry in the same session failed on
    SQLite (which reuses the id) with "another instance with key … is already present"."""
    tenant, _hooks = _active(host)
    new = NewEvent(tenant_ref=tenant, client_ref="c1", state=State.GIVEN, channel="manual",
                   actor="staff:s1", occurred_at=host.now(), text_major=1)
    [first] = append(host.session(), [new])
    host.session().rollback()  # e.g. the host's booking failed after our hook ran
    assert first not in host.session()
    [second] = append(host.session(), [new])
    host.session().commit()
    assert second.seq == 1
    assert [e.seq for e in events(host.engine, tenant)] == [1]
    assert_invariants(host.engine, [tenant])


def test_a_damaged_projection_is_rebuilt_exactly_from_the_ledger(host: TestHost) -> None:
    """The projection is derived data: after it is damaged (a row deleted, a state
    edited by hand), ``ledger.rebuild_projection`` restores exactly the replay of the
    ledger, keeping the delivery marks it cannot derive."""
    from samtycke_plugin.ledger import projection, rebuild_projection, replay
    from samtycke_plugin.models import ConsentStateRow

    tenant, _ = _active(host, validity_days=30)
    clients = [host.new_client(tenant) for _ in range(5)]
    for k, client in enumerate(clients):
        consent.record_manual(host, tenant, client, staff(), method="paper",
                              given_at=host.now(), note=None)
        if k % 2:
            consent.withdraw(host, tenant, client, actor="client", channel="manual",
                             method=None, by_client=True)
    host.session().commit()
    expected = replay(host.session(), tenant)
    s = host.session()
    s.execute(ConsentStateRow.__table__.update().where(
        ConsentStateRow.tenant_ref == tenant, ConsentStateRow.client_ref == clients[0]
    ).values(state="given", delivery="bounced"))
    s.execute(ConsentStateRow.__table__.delete().where(
        ConsentStateRow.tenant_ref == tenant, ConsentStateRow.client_ref == clients[1]))
    s.commit()
    assert projection(s, tenant) != expected
    assert rebuild_projection(s, tenant) == len(clients)
    s.commit()
    assert projection(s, tenant) == expected == replay(s, tenant)
    kept = s.scalar(select(ConsentStateRow.delivery).where(
        ConsentStateRow.tenant_ref == tenant, ConsentStateRow.client_ref == clients[0]))
    assert kept == "bounced"
    s.rollback()
    assert_invariants(host.engine, [tenant])


# -- F7: SQLite busy ----------------------------------------------------------------------


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Iterator[tuple[str, Engine]]:
    url = f"sqlite:///{tmp_path / 'busy.sqlite'}"
    engine = make_engine(url)
    upgrade(engine)
    yield str(tmp_path / "busy.sqlite"), engine
    engine.dispose()


def _short_wait_engine(path: str, busy_ms: int = 100) -> Engine:
    engine = create_engine(f"sqlite:///{path}")
    configure_sqlite(engine, busy_timeout_ms=busy_ms)
    return engine


def test_sqlite_busy_is_retried_a_bounded_number_of_times_then_a_clear_error(
    sqlite_file: tuple[str, Engine],
) -> None:
    """F7: another process holds the write lock longer than the busy timeout."""
    path, engine = sqlite_file
    setup = TestHost(engine)
    tenant, _ = _active(setup)
    client = setup.new_client(tenant)
    setup.close()

    eng = _short_wait_engine(path)
    host = TestHost(eng)
    host.clients = setup.clients
    holder = sqlite3.connect(path, isolation_level=None, timeout=0, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    attempts = 0
    begin_unit = host.unit_of_work

    def counted() -> Any:  # an attempt waits for the lock as its unit of work begins
        nonlocal attempts
        attempts += 1
        return begin_unit()

    host.unit_of_work = counted  # type: ignore[method-assign]

    def unit(session: Session) -> int:
        ev = consent.record_manual(host, tenant, client, staff(), method="paper",
                                   given_at=host.now(), note=None)
        return ev.seq

    started = time.monotonic()
    with pytest.raises(Unavailable) as err:
        run_in_transaction(host, unit, attempts=3)
    elapsed = time.monotonic() - started
    assert attempts == 3  # each attempt waited for the lock as it began
    assert "nothing was saved" in str(err.value) and "try again" in str(err.value)
    assert "locked" not in str(err.value)  # never the raw driver message
    assert 0.25 < elapsed < 5, elapsed  # three bounded waits, not forever
    assert holder.in_transaction
    FIGURES["SQLite busy: bounded retries then a clear error"] += 1

    # the lock is released while the app is retrying: exactly one event
    attempts = 0
    threading.Timer(0.15, holder.rollback).start()
    seq = run_in_transaction(host, unit, attempts=10)
    assert seq == 1 and 1 <= attempts < 10
    holder.close()
    assert [e.state for e in events(engine, tenant)] == ["given"]
    host.close()
    eng.dispose()
    assert_invariants(engine, [tenant])


def _page_app(record: Callable[[Any], Response]) -> WebApp:
    return WebApp([("/record", "record", record, ("POST",)), ("/show", "show", record, ("GET",))])


def test_pages_turn_a_busy_database_into_503_and_nothing_saved(
    sqlite_file: tuple[str, Engine],
) -> None:
    """F7 through the app's page plumbing (web.base): the handler is rerun, then 503."""
    path, engine = sqlite_file
    setup = TestHost(engine)
    tenant, _ = _active(setup)
    client = setup.new_client(tenant)
    setup.close()
    eng = _short_wait_engine(path)
    host = TestHost(eng)
    host.clients = setup.clients
    calls = units = 0
    begin_unit = host.unit_of_work

    def counted() -> Any:  # the unit of work waits for the lock as it begins
        nonlocal units
        units += 1
        return begin_unit()

    host.unit_of_work = counted  # type: ignore[method-assign]

    def handler(request: Any) -> Response:
        nonlocal calls
        calls += 1
        consent.record_manual(host, tenant, client, staff(), method="paper",
                              given_at=host.now(), note=None)
        return Response("saved")

    app = _page_app(handler)
    environ = {"booking.host": host, "booking.tenant": tenant, "booking.staff": staff()}
    holder = sqlite3.connect(path, isolation_level=None, timeout=0)
    holder.execute("BEGIN IMMEDIATE")
    resp = Client(app).post("/record", environ_overrides=environ, headers={"Accept-Language": "en"})
    assert resp.status_code == 503
    body = resp.get_data(as_text=True)
    assert "nothing was saved" in body and "Traceback" not in body and "locked" not in body
    assert units == 5  # the whole unit was begun again, a bounded number of times
    assert calls == 0  # the handler never ran without the lock
    holder.rollback()
    resp = Client(app).post("/record", environ_overrides=environ)
    assert resp.status_code == 200 and calls == 1 and units == 6
    holder.close()
    host.close()
    eng.dispose()
    assert [e.state for e in events(engine, tenant)] == ["given"]


# -- F6: database unreachable ------------------------------------------------------------


def _unreachable_engines(tmp_path: Path) -> list[Engine]:
    return [
        make_engine(f"sqlite:///{tmp_path / 'missing-dir' / 'x.sqlite'}"),
        make_engine(
            "postgresql://postgres@127.0.0.1:9/samtycke", connect_args={"connect_timeout": 2}
        ),
    ]


def test_unreachable_database_fails_closed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """F6: the booking check cannot read consent → a retryable veto ("try again"),
    never an accepted booking; recording raises into the host's error path; the
    app's pages answer 503 with nothing saved."""
    for engine in _unreachable_engines(tmp_path):
        host = TestHost(engine)
        hooks = host.hooks()
        tenant = host.new_tenant()
        host.active.setdefault(tenant, set()).add("samtycke")
        client = host.new_client(tenant)
        sub = submission(tenant, client, ticked=True, text_id=1)
        vetoes = hooks.submit_check(sub)
        assert [(v.key, v.retryable) for v in vetoes] == [("booking.check_failed", True)]
        assert "Försök igen" in vetoes[0].message
        with pytest.raises(OperationalError):
            hooks.submitted(sub, "b-1", ClientRef(client))  # type: ignore[arg-type]
        host.session().rollback()

        def handler(
            request: Any, host: TestHost = host, tenant: str = tenant, client: str = client
        ) -> Response:
            consent.record_manual(host, tenant, client, staff(), method="paper",
                                  given_at=host.now(), note=None)
            return Response("saved")

        environ = {"booking.host": host, "booking.tenant": tenant, "booking.staff": staff()}
        resp = Client(_page_app(handler)).post("/record", environ_overrides=environ,
                                                headers={"Accept-Language": "sv"})
        assert resp.status_code == 503
        assert "inget sparades" in resp.get_data(as_text=True)
        host.close()
        engine.dispose()
        FIGURES["unreachable-database bookings refused (fail closed)"] += 1
    assert client not in caplog.text  # no personal refs in the logs


# -- F8: a writer killed during a burst ------------------------------------------------------

_WRITER = textwrap.dedent(
    """
    import sys
    from datetime import UTC, datetime
    from samtycke_plugin.cli.context import StandaloneHost
    from samtycke_plugin.db import make_engine, run_in_transaction
    from samtycke_plugin.ledger import NewEvent, append
    from samtycke_plugin.rules import State

    engine = make_engine(sys.argv[1])
    tenant = sys.argv[2]
    host = StandaloneHost(engine, "http://writer.test")
    for k in range(100000):
        now = datetime.now(UTC)
        ev = run_in_transaction(host, lambda s: append(s, [NewEvent(
            tenant_ref=tenant, client_ref=f"c{k % 50}",
            state=State.GIVEN if k % 3 else State.WITHDRAWN,
            channel="manual", actor="staff:s1", occurred_at=now, text_major=1)])[0].seq)
        print(ev, flush=True)   # printed only after the commit returned
    """
)


@pytest.mark.slow
def test_a_writer_killed_during_a_burst_loses_nothing_it_confirmed(engine: Engine) -> None:
    """F8: SIGKILL a writer process mid-burst; every commit it confirmed is there,
    the chain verifies, SQLite's integrity check is ok."""
    host = TestHost(engine)
    tenant, _ = _active(host)
    host.close()
    url = engine.url.render_as_string(hide_password=False)
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, url, tenant],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=str(Path(__file__).resolve().parents[2]),
    )
    assert proc.stdout is not None
    confirmed: list[int] = []
    deadline = time.monotonic() + 60
    while len(confirmed) < 300 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        confirmed.append(int(line))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert len(confirmed) >= 300, proc.stderr.read() if proc.stderr else ""
    stored = [e.seq for e in events(engine, tenant)]
    assert set(confirmed) <= set(stored)  # every confirmed commit survived
    assert stored == list(range(1, len(stored) + 1))
    FIGURES[f"writes confirmed before SIGKILL ({dialect(engine)})"] += len(confirmed)
    assert_invariants(engine, [tenant])


# -- F9: read-only or full storage -----------------------------------------------------------


def test_full_disk_gives_a_clean_error_and_history_stays_readable(
    sqlite_file: tuple[str, Engine],
) -> None:
    """F9 (full): SQLite's page budget exhausted (``max_page_count``) → the write fails
    whole, nothing half-written, earlier events and badges still readable."""
    path, engine = sqlite_file
    host = TestHost(engine)
    tenant, _hooks = _active(host)
    client = host.new_client(tenant)
    consent.record_manual(host, tenant, client, staff(), method="paper", given_at=host.now(),
                          note=None)
    host.session().commit()
    host.close()
    before = dump(engine, [tenant])

    full = create_engine(f"sqlite:///{path}")
    configure_sqlite(full)

    @event.listens_for(full, "connect")
    def _cap(dbapi_connection: Any, _record: Any) -> None:
        pages = dbapi_connection.execute("PRAGMA page_count").fetchone()[0]
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")

    h2 = TestHost(full)
    h2.clients, h2.practices, h2.active = host.clients, host.practices, host.active
    big_note = "x" * 1900
    with pytest.raises(OperationalError, match="full"):
        for k in range(200):  # fill the last free pages, then hit the limit
            consent.record_manual(h2, tenant, host.new_client(tenant), staff(), method="paper",
                                  given_at=h2.now(), note=big_note + str(k))
            h2.session().flush()
    h2.session().rollback()
    assert dump(engine, [tenant]) == before
    # reads still work on the full database
    [badge] = hooks_for_badges(h2, tenant, client)
    assert badge == "ok"
    h2.close()
    full.dispose()
    assert_invariants(engine, [tenant])


def hooks_for_badges(host: TestHost, tenant: str, client: str) -> list[str]:
    badges = host.hooks().list_badges(TenantRef(tenant), [ClientRef(client)], "sv")
    host.session().rollback()
    return [b.tone for b in badges[ClientRef(client)]]


def test_read_only_storage_gives_a_clean_error_and_history_stays_readable(
    sqlite_file: tuple[str, Engine],
) -> None:
    """F9 (read-only): the database file opened read-only → a write fails with a clean
    error (503 on the app's pages), the badge still shows the last known status."""
    path, engine = sqlite_file
    host = TestHost(engine)
    tenant, _hooks = _active(host)
    client = host.new_client(tenant)
    consent.record_manual(host, tenant, client, staff(), method="paper", given_at=host.now(),
                          note=None)
    host.session().commit()
    host.close()
    engine.dispose()  # checkpoint the WAL into the main file
    ro = make_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    h2 = TestHost(ro)
    h2.clients, h2.practices, h2.active = host.clients, host.practices, host.active
    assert hooks_for_badges(h2, tenant, client) == ["ok"]

    def handler(request: Any) -> Response:
        consent.withdraw(h2, tenant, client, actor="client", channel="manual", method=None,
                         by_client=True)
        return Response("saved")

    environ = {"booking.host": h2, "booking.tenant": tenant, "booking.staff": staff()}
    resp = Client(_page_app(handler)).post("/record", environ_overrides=environ)
    assert resp.status_code == 503 and "Traceback" not in resp.get_data(as_text=True)
    assert hooks_for_badges(h2, tenant, client) == ["ok"]
    h2.close()
    ro.dispose()
    assert [e.state for e in events(engine, tenant)] == ["given"]


# -- F11: migrations ---------------------------------------------------------------------------


def _app_tables(engine: Engine) -> set[str]:
    """The app's tables that hold something: the (empty) version table Alembic keeps
    after a downgrade to base does not count."""
    names = {t for t in inspect(engine).get_table_names() if t.startswith("samtycke_")}
    if "samtycke_alembic_version" in names:
        with engine.connect() as conn:
            if not conn.execute(text("SELECT count(*) FROM samtycke_alembic_version")).scalar():
                names.discard("samtycke_alembic_version")
            conn.rollback()
    return names


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'mig.sqlite'}")
        yield engine
        engine.dispose()
    else:
        from conftest import create_pg_database, drop_pg_database

        admin = request.getfixturevalue("pg_server")
        url = create_pg_database(admin)
        engine = make_engine(url)
        yield engine
        engine.dispose()
        drop_pg_database(admin, url)


def test_a_migration_failing_halfway_changes_nothing(empty_db: Engine) -> None:
    """F11: a failure at any statement of the upgrade leaves no app table behind (both
    databases run the migration in one transaction), the host's own table is untouched,
    and a clean upgrade then works; down and up again also works."""
    engine = empty_db
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE host_booking (id INTEGER PRIMARY KEY, note TEXT)"))
        conn.execute(text("INSERT INTO host_booking (id, note) VALUES (1, 'kept')"))
    injector = FaultInjector(engine)
    from samtycke_plugin.db import downgrade

    upgrade(engine)
    downgrade(engine, "base")
    assert _app_tables(engine) == set()
    with injector.armed(None) as counter:
        upgrade(engine)
    steps = counter.steps
    downgrade(engine, "base")
    for n in range(1, steps + 1):
        with injector.armed(n), pytest.raises(OperationalError):
            upgrade(engine)
        assert _app_tables(engine) == set(), f"fault at step {n} of {steps} left tables"
        FIGURES[f"migration faults injected ({dialect(engine)})"] += 1
    upgrade(engine)
    host = TestHost(engine)
    tenant, _ = _active(host)
    client = host.new_client(tenant)
    consent.record_manual(host, tenant, client, staff(), method="paper", given_at=host.now(),
                          note=None)
    host.session().commit()
    host.close()
    assert_invariants(engine, [tenant])
    with engine.connect() as conn:
        assert conn.execute(text("SELECT note FROM host_booking")).scalar() == "kept"
        conn.rollback()


