"""Shared helpers for the reliability tests (tests/reliability/).

* :func:`worker_host` — another host over the same engine with its own session
  (its own connection), sharing the client directory: what a second web worker is.
* :func:`run_concurrently` — real threads released together by a barrier.
* :func:`dump` — every ``samtycke_`` row of some practices plus global row counts,
  to prove "the database is exactly as before" after a failure.
* :func:`assert_invariants` — the universal invariants of the checklist: the chain
  verifies, the projection equals a replay of the ledger, seq is 1..n without gaps,
  SQLite ``PRAGMA integrity_check`` is ok.
* :class:`FaultInjector` — raise a driver error (or kill the PostgreSQL backend) at
  the N-th statement of a unit of work, or at its COMMIT.
* :data:`FIGURES` — counters the tests add to (writes under concurrency, faults
  injected, payloads tried); printed at the end of the session for docs/RELIABILITY.md.
"""

from __future__ import annotations

import atexit
import collections
import json
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from hostkit import TestHost, submission
from sqlalchemy import Engine, create_engine, event, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from hookspecs.facade import AppHooks
from hookspecs.types import (
    BookingFormContext,
    BookingRef,
    BookingSubmission,
    ClientRef,
    TenantRef,
    Veto,
)
from samtycke_plugin.chain import verify_chain
from samtycke_plugin.email import outbox
from samtycke_plugin.email import receipts as receipt_mail
from samtycke_plugin.ledger import projection, replay
from samtycke_plugin.models import Base, ConsentEvent, OutboxMessage

T = TypeVar("T")

#: Figures reported in docs/RELIABILITY.md (summed over the session, per database).
FIGURES: collections.Counter[str] = collections.Counter()


def _write_figures() -> None:
    """With ``SAMTYCKE_RELIABILITY_FIGURES=path`` the session's figures are added to
    that JSON file at exit (how docs/RELIABILITY.md's numbers were collected)."""
    target = os.environ.get("SAMTYCKE_RELIABILITY_FIGURES")
    if not target or not FIGURES:
        return
    path = Path(target)
    old = json.loads(path.read_text("utf-8")) if path.exists() else {}
    for key, value in FIGURES.items():
        old[key] = old.get(key, 0) + value
    path.write_text(json.dumps(old, indent=1, sort_keys=True, ensure_ascii=False), "utf-8")


atexit.register(_write_figures)


def dialect(engine: Engine) -> str:
    return engine.dialect.name


# -- hosts and threads ------------------------------------------------------------------


def worker_host(base: TestHost) -> TestHost:
    """A second host on the same database: own session and connection, same directory."""
    other = TestHost(base.engine, locale=base.locale)
    other.clients = base.clients
    other.practices = base.practices
    other.active = base.active
    other.clock = base.clock
    return other


def run_concurrently(
    n: int, fn: Callable[[int, threading.Barrier], T], *, timeout: float = 120.0
) -> list[T | BaseException]:
    """Run ``fn(i, barrier)`` in ``n`` threads; each result or the exception it raised.

    ``fn`` should call ``barrier.wait()`` right before the step that races (the
    barrier has ``n`` parties).  Threads that have not finished after ``timeout``
    fail the test.
    """
    barrier = threading.Barrier(n, timeout=timeout)
    results: list[Any] = [None] * n

    def target(i: int) -> None:
        try:
            results[i] = fn(i, barrier)
        except BaseException as exc:
            results[i] = exc
            barrier.abort()  # the others fail fast with BrokenBarrierError, not a hang

    threads = [threading.Thread(target=target, args=(i,), daemon=True) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout)
        assert not th.is_alive(), "a worker thread hung"
    return results


def raised(results: Sequence[object]) -> list[BaseException]:
    return [r for r in results if isinstance(r, BaseException)]


# -- the booking flow as a host drives it -------------------------------------------------


def form_text_id(host: TestHost, hooks: AppHooks, tenant: str, client: str | None) -> int | None:
    """Render the booking form's consent block; the text version id it carries."""
    frags = hooks.form_fragments(
        BookingFormContext(
            tenant=TenantRef(tenant), client=ClientRef(client) if client else None, locale="sv"
        )
    )
    host.session().rollback()
    if not frags:
        return None
    html = frags[0].html
    marker = 'name="samtycke_text" value="'
    start = html.index(marker) + len(marker)
    return int(html[start : html.index('"', start)])


def book(
    host: TestHost,
    hooks: AppHooks,
    tenant: str,
    client: str,
    *,
    booking: str,
    between: Callable[[], None] | None = None,
    **kw: Any,
) -> list[Veto]:
    """One booking transaction (check, record, commit), as a host runs it.

    ``between`` runs after the check and before the record (for explicit interleavings).
    Vetoes are returned (and the transaction rolled back); exceptions roll back and
    propagate, exactly as a host's own error handling would.
    """
    return submit(host, hooks, submission(tenant, client, **kw), booking=booking, between=between)


