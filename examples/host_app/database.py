"""Engine, per-request session and the migrate step of the booking platform."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, scoped_session, sessionmaker

from examples.host_app import apps_glue

MIGRATIONS = Path(__file__).parent / "migrations"


def normalise_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str) -> Engine:
    engine = create_engine(normalise_url(url))
    apps_glue.prepare_engine(engine)  # SQLite: the same connection behaviour as the apps
    return engine


def make_sessions(engine: Engine) -> scoped_session[Session]:
    """One session per thread (= per request with the threaded server); removed at teardown."""
    return scoped_session(sessionmaker(engine, expire_on_commit=False))


def alembic_config(connection: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def migrate(engine: Engine) -> None:
    """The platform's migrate step: its own tables, then the installed apps' tables."""
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "head")
        apps_glue.upgrade_apps(connection)
