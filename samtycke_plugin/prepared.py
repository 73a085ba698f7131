"""Prepared statements for the hot paths: the booking gate, the profile panel and the
record step at booking (event, chain head, projection, receipt).

Every online booking and every client profile pays for one small indexed read.  Run
through ``Session.execute`` that read costs 30-40 µs of SQLAlchemy's per-execution
machinery on SQLite, several times the query itself.  :class:`PreparedSelect` and
:class:`PreparedWrite` compile a Core statement once per dialect and run it on the
DB-API cursor of the session's own connection, in the session's transaction,
converting parameters and results with the same SQLAlchemy type processors a normal
execution would use.

When anything listens to statement execution on the engine (a host's SQL logging or
tracing, a test counting statements), the statement goes through ``Session.execute``
instead, so it is seen like every other statement.  Driver errors are wrapped and
disconnects invalidate the connection exactly as SQLAlchemy does.
"""

from __future__ import annotations

import logging
import weakref
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from operator import itemgetter
from typing import Any, NoReturn, cast

from attrs import frozen
from sqlalchemy import Connection, Dialect, Executable, Select, exc
from sqlalchemy.orm import Session


@frozen
class _Plan:
    sql: str
    positional: tuple[str, ...] | None
    #: Bind parameters that need converting for the driver (most need nothing), with
    #: their type: a unit of work (:func:`run_together`, :meth:`PreparedWrite.executemany`)
    #: converts a value once per type (:func:`_memo_key`).
    binds: tuple[tuple[str, Callable[[Any], Any], Any], ...]
    #: Result columns that need converting, by position.
    results: tuple[tuple[int, Callable[[Any], Any]], ...]
    row: Any
    #: Values of the statement's own literals (``head_seq + 1``), under their bind names.
    fixed: dict[str, Any]
    #: The driver's positional parameters straight from the caller's mapping, when
    #: nothing needs converting or adding (most reads): one C call.
    pick: Callable[[Mapping[str, Any]], tuple[Any, ...]] | None
    #: A plain ``SELECT``: nothing to read to the end after the first row.
    is_select: bool


