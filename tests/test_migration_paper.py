"""Migration 0008 (the scan of a signed paper form in the hash chain) on SQLite and
PostgreSQL: up, down to 0006 and up again keeping every event and its hash; going down
is refused while an event names a scan (its hash covers the column)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import create_pg_database, drop_pg_database
from hostkit import TestHost, staff
from sqlalchemy import Engine, inspect, text
from test_practice_pages import set_up

from samtycke_plugin import consent
from samtycke_plugin.chain import verify_all
from samtycke_plugin.db import VERSION_TABLE, downgrade, make_engine, upgrade

PNG = b"\x89PNG\r\n\x1a\n" + b"\x01" * 16


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'paper.sqlite'}")
        url = None
    else:
        url = create_pg_database(request.getfixturevalue("pg_server"))
        engine = make_engine(url)
    upgrade(engine)
    yield engine
    engine.dispose()
    if url is not None:
        drop_pg_database(request.getfixturevalue("pg_server"), url)


def _hashes(engine: Engine) -> list[tuple[int, str]]:
    with engine.connect() as conn:
        return [(int(s), str(h)) for s, h in conn.execute(text(
            "SELECT seq, row_hash FROM samtycke_consent_event ORDER BY tenant_ref, seq"))]


def _revision(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar_one())


def test_down_to_0006_and_up_again_keeps_the_chain_and_refuses_to_lose_a_scan(
    fresh_engine: Engine,
) -> None:
    host = TestHost(fresh_engine)
    try:
        tenant = set_up(host)
        client = host.new_client(tenant)
        consent.record_manual(host, tenant, client, staff(), method="verbal", note=None,
                              given_at=host.now())
        host.session().commit()
        host.session().close()
        before = _hashes(fresh_engine)
        assert _revision(fresh_engine) == "0009"

        downgrade(fresh_engine, "0006")
        assert "samtycke_attachment" not in inspect(fresh_engine).get_table_names()
        columns = {c["name"] for c in inspect(fresh_engine).get_columns("samtycke_consent_event")}
        assert "attachment_sha256" not in columns and "change_note_sha256" in columns
        assert _hashes(fresh_engine) == before

        upgrade(fresh_engine)
        assert _hashes(fresh_engine) == before
        with host.session() as session:
            assert all(r.ok for r in verify_all(session))

        consent.record_manual(host, tenant, client, staff(), method="paper", note=None,
                              given_at=host.now(), attachment=PNG)
        host.session().commit()
        host.session().close()
        with pytest.raises(RuntimeError, match="below 0008"):
            downgrade(fresh_engine, "0006")
        assert _revision(fresh_engine) == "0009"
        with host.session() as session:
            assert all(r.ok for r in verify_all(session))
        with fresh_engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM samtycke_attachment")).scalar_one() == 1
    finally:
        host.close()