def submit(
    host: TestHost,
    hooks: AppHooks,
    sub: BookingSubmission,
    *,
    booking: str,
    between: Callable[[], None] | None = None,
) -> list[Veto]:
    """:func:`book` with the form's fields as the browser posts them (``sub.client`` set)."""
    assert sub.client is not None
    try:
        vetoes = hooks.submit_check(sub)
        if vetoes:
            host.rollback()
            return vetoes
        if between is not None:
            between()
        hooks.submitted(sub, BookingRef(booking), ClientRef(sub.client))
        host.session().commit()
    except BaseException:
        host.rollback()
        raise
    return []


# -- inspection ---------------------------------------------------------------------------


def tables() -> list[Any]:
    return [t for t in Base.metadata.sorted_tables if t.name.startswith("samtycke_")]


def dump(engine: Engine, tenants: Sequence[str]) -> dict[str, Any]:
    """Every row of the given practices in every app table, plus each table's row count
    (so a stray write to any other practice shows up too)."""
    out: dict[str, Any] = {}
    with engine.connect() as conn:
        for table in tables():
            order = list(table.primary_key.columns) or list(table.columns)
            rows = conn.execute(
                select(table).where(table.c.tenant_ref.in_(list(tenants))).order_by(*order)
            ).all()
            out[table.name] = [tuple(r) for r in rows]
            out[table.name + "#count"] = conn.scalar(select(func.count()).select_from(table))
        conn.rollback()
    return out


def events(engine: Engine, tenant: str) -> list[ConsentEvent]:
    with Session(engine) as s:
        return list(
            s.scalars(
                select(ConsentEvent)
                .where(ConsentEvent.tenant_ref == tenant)
                .order_by(ConsentEvent.seq)
            )
        )


def assert_invariants(engine: Engine, tenants: Sequence[str]) -> None:
    """The universal invariants of the checklist, for each practice."""
    with Session(engine) as s:
        for tenant in tenants:
            result = verify_chain(s, tenant)
            assert result.ok, f"chain of {tenant} broken: {result.broken}"
            seqs = list(
                s.scalars(
                    select(ConsentEvent.seq)
                    .where(ConsentEvent.tenant_ref == tenant)
                    .order_by(ConsentEvent.seq)
                )
            )
            assert seqs == list(range(1, len(seqs) + 1)), "seq has gaps or duplicates"
            assert replay(s, tenant) == projection(s, tenant), "projection != replay"
        if dialect(engine) == "sqlite":
            assert s.execute(text("PRAGMA integrity_check")).scalar() == "ok"
        s.rollback()


# -- fault injection ------------------------------------------------------------------------


class InjectedFault(Exception):
    """Marker in the message of injected driver errors."""


def _driver_error(engine: Engine, message: str) -> BaseException:
    """An exception of the driver's own OperationalError class (SQLAlchemy wraps it)."""
    dbapi = engine.dialect.loaded_dbapi
    return dbapi.OperationalError(message)  # type: ignore[no-any-return]


class FaultInjector:
    """Fail the ``fail_at``-th step of whatever runs on ``engine``'s database inside
    :meth:`armed` (the host's statements and the app's on the connections it borrows).

    Steps are every statement sent to the driver (BEGIN included) and, last, the
    COMMIT.  ``mode="raise"`` raises the driver's ``OperationalError`` (a disk I/O
    error, a lost connection); ``mode="terminate"`` (PostgreSQL) kills the session's
    backend with ``pg_terminate_backend`` from another connection and lets the step
    run into the dead connection.
    """

    def __init__(self, engine: Engine, *, mode: str = "raise", admin_url: str | None = None):
        self.engine = engine
        self.mode = mode
        self.fail_at: int | None = None
        self.steps = 0
        self.fired = False
        self._admin: Engine | None = None
        if mode == "terminate":
            assert admin_url is not None and dialect(engine) == "postgresql"
            self._admin = create_engine(
                make_url(admin_url).set(drivername="postgresql+psycopg"),
                isolation_level="AUTOCOMMIT",
            )

    def _step(self, dbapi_connection: Any) -> None:
        self.steps += 1
        if self.fail_at is not None and self.steps == self.fail_at and not self.fired:
            self.fired = True
            FIGURES[f"faults injected ({dialect(self.engine)}, {self.mode})"] += 1
            if self.mode == "terminate":
                pid = dbapi_connection.info.backend_pid
                assert self._admin is not None
                with self._admin.connect() as admin:
                    admin.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})
                return  # the statement now runs into a dead connection
            raise _driver_error(self.engine, "injected fault: disk I/O error")  # type: ignore[misc]

    def _before(self, conn: Any, cursor: Any, *_args: Any) -> None:
        if self._admin is not None and conn.engine is self._admin:
            return
        self._step(cursor.connection)

    @contextmanager
    def armed(self, fail_at: int | None) -> Iterator[FaultInjector]:
        """Count steps (and fail at ``fail_at``; ``None``: only count) inside the block."""
        self.fail_at, self.steps, self.fired = fail_at, 0, False
        dialect_obj = self.engine.dialect
        original_commit = dialect_obj.do_commit

        def do_commit(dbapi_connection: Any) -> None:
            self._step(dbapi_connection)
            original_commit(dbapi_connection)

        # Every engine: the app runs its statements on the host's connection through an
        # engine of its own (samtycke_plugin.hostdb).
        event.listen(Engine, "before_cursor_execute", self._before)
        dialect_obj.do_commit = do_commit  # type: ignore[method-assign]
        try:
            yield self
        finally:
            event.remove(Engine, "before_cursor_execute", self._before)
            dialect_obj.do_commit = original_commit  # type: ignore[method-assign]
            self.fail_at = None

    def close(self) -> None:
        if self._admin is not None:
            self._admin.dispose()


