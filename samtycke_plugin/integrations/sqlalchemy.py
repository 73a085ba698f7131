"""The host contract for hosts that use SQLAlchemy 2 (Flask, FastAPI, scripts, tests).

A SQLAlchemy host implements :class:`hookspecs.host.Host`'s database part in a few
lines::

    from samtycke_plugin.integrations.sqlalchemy import dbapi_of, engine_unit_of_work

    class MyHost:
        def connection(self):
            return dbapi_of(self.sessions())  # the request's session, its transaction begun

        def unit_of_work(self):
            return engine_unit_of_work(engine)  # a connection of its own, committed at the end

and adds the app's list filters to its own client query with :func:`filter_condition`.
With :func:`on_commit` it tells the apps when its session's transaction commits
(:class:`hookspecs.host.OnCommit`), so changes its hooks made are signalled to the
platform's other apps.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, Row, Select, and_, bindparam, event, text
from sqlalchemy.orm import Session, SessionTransaction

from hookspecs.types import FilterClause, SqlText
from samtycke_plugin import db as samtycke_db

log = logging.getLogger(__name__)


def dbapi_of(bind: Session | Connection) -> Any:
    """The DB-API connection under ``bind`` (a ``Session`` or ``Connection``), with
    the transaction of ``bind`` begun (on SQLite through the engine's ``begin`` event,
    e.g. ``BEGIN IMMEDIATE`` after :func:`samtycke_plugin.db.configure_sqlite`)."""
    connection = bind.connection() if isinstance(bind, Session) else bind
    if not connection.in_transaction():
        connection.begin()
    return connection.connection.driver_connection


@contextmanager
def engine_unit_of_work(engine: Engine) -> Iterator[Any]:
    """:meth:`Host.unit_of_work` over ``engine``: a connection of its own in a new
    transaction, committed when the block ends and rolled back on an exception."""
    with engine.begin() as connection:
        yield connection.connection.driver_connection


@contextmanager
def session_unit_of_work(session: Session) -> Iterator[Any]:
    """:meth:`Host.unit_of_work` on ``session`` itself, committed when the block ends
    and rolled back on an exception: for a host with one session and no concurrent
    work of its own in it (a script, a test host)."""
    try:
        yield dbapi_of(session)
    except BaseException:
        session.rollback()
        raise
    session.commit()


class _CommitCallbacks:
    """The callbacks waiting for the commit of one session's transaction."""

    def __init__(self) -> None:
        self.pending: list[Callable[[], None]] = []
        self.ready: list[Callable[[], None]] = []

    def committed(self, _session: Session) -> None:
        self.ready, self.pending = self.ready + self.pending, []

    def ended(self, _session: Session, transaction: SessionTransaction) -> None:
        if transaction.parent is not None:
            return  # a savepoint: the outer transaction decides
        # Run only after the transaction has ended (the session may then emit SQL
        # again); callbacks of a transaction that did not commit are dropped with it.
        ready, self.ready, self.pending = self.ready, [], []
        for callback in ready:
            try:
                callback()
            except Exception:
                log.exception("an after-commit callback failed (the commit stands)")


_ON_COMMIT = "booking.on_commit"


def on_commit(session: Session, callback: Callable[[], None]) -> None:
    """:meth:`hookspecs.host.OnCommit.on_commit` for a host whose transaction is
    ``session``'s: ``callback`` runs once after that transaction commits and is dropped
    when it rolls back or the session closes without committing."""
    callbacks = session.info.get(_ON_COMMIT)
    if callbacks is None:
        callbacks = session.info[_ON_COMMIT] = _CommitCallbacks()
        event.listen(session, "after_commit", callbacks.committed)
        event.listen(session, "after_transaction_end", callbacks.ended)
    callbacks.pending.append(callback)


def sql_condition(condition: SqlText) -> ColumnElement[bool]:
    """A :class:`~hookspecs.types.SqlText` condition as a SQLAlchemy boolean expression."""
    clause = text(condition.sql).bindparams(
        *(bindparam(name, value) for name, value in condition.params.items())
    )
    return and_(clause)


def filter_condition(clause: FilterClause) -> ColumnElement[bool]:
    """An app's list filter (``booking_client_list_filter_clause``) for the host's
    ``select(...).where(...)``."""
    return sql_condition(clause.condition)


def prepare_engine(engine: Engine) -> None:
    """On SQLite, the connection behaviour the apps need on the host's engine (WAL, busy
    timeout, foreign keys, ``BEGIN IMMEDIATE``); nothing on PostgreSQL."""
    if engine.dialect.name == "sqlite":
        samtycke_db.configure_sqlite(engine)


def upgrade_apps(connection: Connection) -> None:
    """From the host's migrate step: the apps' own tables and version tables."""
    samtycke_db.upgrade(connection)


def in_pages(sessions: Callable[[], Session], query: Select[Any], size: int = 500
             ) -> Iterator[Row[Any]]:
    """The rows of ``query``, whose first column is a unique key, in pages of ``size``
    by that key (for ``Host.iter_clients``): each page is read to its end, so no cursor
    stays open on the host's connection while the app works on it between rows, and a
    whole practice is never in memory at once."""
    key = query.selected_columns[0]
    last: object = None
    while True:
        page = query if last is None else query.where(key > last)
        rows = sessions().execute(page.order_by(key).limit(size)).all()
        yield from rows
        if len(rows) < size:
            return
        last = rows[-1][0]
