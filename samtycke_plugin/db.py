"""Database plumbing: engines (SQLite pragmas, PostgreSQL via psycopg 3) and migrations."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from samtycke_plugin import access_log, hostdb
from samtycke_plugin.errors import Unavailable
from samtycke_plugin.hostdb import unit_of_work
from samtycke_plugin.i18n import N_

if TYPE_CHECKING:
    from hookspecs.host import Host

T = TypeVar("T")

#: Shown when the database stayed busy or unreachable through every retry.
UNAVAILABLE = N_(
    "The system is busy right now and nothing was saved. Please try again in a moment."
)

VERSION_TABLE = "samtycke_alembic_version"
TABLE_PREFIX = "samtycke_"


def normalise_url(url: str) -> str:
    """``postgresql://`` → ``postgresql+psycopg://`` (psycopg 3); others unchanged."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def configure_sqlite(engine: Engine, *, busy_timeout_ms: int = 10_000) -> None:
    """Make a SQLite engine behave: WAL, busy timeout, foreign keys, synchronous=FULL,
    and explicit ``BEGIN IMMEDIATE`` so read-then-write units never hit a lock upgrade.

    Hosts that share a SQLite file with the app call this on their engine.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cur = dbapi_connection.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            cur.execute("PRAGMA foreign_keys = ON")
            if engine.url.database not in (None, "", ":memory:"):
                cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = FULL")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for the app's own use (CLI, tests, the example host)."""
    url = normalise_url(url)
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        configure_sqlite(engine)
    return engine


def include_name(name: str | None, type_: str, _parent: Any) -> bool:
    """Alembic filter: only ever look at the app's own tables."""
    if type_ == "table":
        return bool(name) and str(name).startswith(TABLE_PREFIX) and name != VERSION_TABLE
    return True


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    """An Alembic configuration for the app's migrations (shipped in the package)."""
    cfg = Config()
    cfg.set_main_option("script_location", "samtycke_plugin:migrations")
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(bind: Engine | Connection | Any, revision: str = "head") -> None:
    """Run the app's migrations up to ``revision`` (call it from the host's migrate step).

    ``bind`` is one of:

    * a SQLAlchemy ``Engine``: the migrations run in a transaction of their own, which
      this function commits;
    * a SQLAlchemy ``Connection``: they run in the connection's transaction (begun here
      when none is open) and the caller commits;
    * the host's DB-API connection (``sqlite3`` or psycopg 3, e.g. Django's
      ``connection.connection``): they run in the caller's open transaction and the
      caller commits.

    Only ``samtycke_`` tables and the ``samtycke_alembic_version`` table are touched.
    """
    _migrate(bind, lambda cfg: command.upgrade(cfg, revision))


def downgrade(bind: Engine | Connection | Any, revision: str) -> None:
    """Run the app's migrations down to ``revision`` (``"base"`` removes every app table);
    ``bind`` as for :func:`upgrade`."""
    _migrate(bind, lambda cfg: command.downgrade(cfg, revision))


def _migrate(bind: Engine | Connection | Any, run: Callable[[Config], None]) -> None:
    if isinstance(bind, Engine):
        with bind.begin() as conn:
            run(alembic_config(conn))
    elif isinstance(bind, Connection):
        if not bind.in_transaction():
            bind.begin()  # Alembic would commit a transaction it began itself
        run(alembic_config(bind))
    else:
        engine = hostdb.engine_for(hostdb.dialect_of(bind))
        with hostdb.borrowing(bind), engine.connect() as conn:
            conn.begin()  # ends without a commit: the caller's transaction holds it
            run(alembic_config(conn))


def is_locked_error(exc: BaseException) -> bool:
    """True for transient lock/serialization failures worth a bounded retry."""
    orig = getattr(exc, "orig", exc)
    if isinstance(orig, sqlite3.OperationalError):
        return "locked" in str(orig) or "busy" in str(orig)
    sqlstate = getattr(orig, "sqlstate", None)
    return sqlstate in ("40001", "40P01", "55P03")


def is_transient_error(exc: BaseException) -> bool:
    """A lock/serialization failure or a dropped connection: the whole unit of work
    was rolled back by the database and may be run again."""
    if is_locked_error(exc):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


class _ReadOnly(Exception):
    """Leaves a read-only unit of work so that the host rolls it back."""

    def __init__(self, result: object) -> None:
        super().__init__("read-only unit of work")
        self.result = result


def run_in_transaction(
    host: Host,
    fn: Callable[[Session], T],
    *,
    attempts: int = 5,
    commit: bool = True,
    max_wait: float = 0.25,
) -> T:
    """Run one app-owned unit of work, ``fn(session)``, in :meth:`Host.unit_of_work`
    (the host commits it; when ``commit`` is false, for read-only work, it is rolled
    back instead, unless it recorded an access-log row: :func:`access_log.keeps`).

    A transient failure (``database is locked``, serialization failure, deadlock, a
    dropped connection) rolls the unit back and runs it again from the start, at most
    ``attempts`` times with a short jittered wait; after the last attempt it raises
    :class:`~samtycke_plugin.errors.Unavailable` ("nothing was saved, try again"),
    never the raw driver error.  Any other exception rolls back and propagates.

    Use it where the app owns the transaction (its web pages, the CLI, jobs).  Called
    inside a unit of work or hook already open for ``host``, ``fn`` runs in that one.  In the
    host's booking transaction the host owns commit and retry: a transient error from
    ``booking_submitted`` aborts that transaction, and the host may run the whole
    booking again (check and record are idempotent per attempt because nothing of a
    failed attempt was committed).
    """

    current = hostdb.open_session(host)
    if current is not None:  # inside a unit of work already: it owns commit and retry
        return fn(current)

    def attempt() -> T:
        try:
            with unit_of_work(host) as session:
                result = fn(session)
                # A read-only unit that recorded an access-log row commits that row.
                if hostdb.discarded(session) or not (commit or access_log.keeps(session)):
                    raise _ReadOnly(result)
                return result
        except _ReadOnly as done:
            return done.result  # type: ignore[return-value]

    retrying = Retrying(
        stop=stop_after_attempt(max(1, attempts)),
        wait=wait_random_exponential(multiplier=0.01, max=max_wait),
        retry=retry_if_exception(is_transient_error),
        reraise=False,
    )
    try:
        return retrying(attempt)
    except RetryError as exc:
        last = exc.last_attempt.exception()
        raise Unavailable(UNAVAILABLE) from last
