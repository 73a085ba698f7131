"""The app's migrations: own version table, up/down/up, host tables untouched, models in sync."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from conftest import create_pg_database, drop_pg_database
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import DBAPIError

from samtycke_plugin.db import VERSION_TABLE, downgrade, include_name, make_engine, upgrade
from samtycke_plugin.models import Base


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A fresh, empty database holding one host table with data."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'host.sqlite'}")
        url = None
    else:
        server = request.getfixturevalue("pg_server")
        url = create_pg_database(server)
        engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE host_client (id INTEGER PRIMARY KEY, name VARCHAR(50))"))
        conn.execute(text("INSERT INTO host_client (id, name) VALUES (1, 'Anna'), (2, 'Bo')"))
        conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
        conn.execute(text("INSERT INTO alembic_version VALUES ('host_rev_1')"))
    yield engine
    engine.dispose()
    if url is not None:
        drop_pg_database(request.getfixturevalue("pg_server"), url)


def _host_state(engine: Engine) -> tuple[object, ...]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, name FROM host_client ORDER BY id")).all()
        rev = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    cols = [c["name"] for c in inspect(engine).get_columns("host_client")]
    return (tuple(map(tuple, rows)), rev, tuple(cols))


def test_upgrade_downgrade_upgrade_leaves_host_tables_untouched(empty_engine: Engine) -> None:
    before = _host_state(empty_engine)
    upgrade(empty_engine)
    tables = set(inspect(empty_engine).get_table_names())
    assert {t for t in tables if not t.startswith("samtycke_")} == {
        "host_client",
        "alembic_version",
    }
    assert VERSION_TABLE in tables
    assert _host_state(empty_engine) == before
    downgrade(empty_engine, "base")
    assert set(inspect(empty_engine).get_table_names()) == {
        "host_client",
        "alembic_version",
        VERSION_TABLE,
    }
    assert _host_state(empty_engine) == before
    upgrade(empty_engine)
    upgrade(empty_engine)  # idempotent
    assert _host_state(empty_engine) == before
    with empty_engine.connect() as conn:
        assert conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar_one() == "0009"


def test_models_match_the_migrations(empty_engine: Engine) -> None:
    upgrade(empty_engine)
    with empty_engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"include_name": include_name, "compare_type": True}
        )
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == []


def test_ledger_and_texts_refuse_update_and_delete(empty_engine: Engine) -> None:
    upgrade(empty_engine)
    with empty_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO samtycke_text_version (tenant_ref, language, major, minor, body, html, "
                "sha256, change_kind, created_by, created_at) VALUES ('t', 'sv', 1, 0, 'b', 'h', "
                "'x', 'initial', 'system', CURRENT_TIMESTAMP)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO samtycke_consent_event (tenant_ref, seq, client_ref, state, channel, actor, "
                "occurred_at, prev_hash, row_hash) VALUES ('t', 1, 'c', 'given', 'manual', 'staff:s', "
                "CURRENT_TIMESTAMP, 'p', 'r')"
            )
        )
    statements = [
        "UPDATE samtycke_consent_event SET state = 'withdrawn'",
        "DELETE FROM samtycke_consent_event",
        "UPDATE samtycke_text_version SET body = 'changed'",
        "DELETE FROM samtycke_text_version",
    ]
    if empty_engine.dialect.name == "postgresql":
        statements.append("TRUNCATE samtycke_consent_event CASCADE")
    for statement in statements:
        with pytest.raises(DBAPIError, match="append-only"):
            with empty_engine.begin() as conn:
                conn.execute(text(statement))
    with empty_engine.connect() as conn:
        assert (
            conn.execute(text("SELECT state FROM samtycke_consent_event")).scalar_one() == "given"
        )
        assert conn.execute(text("SELECT body FROM samtycke_text_version")).scalar_one() == "b"


def test_the_waiting_request_index_has_the_models_condition(empty_engine: Engine) -> None:
    """The migration's partial index is the one the batch's ON CONFLICT names."""
    from samtycke_plugin.models import WAITING_REQUEST

    upgrade(empty_engine)
    with empty_engine.connect() as conn:
        if empty_engine.dialect.name == "sqlite":
            sql = conn.execute(text(
                "SELECT sql FROM sqlite_master WHERE name = 'uq_samtycke_outbox_waiting_request'"
            )).scalar_one()
            assert sql.endswith(f"WHERE {WAITING_REQUEST}")
        else:
            sql = conn.execute(text(
                "SELECT indexdef FROM pg_indexes WHERE indexname = "
                "'uq_samtycke_outbox_waiting_request'"
            )).scalar_one()
            assert "consent_request" in sql and "request_id IS NULL" in sql
    downgrade(empty_engine, "0001")
    assert "uq_samtycke_outbox_waiting_request" not in {
        ix["name"] for ix in inspect(empty_engine).get_indexes("samtycke_outbox")
    }
    upgrade(empty_engine)


def test_the_batch_job_table_allows_one_unfinished_job_per_practice(empty_engine: Engine) -> None:
    """The migration's partial unique index refuses a second queued or running job of a
    practice, allows finished ones beside it; downgrading to 0002 drops the table."""
    from sqlalchemy.exc import IntegrityError

    upgrade(empty_engine)
    insert = text(
        "INSERT INTO samtycke_batch_job (tenant_ref, created_by, created_at, options, "
        "batch_key, state, done, asked, skipped_valid, skipped_pending, skipped_no_email, "
        "skipped_bad_name, skipped_withdrawn, skipped_refused) VALUES (:t, 'staff:s1', "
        "'2026-12-03 12:00:00', '{}', :k, :s, 0, 0, 0, 0, 0, 0, 0, 0)"
    )
    with empty_engine.begin() as conn:
        conn.execute(insert, {"t": "p1", "k": "a", "s": "done"})
        conn.execute(insert, {"t": "p1", "k": "b", "s": "queued"})
        conn.execute(insert, {"t": "p2", "k": "c", "s": "running"})
    for state in ("queued", "running"):
        with pytest.raises(IntegrityError), empty_engine.begin() as conn:
            conn.execute(insert, {"t": "p1", "k": "d", "s": state})
    downgrade(empty_engine, "0002")
    assert "samtycke_batch_job" not in inspect(empty_engine).get_table_names()
    upgrade(empty_engine)


def test_the_access_log_is_append_only_and_goes_down_to_0003(empty_engine: Engine) -> None:
    """Revision 0005 adds the access log with the ledger's append-only triggers;
    downgrading to 0003 drops it (and its triggers), upgrading brings it back empty."""
    upgrade(empty_engine)
    insert = text(
        "INSERT INTO samtycke_access_log (tenant_ref, at, actor, action, via, client_ref) "
        "VALUES ('p1', '2026-12-08 10:00:00', 'staff:s1', 'view_history', 'page', 'c1')"
    )
    with empty_engine.begin() as conn:
        conn.execute(insert)
    for statement in ("UPDATE samtycke_access_log SET actor = 'x'",
                      "DELETE FROM samtycke_access_log"):
        with pytest.raises(DBAPIError, match="append-only"), empty_engine.begin() as conn:
            conn.execute(text(statement))
    downgrade(empty_engine, "0003")
    assert "samtycke_access_log" not in inspect(empty_engine).get_table_names()
    assert "samtycke_batch_job" in inspect(empty_engine).get_table_names()
    upgrade(empty_engine)
    with empty_engine.begin() as conn:
        assert conn.execute(text("SELECT count(*) FROM samtycke_access_log")).scalar_one() == 0
        conn.execute(insert)
    with pytest.raises(DBAPIError, match="append-only"), empty_engine.begin() as conn:
        conn.execute(text("DELETE FROM samtycke_access_log"))


def test_consent_requests_name_their_purposes_and_go_down_to_0005(empty_engine: Engine) -> None:
    """Revision 0006 adds the purposes a consent request asks for (NULL on rows from
    before: the default purpose); downgrading to 0005 drops the column and keeps the rows."""
    upgrade(empty_engine)
    insert = text(
        "INSERT INTO samtycke_consent_request (tenant_ref, client_ref, purpose, token_hash, "
        "nonce, created_at, expires_at, created_by, delivery, purpose_majors) VALUES ('p1', "
        ":c, 'consent', :h, 'n', '2026-12-03 12:00:00', '2026-12-17 12:00:00', 'staff:s1', "
        "'queued', :m)"
    )
    with empty_engine.begin() as conn:
        conn.execute(insert, {"c": "c1", "h": "a" * 64, "m": '{"care": 1, "newsletter": 2}'})
    downgrade(empty_engine, "0005")
    columns = {c["name"] for c in inspect(empty_engine).get_columns("samtycke_consent_request")}
    assert "purpose_majors" not in columns and "client_ref" in columns
    with empty_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM samtycke_consent_request")).scalar_one() == 1
    upgrade(empty_engine)
    with empty_engine.connect() as conn:
        assert conn.execute(
            text("SELECT purpose_majors FROM samtycke_consent_request")
        ).scalar_one() is None
