"""Migration 0004 (consent per purpose) on a database written the way the code before it
wrote one: every chain still verifies, the status equals a replay, everything belongs
to the default purpose, each practice has it, texts keep their ids; down and up again.

The data is written at revision 0003 with raw statements and the hash rule of that
time, spelled out here (seventeen chained fields, nothing left out), so that the test
does not lean on the code it checks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from conftest import create_pg_database, drop_pg_database
from sqlalchemy import JSON, Connection, Engine, column, inspect, table, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from samtycke_plugin.chain import verify_all
from samtycke_plugin.db import downgrade, make_engine, upgrade
from samtycke_plugin.integrity import ReplayedState, check_projection, replay_step
from samtycke_plugin.ledger import NewEvent, append, projection, replay
from samtycke_plugin.models import GENESIS_HASH, UTCDateTime
from samtycke_plugin.rules import State
from samtycke_plugin.text import normalise_body, render_html, sha256

#: The chained fields before purposes existed, in their order.
OLD_FIELDS = (
    "tenant_ref", "seq", "client_ref", "state", "text_version_id", "text_major",
    "text_sha256", "language", "channel", "method", "actor", "given_at", "occurred_at",
    "expires_at", "booking_ref", "request_id", "evidence_sha256",
)
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def _old_row_hash(prev: str, fields: dict[str, Any]) -> str:
    members = {
        k: v.astimezone(UTC).isoformat(timespec="microseconds") if isinstance(v, datetime) else v
        for k, v in ((k, fields[k]) for k in OLD_FIELDS)
    }
    return hashlib.sha256(prev.encode("ascii") + b"\n" + rfc8785.dumps(members)).hexdigest()


def _evidence_hash(salt: str, ip: str | None, ua: str | None, note: str | None) -> str:
    payload = rfc8785.dumps({"ip": ip, "ua": ua, "note": note})
    return hashlib.sha256(salt.encode("ascii") + b"\n" + payload).hexdigest()


_PRACTICE = table(
    "samtycke_practice", column("tenant_ref"), column("active"), column("setup_complete"),
    column("settings", JSON()), column("current_major"), column("default_language"),
    column("head_seq"), column("head_hash"), column("activated_at", UTCDateTime()),
    column("deactivated_at", UTCDateTime()), column("updated_at", UTCDateTime()),
)
_TEXT = table(
    "samtycke_text_version", column("id"), column("tenant_ref"), column("language"),
    column("major"), column("minor"), column("body"), column("html"), column("sha256"),
    column("change_kind"), column("reason"), column("created_by"),
    column("created_at", UTCDateTime()),
)
_EVENT = table(
    "samtycke_consent_event", column("id"), *(column(k) for k in OLD_FIELDS
                                              if k not in ("given_at", "occurred_at",
                                                           "expires_at")),
    column("given_at", UTCDateTime()), column("occurred_at", UTCDateTime()),
    column("expires_at", UTCDateTime()), column("prev_hash"), column("row_hash"),
)
_EVIDENCE = table(
    "samtycke_evidence", column("event_id"), column("tenant_ref"), column("client_ref"),
    column("salt"), column("ip_prefix"), column("user_agent"), column("note"),
)
_STATE = table(
    "samtycke_consent_state", column("tenant_ref"), column("client_ref"), column("state"),
    column("text_major"), column("expires_at", UTCDateTime()), column("since", UTCDateTime()),
    column("last_seq"), column("delivery"),
)

#: Two practices: one that requires consent with a lifetime, one with stored defaults.
PRACTICES = {
    "p-strict": {"require_consent_for_online_booking": True, "validity_days": 365,
                 "ask_new_clients": True},
    "p-plain": {},
}
#: (client, state, which text) per practice, in ledger order.
STORY = [
    ("c1", "given", "1.0"), ("c2", "refused", "1.0"), ("c3", "requested", "1.0"),
    ("c1", "renewed", "1.1"), ("c4", "given", "1.1"), ("c2", "given", "2.0"),
    ("c4", "withdrawn", None), ("c5", "given", "2.0"), ("c5", "erased", None),
    ("c3", "given", "2.0"),
]


def _write_old_database(conn: Connection) -> dict[str, Any]:
    """Practices, texts, events with evidence, and their status, as revision 0003 held
    them; returns what must survive the migration."""
    for tenant, settings in PRACTICES.items():
        texts: dict[str, dict[str, Any]] = {}
        for label, change in (("1.0", "initial"), ("1.1", "correction"), ("2.0", "content")):
            major, minor = (int(x) for x in label.split("."))
            for language in ("sv", "en"):
                body = normalise_body(f"# Samtycke {tenant} {label} {language}\n\nVi sparar "
                                      "dina uppgifter för din behandling.")
                row = {"tenant_ref": tenant,
                       "language": language, "major": major, "minor": minor, "body": body,
                       "html": render_html(body), "sha256": sha256(body),
                       "change_kind": change, "reason": None, "created_by": "system",
                       "created_at": T0}
                row["id"] = conn.execute(
                    _TEXT.insert().values(row).returning(_TEXT.c.id)).scalar_one()
                if language == "sv":
                    texts[label] = row
        prev = GENESIS_HASH
        snaps: dict[str, ReplayedState] = {}
        for seq, (client, state, label) in enumerate(STORY, start=1):
            at = T0 + timedelta(hours=seq)
            tv = texts[label] if label else None
            fields: dict[str, Any] = {
                "tenant_ref": tenant, "seq": seq, "client_ref": client, "state": state,
                "text_version_id": tv["id"] if tv else None,
                "text_major": tv["major"] if tv else None,
                "text_sha256": tv["sha256"] if tv else None,
                "language": "sv" if tv else None, "channel": "manual",
                "method": "paper" if state != "requested" else None, "actor": "staff:s1",
                "given_at": at if state in ("given", "renewed") else None, "occurred_at": at,
                "expires_at": at + timedelta(days=365)
                if state in ("given", "renewed") and settings else None,
                "booking_ref": f"b{seq}" if seq % 3 == 0 else None,
                "request_id": 500 + seq if state == "requested" else None,
                "evidence_sha256": None,
            }
            evidence = None
            if seq % 2:
                salt = f"{seq:032x}"
                evidence = {"tenant_ref": tenant, "client_ref": client,
                            "salt": salt, "ip_prefix": "198.51.100.0/24",
                            "user_agent": "Mozilla/5.0", "note": f"note {seq}"}
                fields["evidence_sha256"] = _evidence_hash(salt, "198.51.100.0/24",
                                                           "Mozilla/5.0", f"note {seq}")
            digest = _old_row_hash(prev, fields)
            event_id = conn.execute(_EVENT.insert().values(
                **fields, prev_hash=prev, row_hash=digest).returning(_EVENT.c.id)).scalar_one()
            if evidence:
                conn.execute(_EVIDENCE.insert().values(event_id=event_id, **evidence))
            prev = digest
            snaps[client] = replay_step(snaps.get(client), seq, state, fields["text_major"],
                                        fields["expires_at"], at)
        conn.execute(_PRACTICE.insert().values(
            tenant_ref=tenant, active=True, setup_complete=True, settings=settings,
            current_major=2, default_language="sv", head_seq=len(STORY), head_hash=prev,
            activated_at=T0, deactivated_at=None, updated_at=T0 + timedelta(days=1),
        ))
        for client, replayed in snaps.items():
            snap = replayed.snapshot
            conn.execute(_STATE.insert().values(
                tenant_ref=tenant, client_ref=client, state=snap.state.value,
                text_major=snap.text_major, expires_at=snap.expires_at, since=snap.since,
                last_seq=replayed.last_seq, delivery="bounced" if client == "c3" else None,
            ))
    return _survivors(conn)


def _survivors(conn: Connection) -> dict[str, Any]:
    """What the migration must keep as it is, read with plain SQL."""
    return {
        "texts": conn.execute(text(
            "SELECT id, tenant_ref, language, major, minor, sha256 FROM samtycke_text_version "
            "ORDER BY id")).all(),
        "events": conn.execute(text(
            "SELECT id, tenant_ref, seq, text_version_id, prev_hash, row_hash "
            "FROM samtycke_consent_event ORDER BY id")).all(),
        "states": conn.execute(text(
            "SELECT tenant_ref, client_ref, state, text_major, last_seq, delivery "
            "FROM samtycke_consent_state ORDER BY tenant_ref, client_ref")).all(),
    }


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def old_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A database at revision 0003 (an empty one)."""
    url = None
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'old.sqlite'}")
    else:
        url = create_pg_database(request.getfixturevalue("pg_server"))
        engine = make_engine(url)
    upgrade(engine, "0003")
    yield engine
    engine.dispose()
    if url is not None:
        drop_pg_database(request.getfixturevalue("pg_server"), url)