class Prepared:
    """A Core statement compiled once per dialect and run on the session's DB-API cursor."""

    def __init__(
        self,
        statement: Executable | Mapping[str, Executable],
        columns: Sequence[Any],
        column_keys: Sequence[str] | None = None,
    ) -> None:
        self._statements = statement if isinstance(statement, Mapping) else None
        self.statement = statement if not isinstance(statement, Mapping) else None
        self._column_keys = list(column_keys) if column_keys is not None else None
        self._columns = list(columns)
        self._plans: dict[str, _Plan] = {}
        self._row = (
            namedtuple("Row", [c.key for c in self._columns])
            if self._columns else None
        )

    def statement_for(self, dialect_name: str) -> Executable:
        if self._statements is not None:
            return self._statements[dialect_name]
        assert self.statement is not None
        return self.statement

    def _plan(self, dialect: Dialect) -> _Plan:
        plan = self._plans.get(dialect.name)
        if plan is None:
            statement: Any = self.statement_for(dialect.name)
            compiled = statement.compile(dialect=dialect, column_keys=self._column_keys)
            binds = tuple(
                (name, proc, bind.type)
                for name, bind in compiled.binds.items()
                if (proc := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None
            )
            results = tuple(
                (i, proc)
                for i, col in enumerate(self._columns)
                if (proc := _result_processor(col.type, dialect)) is not None
            )
            positional = tuple(compiled.positiontup or ()) if compiled.positional else None
            given = set(self._column_keys or ())
            fixed = {
                key: bind.effective_value
                for key, bind in compiled.binds.items()
                if not bind.required and key not in given
            }
            plan = _Plan(sql=compiled.string, positional=positional, binds=binds,
                         results=results, row=self._row, fixed=fixed,
                         pick=_picker(positional) if not (binds or fixed) else None,
                         is_select=isinstance(statement, Select))
            self._plans[dialect.name] = plan
        return plan

    def _args(
        self, plan: _Plan, params: Mapping[str, Any], seen: dict[Any, Any] | None = None
    ) -> Any:
        """The driver's parameters for one execution.  ``seen`` keeps the values already
        converted in the same unit of work (see :func:`_memo_key`): a booking's writes
        share their "now" and expiry, a batch's rows their "now" and payload."""
        if plan.pick is not None:
            return plan.pick(params)
        if plan.fixed:
            params = {**plan.fixed, **params}
        if plan.binds:
            params = dict(params)
            for name, convert, type_ in plan.binds:
                value = params[name]
                if seen is None:
                    params[name] = convert(value)
                    continue
                key = _memo_key(type_, value)
                try:
                    params[name] = seen[key]
                except KeyError:
                    params[name] = seen[key] = convert(value)
        return (
            tuple([params[name] for name in plan.positional]) if plan.positional is not None
            else params
        )

    def _result(self, plan: _Plan, raw: Any) -> Any:
        """One result row, converted, with attribute access by column name."""
        if raw is None:
            return None
        if plan.results:
            raw = list(raw)
            for i, convert in plan.results:
                raw[i] = convert(raw[i])
        return _tuple_new(plan.row, raw)  # ``Row._make`` without its length check

    def _observed_run(self, db: Session | Connection, conn: Connection,
                      params: Mapping[str, Any]) -> tuple[Any, int]:
        result: Any = db.execute(self.statement_for(conn.dialect.name), dict(params))
        first = result.first() if self._columns else None
        return first, (result.rowcount if not self._columns else -1)

    def _run(self, db: Session | Connection, params: Mapping[str, Any]) -> tuple[Any, int]:
        """Execute; the first result row (converted) or ``None``, and the row count.

        ``db`` is the session, or its connection (``session.connection()``) when a unit
        of work runs several statements: fetching it costs more than running one."""
        conn = _connection(db)
        if _observed(conn):
            return self._observed_run(db, conn, params)
        cursor = conn.connection.cursor()
        try:
            return self._run_on(conn, cursor, params, None)
        finally:
            _close(cursor)

    def _run_on(
        self, conn: Connection, cursor: Any, params: Mapping[str, Any],
        seen: dict[Any, Any] | None,
    ) -> tuple[Any, int]:
        """:meth:`_run` on a DB-API cursor of ``conn``, nobody observing."""
        plan = self._plan(conn.dialect)
        args = self._args(plan, params, seen)
        try:
            cursor.execute(plan.sql, args)
            raw = cursor.fetchone() if self._columns else None
            if raw is not None and not plan.is_select:
                cursor.fetchall()  # RETURNING on SQLite: read to the end of the statement
            count = cursor.rowcount
        except conn.dialect.loaded_dbapi.Error as err:
            _raise_wrapped(conn, plan.sql, args, err, cursor)
        return self._result(plan, raw), count


def run_together(
    db: Session | Connection, steps: Sequence[tuple[Prepared, Mapping[str, Any]]]
) -> list[tuple[Any, int]]:
    """Run several prepared statements in order; for each, its first result row (or
    ``None``) and its row count.

    On PostgreSQL (psycopg 3) they go to the server together in pipeline mode: one
    network round trip instead of one per statement.  The server still runs them one
    after the other, each with its own snapshot, so a statement after a ``FOR UPDATE``
    sees what the previous holder of that lock committed.  An error in any of them
    raises as a normal execution would (the transaction is then aborted, as it would
    be anyway).  Elsewhere (SQLite, or when statement execution is observed) they run
    one by one.
    """
    conn = _connection(db)
    raw_conn: Any = conn.connection.dbapi_connection
    pipeline = getattr(raw_conn, "pipeline", None)
    if _observed(conn):
        return [prepared._observed_run(conn, conn, params) for prepared, params in steps]
    seen: dict[Any, Any] = {}
    if pipeline is None:  # one by one, on one cursor
        cursor = conn.connection.cursor()
        try:
            return [prepared._run_on(conn, cursor, params, seen) for prepared, params in steps]
        finally:
            _close(cursor)
    plans = [prepared._plan(conn.dialect) for prepared, _ in steps]
    args = [prepared._args(plan, params, seen) for (prepared, params), plan in
            zip(steps, plans, strict=True)]
    cursors: list[Any] = []
    try:
        with pipeline():
            for plan, arg in zip(plans, args, strict=True):
                cursor = raw_conn.cursor()
                cursors.append(cursor)
                cursor.execute(plan.sql, arg)
        out: list[tuple[Any, int]] = []
        for (prepared, _), plan, cursor in zip(steps, plans, cursors, strict=True):
            raw = cursor.fetchone() if prepared._columns else None
            out.append((prepared._result(plan, raw), cursor.rowcount))
        return out
    except conn.dialect.loaded_dbapi.Error as err:
        # errors surface when the pipeline is synced: name every statement of the batch
        _raise_wrapped(conn, ";\n".join(p.sql for p in plans), args, err, None)
    finally:
        for cursor in cursors:
            _close(cursor)


class PreparedSelect(Prepared):
    """A read-only Core ``SELECT`` (one row expected), compiled once per dialect."""

    def __init__(self, statement: Select[Any]) -> None:
        super().__init__(statement, list(statement.selected_columns))

    def one_or_none(self, session: Session | Connection, params: Mapping[str, Any]) -> Any:
        """The single result row (attribute access by column name), or ``None``.

        :meth:`Prepared._run` written out: this is the booking check's and the profile
        panel's one statement, and every call and lookup saved here is saved on each."""
        conn = _connection(session)
        if _observed(conn):
            return self._observed_run(session, conn, params)[0]
        plan = self._plans.get(conn.dialect.name) or self._plan(conn.dialect)
        args = plan.pick(params) if plan.pick is not None else self._args(plan, params)
        raw_conn: Any = conn.connection.dbapi_connection
        cursor = raw_conn.cursor()
        try:
            cursor.execute(plan.sql, args)
            raw = cursor.fetchone()
        except conn.dialect.loaded_dbapi.Error as err:
            _raise_wrapped(conn, plan.sql, args, err, cursor)
        finally:
            _close(cursor)
        return None if raw is None else self._result(plan, raw)


class PreparedWrite(Prepared):
    """An ``INSERT`` / ``UPDATE`` (optionally ``RETURNING``), compiled once per dialect.

    ``statement`` may be one statement or one per dialect name (an upsert is written
    with each dialect's own ``insert``).  An ``INSERT`` is compiled for exactly
    ``column_keys``: every execution must pass all of them (column defaults are not
    applied).  ``returning`` names the columns the statement returns.
    """

    def __init__(
        self,
        statement: Executable | Mapping[str, Executable],
        *,
        column_keys: Sequence[str] | None = None,
        returning: Sequence[Any] = (),
    ) -> None:
        super().__init__(statement, returning, column_keys)

    def executemany(self, db: Session | Connection, rows: Sequence[Mapping[str, Any]]) -> int:
        """Run it once per row with the driver's ``executemany`` (no ``RETURNING``); the
        number of rows changed in all (``ON CONFLICT DO NOTHING`` skips are not counted)."""
        if not rows:
            return 0
        conn = _connection(db)
        if _observed(conn):
            result: Any = db.execute(
                self.statement_for(conn.dialect.name), [dict(r) for r in rows]
            )
            return int(result.rowcount)
        plan = self._plan(conn.dialect)
        seen: dict[Any, Any] = {}
        args = [self._args(plan, params, seen) for params in rows]
        cursor = conn.connection.cursor()
        try:
            cursor.executemany(plan.sql, args)
            return int(cursor.rowcount)
        except conn.dialect.loaded_dbapi.Error as err:
            _raise_wrapped(conn, plan.sql, args, err, cursor)
        finally:
            _close(cursor)

    def execute(self, session: Session | Connection, params: Mapping[str, Any]) -> int:
        """Run it; the number of rows it changed."""
        return self._run(session, params)[1]

    def returning_one(self, session: Session | Connection, params: Mapping[str, Any]) -> Any:
        """Run it; the first returned row (attribute access by column name), or ``None``."""
        return self._run(session, params)[0]


#: Builds a result row from the fetched values (their number is the statement's own).
_tuple_new = tuple.__new__

log = logging.getLogger(__name__)


def _close(cursor: Any) -> None:
    """Close a DB-API cursor without hiding the error being raised: after a disconnect
    the connection is invalidated (closed) first, and closing its cursor then fails."""
    try:
        cursor.close()
    except Exception:
        log.debug("closing a cursor failed", exc_info=True)


def _result_processor(type_: Any, dialect: Dialect) -> Callable[[Any], Any] | None:
    """A result column's conversion: the type's own one-step conversion where it has
    one for this dialect (``UTCDateTime`` on SQLite), else SQLAlchemy's."""
    fused = getattr(type_, "fused_result_processor", None)
    if fused is not None and (proc := fused(dialect)) is not None:
        return cast(Callable[[Any], Any], proc)
    return cast(
        Callable[[Any], Any] | None, type_.dialect_impl(dialect).result_processor(dialect, None)
    )


def _picker(positional: tuple[str, ...] | None) -> Any:
    """A function from the caller's mapping to the driver's positional parameters."""
    if positional is None:
        return None  # a driver with named parameters takes the mapping itself
    if not positional:
        return lambda _params: ()
    get = itemgetter(*positional)
    if len(positional) == 1:
        return lambda params: (get(params),)
    return get


def _memo_key(type_: Any, value: Any) -> tuple[Any, ...]:
    """Which values convert alike for the driver within one unit of work: equal
    datetimes in the same zone (equal instants in other zones are equal datetimes, but
    a backend that keeps the wall-clock time stores them differently), and otherwise
    only the same object (by identity: the caller keeps its parameters alive while the
    unit runs, and unhashable values such as JSON payloads need no hashing)."""
    if type(value) is datetime:
        return (type_, value, value.tzinfo)
    return (type_, id(value))


_CONNECTION = "samtycke.prepared.connection"


def _connection(db: Session | Connection) -> Connection:
    """The connection of the session's current transaction.

    ``Session.connection()`` costs more than running a small statement, so it is asked
    once per transaction and kept in ``session.info`` with the transaction it belongs
    to; a new, ended or failed transaction (or a closed connection) asks again.  Both
    are held by weak references: an ended unit's transaction and connection are freed
    when the host ends it, not inside the next unit's first statement (the booking
    check)."""
    if isinstance(db, Connection):
        return db
    trans = db.get_transaction()
    cached = db.info.get(_CONNECTION)
    if cached is not None and trans is not None and cached[0]() is trans and trans.is_active:
        conn = cached[1]()
        if conn is not None and not conn.closed and conn.in_transaction():
            return cast(Connection, conn)
    conn = db.connection()  # begins a transaction only when there was none
    db.info[_CONNECTION] = (
        weakref.ref(trans if trans is not None else db.get_transaction()), weakref.ref(conn)
    )
    return conn


def _observed(conn: Connection) -> bool:
    """Does anything listen to statement execution (logging, tracing, counting)?

    Listeners on this connection set its ``_has_events`` (SQLAlchemy's own check);
    the engine's dispatch is asked directly, which costs a third of asking the
    connection's joined one (this runs before every prepared statement)."""
    if conn._has_events:
        return True
    if conn._echo:  # SQLAlchemy logs this connection's statements (engine echo)
        return True
    d = conn.engine.dispatch
    return bool(
        d.before_cursor_execute or d.after_cursor_execute or d.before_execute
        or d.after_execute
    )


def _raise_wrapped(conn: Connection, sql: str, args: Any, err: Any, cursor: Any) -> NoReturn:
    dialect = conn.dialect
    disconnect = dialect.is_disconnect(err, conn.connection.dbapi_connection, cursor)
    if disconnect:
        conn.invalidate(err)
    raise exc.DBAPIError.instance(
        sql, args, err, dialect.loaded_dbapi.Error, dialect=dialect,
        connection_invalidated=disconnect,
    ) from err
