"""Prepared reads for the hot paths: the booking gate and the profile panel.

Every online booking and every client profile pays for one small indexed read.  Run
through ``Session.execute`` that read costs 30-40 µs of SQLAlchemy's per-execution
machinery on SQLite, several times the query itself.  :class:`PreparedSelect`
compiles a Core ``SELECT`` once per dialect and runs it on the DB-API cursor of the
session's own connection, in the session's transaction, converting the results with
the same SQLAlchemy type processors a normal execution would use.

When anything listens to statement execution on the engine (a host's SQL logging or
tracing, a test counting statements), the statement goes through ``Session.execute``
instead, so it is seen like every other statement.  Driver errors are wrapped and
disconnects invalidate the connection exactly as SQLAlchemy does.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping
from typing import Any

from attrs import frozen
from sqlalchemy import Connection, Dialect, Select, exc
from sqlalchemy.orm import Session


@frozen
class _Plan:
    sql: str
    positional: tuple[str, ...] | None
    #: Bind parameters that need converting for the driver (most need nothing).
    binds: tuple[tuple[str, Callable[[Any], Any]], ...]
    #: Result columns that need converting, by position.
    results: tuple[tuple[int, Callable[[Any], Any]], ...]
    row: Any


class PreparedSelect:
    """A read-only Core ``SELECT`` (one row expected), compiled once per dialect."""

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement
        self._plans: dict[str, _Plan] = {}
        self._row = namedtuple("Row", statement.selected_columns.keys())  # type: ignore[misc]

    def _plan(self, dialect: Dialect) -> _Plan:
        plan = self._plans.get(dialect.name)
        if plan is None:
            compiled = self.statement.compile(dialect=dialect)
            binds = tuple(
                (bind.key, proc)
                for bind in compiled.binds.values()
                if (proc := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None
            )
            results = tuple(
                (i, proc)
                for i, col in enumerate(self.statement.selected_columns)
                if (proc := col.type.dialect_impl(dialect).result_processor(dialect, None))
                is not None
            )
            positional = tuple(compiled.positiontup or ()) if compiled.positional else None
            plan = _Plan(sql=compiled.string, positional=positional, binds=binds,
                         results=results, row=self._row)
            self._plans[dialect.name] = plan
        return plan

    def one_or_none(self, session: Session, params: Mapping[str, Any]) -> Any:
        """The single result row (attribute access by column name), or ``None``."""
        conn = session.connection()
        if _observed(conn):
            return session.execute(self.statement, dict(params)).one_or_none()
        plan = self._plan(conn.dialect)
        if plan.binds:
            params = dict(params)
            for name, convert in plan.binds:
                params[name] = convert(params[name])
        args: Any = (
            tuple([params[name] for name in plan.positional]) if plan.positional is not None
            else params
        )
        dbapi_conn = conn.connection
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute(plan.sql, args)
            raw = cursor.fetchone()
        except conn.dialect.loaded_dbapi.Error as err:
            _raise_wrapped(conn, plan.sql, args, err, cursor)
        finally:
            cursor.close()
        if raw is None:
            return None
        if plan.results:
            raw = list(raw)
            for i, convert in plan.results:
                raw[i] = convert(raw[i])
        return plan.row._make(raw)


def _observed(conn: Connection) -> bool:
    """Does anything listen to statement execution (logging, tracing, counting)?"""
    d = conn.dispatch
    return bool(
        d.before_cursor_execute or d.after_cursor_execute or d.before_execute
        or d.after_execute
    ) or conn.engine.echo is True or conn.engine.echo == "debug"


def _raise_wrapped(conn: Connection, sql: str, args: Any, err: Any, cursor: Any) -> None:
    dialect = conn.dialect
    disconnect = dialect.is_disconnect(err, conn.connection.dbapi_connection, cursor)
    if disconnect:
        conn.invalidate(err)
    raise exc.DBAPIError.instance(
        sql, args, err, dialect.loaded_dbapi.Error, dialect=dialect,
        connection_invalidated=disconnect,
    ) from err