def _all_default_purpose(conn: Connection) -> None:
    for name in ("samtycke_consent_event", "samtycke_text_version", "samtycke_consent_state"):
        purposes = conn.execute(text(f"SELECT DISTINCT purpose_key FROM {name}")).scalars().all()
        assert purposes == ["care"], name
    assert conn.execute(text(
        "SELECT count(*) FROM samtycke_consent_event WHERE change_note_sha256 IS NOT NULL"
    )).scalar_one() == 0


def _check_migrated(engine: Engine, before: dict[str, Any]) -> None:
    with engine.connect() as conn:
        assert _survivors(conn) == before
        _all_default_purpose(conn)
        purposes = conn.execute(text(
            "SELECT tenant_ref, key, position, required, validity_days, current_major, "
            "archived_at FROM samtycke_purpose ORDER BY tenant_ref")).all()
    assert [tuple(p) for p in purposes] == [
        ("p-plain", "care", 0, False, None, 2, None),
        ("p-strict", "care", 0, True, 365, 2, None),
    ]
    with Session(engine) as session:
        results = verify_all(session)
        assert [r.tenant_ref for r in results] == ["p-plain", "p-strict"]
        assert all(r.ok and r.events == len(STORY) for r in results), results
        for tenant in PRACTICES:
            assert check_projection(session, tenant) is None
            assert projection(session, tenant) == replay(session, tenant)
            assert len(replay(session, tenant)) == 5


