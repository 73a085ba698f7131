"""Database plumbing: engines (SQLite pragmas, PostgreSQL via psycopg 3) and migrations."""

from __future__ import annotations

import sqlite3
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

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
        return bool(name) and str(name).startswith(TABLE_PREFIX)
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


def upgrade(bind: Engine | Connection, revision: str = "head") -> None:
    """Run the app's migrations up to ``revision`` (call it from the host's migrate step).

    Only ``samtycke_`` tables and the ``samtycke_alembic_version`` table are touched.
    """
    if isinstance(bind, Engine):
        with bind.begin() as conn:
            command.upgrade(alembic_config(conn), revision)
    else:
        command.upgrade(alembic_config(bind), revision)


def downgrade(bind: Engine | Connection, revision: str) -> None:
    """Run the app's migrations down to ``revision`` (``"base"`` removes every app table)."""
    if isinstance(bind, Engine):
        with bind.begin() as conn:
            command.downgrade(alembic_config(conn), revision)
    else:
        command.downgrade(alembic_config(bind), revision)


def is_locked_error(exc: BaseException) -> bool:
    """True for transient lock/serialization failures worth a bounded retry."""
    orig = getattr(exc, "orig", exc)
    if isinstance(orig, sqlite3.OperationalError):
        return "locked" in str(orig) or "busy" in str(orig)
    sqlstate = getattr(orig, "sqlstate", None)
    return sqlstate in ("40001", "40P01", "55P03")
