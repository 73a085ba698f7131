"""Fixtures: a migrated SQLite file per test and a migrated PostgreSQL database per session.

Tests isolate themselves by using fresh practice (tenant) refs, which the app
scopes every query by; that is also what a multi-tenant host relies on.
Under CI=true a PostgreSQL server that cannot be reached is a failure, not a skip.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import write_guard
from hostkit import CI, QueryHost, TestHost, pg_admin_url
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from samtycke_plugin.db import make_engine, upgrade

write_guard.install()


@pytest.fixture(autouse=True)
def _one_write_path() -> Iterator[None]:
    """Fails any test in which app code other than the ledger wrote a ledger event or a
    projection row (see ``write_guard``)."""
    with write_guard.recording() as writes:
        yield
    wrong = [w for w in writes if not w.allowed]
    assert not wrong, f"written outside the ledger's write path: {wrong}"


@pytest.fixture
def unobserved() -> Iterator[None]:
    """No statement listener at all, as in production (the write-path guard is off)."""
    with write_guard.suspended():
        yield


def _pg_available() -> str | None:
    try:
        eng = create_engine(make_url(pg_admin_url()).set(drivername="postgresql+psycopg"))
        with eng.connect() as conn:
            conn.execute(text("SELECT 1"))
        eng.dispose()
        return None
    except Exception as exc:
        return str(exc).splitlines()[0]


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The admin URL of a reachable PostgreSQL server (fails under CI if missing)."""
    problem = _pg_available()
    if problem is not None:
        if CI:
            pytest.fail(f"PostgreSQL is required under CI=true but unreachable: {problem}")
        pytest.skip(f"PostgreSQL not reachable: {problem}")
    return pg_admin_url()


def create_pg_database(admin_url: str) -> str:
    """A fresh, empty database; returns its URL."""
    name = f"samtycke_t_{uuid.uuid4().hex[:10]}"
    admin = create_engine(
        make_url(admin_url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_pg_database(admin_url: str, url: str) -> None:
    name = make_url(url).database
    admin = create_engine(
        make_url(admin_url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for every test that needs one."""
    path = tmp_path_factory.mktemp("db") / "template.sqlite"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    raw = engine.raw_connection()  # autocommit: a checkpoint cannot run in a transaction
    try:
        raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        raw.close()
    engine.dispose()
    return path


@pytest.fixture
def sqlite_engine(sqlite_template: Path, tmp_path: Path) -> Iterator[Engine]:
    """A migrated SQLite database of the test's own: a transaction another test left open
    (SQLite has one writer at a time) can never make this test wait."""
    path = tmp_path / "samtycke.sqlite"
    shutil.copyfile(sqlite_template, path)
    engine = make_engine(f"sqlite:///{path}")
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def pg_engine(pg_server: str) -> Iterator[Engine]:
    url = create_pg_database(pg_server)
    engine = make_engine(url, pool_size=10, max_overflow=20)
    upgrade(engine)
    yield engine
    engine.dispose()
    drop_pg_database(pg_server, url)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest) -> Engine:
    """The migrated database, once on SQLite and once on PostgreSQL."""
    name = "sqlite_engine" if request.param == "sqlite" else "pg_engine"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


@pytest.fixture
def host(engine: Engine) -> Iterator[TestHost]:
    h = TestHost(engine)
    yield h
    h.close()


@pytest.fixture(params=["streamed", "query"])
def batch_host(request: pytest.FixtureRequest, engine: Engine) -> Iterator[TestHost]:
    """A host for batch requests: one that only streams its clients (``iter_clients``),
    and one that also offers them as a query (``client_query``: the set-based batch)."""
    h = TestHost(engine) if request.param == "streamed" else QueryHost(engine)
    yield h
    h.close()