def _refused(engine: Engine, statement: str) -> bool:
    try:
        with engine.begin() as conn:
            conn.execute(text(statement))
    except DBAPIError:
        return True
    return False


def _append_one(engine: Engine, tenant: str, purpose: str, at: datetime) -> None:
    with Session(engine) as session:
        append(session, [NewEvent(
            tenant_ref=tenant, client_ref="c9", state=State.GIVEN, channel="manual",
            method="verbal", actor="staff:s1", occurred_at=at, given_at=at,
            purpose_key=purpose,
        )])
        session.commit()


def test_a_database_of_the_code_before_purposes_migrates_and_still_verifies(
    old_engine: Engine,
) -> None:
    with old_engine.begin() as conn:
        before = _write_old_database(conn)
    upgrade(old_engine)
    _check_migrated(old_engine, before)

    # The ledger and the texts are still append-only, and events still point at texts.
    for statement in ("UPDATE samtycke_text_version SET body = 'x'",
                      "DELETE FROM samtycke_text_version",
                      "UPDATE samtycke_consent_event SET actor = 'x'",
                      "DELETE FROM samtycke_consent_event"):
        assert _refused(old_engine, statement), statement
    assert _refused(old_engine, (
        "INSERT INTO samtycke_consent_event (tenant_ref, seq, client_ref, state, "
        "text_version_id, channel, actor, occurred_at, prev_hash, row_hash) VALUES "
        "('p-plain', 99, 'c', 'given', 987654, 'manual', 'staff:s', CURRENT_TIMESTAMP, "
        "'p', 'r')"))
    if old_engine.dialect.name == "sqlite":
        with old_engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []

    # Down to 0003 and up again: the rows come back as they were.
    downgrade(old_engine, "0003")
    with old_engine.connect() as conn:
        assert _survivors(conn) == before
        assert "samtycke_purpose" not in inspect(conn).get_table_names()
        columns = {c["name"] for c in inspect(conn).get_columns("samtycke_consent_event")}
        assert "purpose_key" not in columns and "change_note_sha256" not in columns
    for statement in ("DELETE FROM samtycke_text_version",
                      "UPDATE samtycke_consent_event SET actor = 'x'"):
        assert _refused(old_engine, statement), statement
    upgrade(old_engine)
    _check_migrated(old_engine, before)

    # The app appends to the migrated chains, for the default purpose and another one.
    _append_one(old_engine, "p-plain", "care", T0 + timedelta(days=30))
    _append_one(old_engine, "p-strict", "newsletter", T0 + timedelta(days=30))
    with Session(old_engine) as session:
        assert all(r.ok for r in verify_all(session))
        assert set(replay(session, "p-strict", "newsletter")) == {"c9"}
        assert "c9" not in replay(session, "p-strict")
        assert check_projection(session, "p-strict") is None

    # An event of another purpose cannot be kept by the older schema: no downgrade.
    with pytest.raises(RuntimeError, match="cannot downgrade"):
        downgrade(old_engine, "0003")
    with Session(old_engine) as session:
        assert all(r.ok for r in verify_all(session))
