"""The host's DB-API connection as the SQLAlchemy ``Session`` the app works with.

The contract hands the app a plain PEP 249 connection (``sqlite3`` or psycopg 3); the
app keeps using the SQLAlchemy 2 ORM inside.  Two ways in, kept apart:

* :func:`in_host_transaction` — hooks: a session over :meth:`Host.connection`, in the
  host's open transaction.  The app flushes and never commits, rolls back or closes
  that connection (a small proxy makes sure of it); write hooks first check that the
  connection would not commit each statement on its own
  (:class:`~hookspecs.types.NoHostTransaction`).
* :func:`unit_of_work` — the app's own work (its pages, mail relay, CLI, jobs): a
  session over :meth:`Host.unit_of_work`; the host commits when the block ends.

Inside either, a nested :func:`in_host_transaction` for the same host gives the session
already open, so domain functions serve hooks and pages alike.

Each keeps the consent changes the ledger notes in it (:data:`CHANGED`) and hands them
to :mod:`samtycke_plugin.signals` once its transaction commits: a unit of work when the
host's block has committed, a hook through the host's optional ``on_commit``.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import ClauseElement, Dialect, Engine, create_engine
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool
from sqlalchemy.sql.compiler import SQLCompiler

from hookspecs.types import NoHostTransaction, SqlText

if TYPE_CHECKING:
    from hookspecs.host import Host

#: The host connection the app's engine hands out next (read by the engines' creator).
_borrowed: ContextVar[BorrowedConnection | None] = ContextVar("samtycke_borrowed", default=None)
#: The session open in this context, with the host it belongs to.
_open: ContextVar[tuple[object, Session] | None] = ContextVar("samtycke_session", default=None)

#: ``session.info`` key of the (tenant, client, purpose) changes noted in the session's
#: transaction (:func:`samtycke_plugin.signals.note`).
CHANGED = "samtycke.changed"

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()

SUPPORTED = "sqlite3.Connection (SQLite) or psycopg.Connection (PostgreSQL, psycopg 3)"


class BorrowedConnection:
    """A host's DB-API connection as the app may use it: ``commit()`` raises,
    ``rollback()`` and ``close()`` do nothing (the host owns the transaction and the
    connection); everything else is the driver's own connection."""

    __slots__ = ("driver_connection",)

    def __init__(self, driver_connection: Any) -> None:
        object.__setattr__(self, "driver_connection", driver_connection)

    def commit(self) -> None:
        raise RuntimeError("Samtycke never commits a connection it borrowed from the host")

    def rollback(self) -> None:
        return None  # the host rolls back its own transaction when it fails

    def close(self) -> None:
        return None

    def add_notice_handler(self, _handler: Any) -> None:
        return None  # SQLAlchemy adds one per checkout: it would pile up on the host's

    def __getattr__(self, name: str) -> Any:
        return getattr(self.driver_connection, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.driver_connection, name, value)


def dialect_of(connection: Any) -> str:
    """``"sqlite"`` or ``"postgresql"`` from the driver connection's type."""
    if isinstance(connection, sqlite3.Connection):
        return "sqlite"
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is installed with the postgres extra
        psycopg = None  # type: ignore[assignment]
    if psycopg is not None and isinstance(connection, psycopg.Connection):
        return "postgresql"
    raise TypeError(
        f"Samtycke cannot use a {type(connection).__module__}.{type(connection).__name__} "
        f"as the host's database connection; give it a {SUPPORTED}."
    )


def _creator() -> BorrowedConnection:
    borrowed = _borrowed.get()
    if borrowed is None:  # pragma: no cover - only hostdb's own blocks connect
        raise RuntimeError("no host connection is borrowed in this context")
    return borrowed


def engine_for(dialect: str) -> Engine:
    """The app's engine for ``dialect``: no pool, no reset, connections are borrowed."""
    with _engines_lock:
        engine = _engines.get(dialect)
        if engine is None:
            if dialect == "sqlite":
                engine = create_engine(
                    "sqlite://", creator=_creator, poolclass=NullPool,
                    pool_reset_on_return=None,
                )
            else:
                # The hstore probe of SQLAlchemy needs the bare psycopg connection.
                engine = create_engine(
                    "postgresql+psycopg://", creator=_creator, poolclass=NullPool,
                    pool_reset_on_return=None, use_native_hstore=False,
                )
            _engines[dialect] = engine
        return engine


def require_transaction(connection: Any) -> None:
    """Raise :class:`NoHostTransaction` when ``connection`` would commit each statement
    on its own (autocommit and no transaction open)."""
    if dialect_of(connection) == "sqlite":
        open_ = connection.in_transaction
        autocommit = getattr(connection, "autocommit", None)  # Python 3.12+
        legacy_auto = connection.isolation_level is None and autocommit in (None, -1)
        if not open_ and (legacy_auto or autocommit is True):
            raise NoHostTransaction(
                "Samtycke's write hook was called on a SQLite connection in autocommit mode "
                "with no transaction open, so nothing was written. Call the hook inside the "
                "host's transaction (BEGIN first, or the framework's atomic block)."
            )
        return
    import psycopg.pq

    if connection.autocommit and (
        connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    ):
        raise NoHostTransaction(
            "Samtycke's write hook was called on a PostgreSQL connection in autocommit mode "
            "with no transaction open, so nothing was written. Call the hook inside the "
            "host's transaction (the framework's atomic block, or autocommit off)."
        )