class SqliteDriverFaults:
    """Like :class:`FaultInjector`, but below SQLAlchemy: the N-th statement the SQLite
    library runs (BEGIN and COMMIT included) is interrupted by a progress handler.

    No SQLAlchemy statement listener is involved, so the app runs exactly as in
    production.  Handlers are installed on each
    connection at pool checkout and removed at checkin.
    """

    def __init__(self, engine: Engine) -> None:
        assert dialect(engine) == "sqlite"
        self.engine = engine
        self.fail_at: int | None = None
        self.steps = 0
        self.fired = False
        self._interrupt = False
        self._touched: list[Any] = []

    def _trace(self, _statement: str) -> None:
        self.steps += 1
        if self.fail_at is not None and self.steps == self.fail_at and not self.fired:
            self.fired = True
            self._interrupt = True
            FIGURES["faults injected (sqlite, driver interrupt)"] += 1

    def _progress(self) -> int:
        if self._interrupt:
            self._interrupt = False
            return 1
        return 0

    def _checkout(self, dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        dbapi_connection.set_trace_callback(self._trace)
        dbapi_connection.set_progress_handler(self._progress, 1)
        self._touched.append(dbapi_connection)

    def _checkin(self, dbapi_connection: Any, _record: Any) -> None:
        if dbapi_connection is not None:
            dbapi_connection.set_trace_callback(None)
            dbapi_connection.set_progress_handler(None, 0)

    @contextmanager
    def armed(self, fail_at: int | None) -> Iterator[SqliteDriverFaults]:
        self.fail_at, self.steps, self.fired, self._interrupt = fail_at, 0, False, False
        event.listen(self.engine, "checkout", self._checkout)
        event.listen(self.engine, "checkin", self._checkin)
        try:
            yield self
        finally:
            event.remove(self.engine, "checkout", self._checkout)
            event.remove(self.engine, "checkin", self._checkin)
            for dbapi_connection in self._touched:  # connections still checked out
                try:
                    self._checkin(dbapi_connection, None)
                except Exception:  # closed meanwhile
                    pass
            self._touched.clear()
            self.fail_at = None

    def close(self) -> None:
        return None


def each_fault(
    injector: FaultInjector | SqliteDriverFaults,
    path: Callable[[], object],
    *,
    reset: Callable[[], None],
    snapshot: Callable[[], object],
    max_steps: int = 200,
) -> tuple[int, object]:
    """Run ``path`` with a fault at step 1, 2, … until it completes without the fault
    firing.  After each failure ``reset()`` (the caller's rollback) runs and
    ``snapshot()`` must equal what it was before.  Returns (faults injected, result).
    """
    before = snapshot()
    n = 0
    while True:
        n += 1
        assert n <= max_steps, "the write path never completed"
        with injector.armed(n):
            try:
                result = path()
            except Exception:
                if not injector.fired:
                    raise
                failed = True
            else:
                failed = False
        if not failed and not injector.fired:
            return n - 1, result
        reset()
        after = snapshot()
        assert after == before, f"state changed after a fault at step {n}"
        if not failed:
            # the fault fired but the path swallowed it (e.g. a fail-closed veto):
            # it must not have written anything either — checked just above.
            FIGURES["faults absorbed without a write"] += 1


def hooks_for(host: TestHost, like: AppHooks) -> AppHooks:
    """Hooks for a worker host, sharing the plugin manager of ``like``."""
    return AppHooks(like.pm, host, lambda tenant: host.active.get(tenant, set()))


def complete_receipts(host: TestHost, tenant: str, client: str) -> None:
    """Do what the relay's claim does to the client's receipts queued at booking (give
    each its withdrawal link, address and Message-ID), and commit, so a test can find
    the link without sending the mail."""
    session = host.session()
    for msg in session.scalars(select(OutboxMessage).where(
            OutboxMessage.tenant_ref == tenant, OutboxMessage.client_ref == client,
            OutboxMessage.kind == outbox.KIND_RECEIPT, OutboxMessage.request_id.is_(None))):
        assert receipt_mail.complete_receipt(host, session, msg) is None
    session.commit()