@contextmanager
def borrowing(driver_connection: Any) -> Iterator[None]:
    """Inside the block, :func:`engine_for`'s engines connect to ``driver_connection``."""
    token = _borrowed.set(BorrowedConnection(driver_connection))
    try:
        yield
    finally:
        _borrowed.reset(token)


@contextmanager
def _session_over(host: Host, driver_connection: Any) -> Iterator[Session]:
    engine = engine_for(dialect_of(driver_connection))
    with borrowing(driver_connection), engine.connect() as conn:
        session = Session(bind=conn, autoflush=True, expire_on_commit=False)
        session.info[CHANGED] = set()
        opened = _open.set((host, session))
        try:
            yield session
            session.flush()
        finally:
            _open.reset(opened)
            session.close()


def open_session(host: Host) -> Session | None:
    """The session of the unit of work or hook open for ``host`` in this context."""
    current = _open.get()
    return current[1] if current is not None and current[0] is host else None


_DISCARD = "samtycke.discard"


def discard(host: Host) -> None:
    """Have the unit of work open for ``host`` rolled back at its end instead of
    committed (a page that re-shows a form after a failed domain call)."""
    current = open_session(host)
    if current is not None:
        current.info[_DISCARD] = True


def discarded(session: Session) -> bool:
    """Whether :func:`discard` was called for the unit of work of ``session``."""
    return bool(session.info.get(_DISCARD))


@contextmanager
def in_host_transaction(host: Host, *, write: bool = False) -> Iterator[Session]:
    """A session in the host's open transaction (:meth:`Host.connection`), for hooks.

    Flushes at the end and never commits.  ``write=True`` (the write hooks) first
    refuses a connection that would autocommit, before anything is written.  Inside a
    unit of work or hook already open for ``host``, gives that session.
    """
    current = open_session(host)
    if current is not None:
        yield current
        return
    connection = host.connection()
    if write:
        require_transaction(connection)
    changed: set[tuple[str, str, str]] = set()
    try:
        with _session_over(host, connection) as session:
            changed = session.info[CHANGED]
            yield session
    finally:
        # Also after an exception: the host decides whether its transaction commits,
        # and the callback runs only if it does.
        if changed:
            from samtycke_plugin import signals  # it runs units of work: imported here

            signals.after_host_commit(host, changed)


@contextmanager
def unit_of_work(host: Host) -> Iterator[Session]:
    """A session in a transaction the app owns (:meth:`Host.unit_of_work`): flushed at
    the end of the block, then the host commits (or rolls back on an exception)."""
    with host.unit_of_work() as connection, _session_over(host, connection) as session:
        yield session
        changed = session.info[CHANGED]
    if changed:  # the host's block has committed
        from samtycke_plugin import signals  # it runs units of work: imported here

        signals.committed(host, changed)


@contextmanager
def session(host: Host) -> Iterator[Session]:
    """The session domain functions work in: the one open for ``host`` in this context
    (a hook's or a unit of work's), else one in the host's transaction
    (:func:`in_host_transaction`) for the length of the block."""
    with in_host_transaction(host) as current:
        yield current


#: Dialects to compile the app's SQL for a host, with ``:name`` placeholders and no
#: driver-specific casts (psycopg's ``::TYPE`` bind casts would not survive ``:name``).
_NAMED: dict[str, Dialect] = {
    "sqlite": sqlite.dialect(paramstyle="named"),
    "postgresql": PGDialect(paramstyle="named"),  # type: ignore[no-untyped-call]  # no casts
}
_PLACEHOLDER = r"(?<![:\w]):{}(?!\w)"


def to_sql_text(clause: ClauseElement, dialect: str, *, prefix: str = "samtycke_") -> SqlText:
    """``clause`` as :class:`~hookspecs.types.SqlText` for a host on ``dialect``: named
    ``:prefix…`` parameters (no collision with the host's own), their values in the
    form the app stores them (the column types' bind processing applied: times are the
    app's ISO text on SQLite)."""
    named = _NAMED[dialect]
    compiled = cast(
        SQLCompiler,
        clause.compile(dialect=named, compile_kwargs={"render_postcompile": True}),
    )
    sql = str(compiled)
    params: dict[str, object] = {}
    for name in sorted(compiled.params, key=len, reverse=True):
        value = compiled.params[name]
        bind = compiled.binds.get(name)
        storage = bind.type.dialect_impl(named) if bind is not None else None
        process = storage.bind_processor(named) if storage is not None else None
        params[prefix + name] = process(value) if process is not None else value
        sql = re.sub(_PLACEHOLDER.format(re.escape(name)), ":" + prefix + name, sql)
    return SqlText(sql=sql, params=params)
