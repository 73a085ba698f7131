"""Tamper evidence (F17): whatever is done to the ledger directly in the database,
``verify_chain`` names the first broken event and what is wrong; ``samtycke verify``
exits non-zero.  Each test runs on its own fresh database (SQLite file and PostgreSQL),
because it switches off the append-only triggers the way a database superuser could.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from click.testing import CliRunner
from hostkit import TestHost
from proof_support import (  # noqa: F401 - fixtures
    KINDS,
    every_kind_history,
    evidence_of,
    fhost_fixture,
    fresh_fixture,
    new_practice,
    recompute_chain,
    tampering,
    triggers_refuse,
)
from sqlalchemy import Engine, func, select, update

from samtycke_plugin.chain import CHAINED_FIELDS, row_hash, verify_all, verify_chain
from samtycke_plugin.cli import main
from samtycke_plugin.ledger import NewEvent, append
from samtycke_plugin.models import ConsentEvent, Evidence, Practice, TextVersion
from samtycke_plugin.rules import State

T = ConsentEvent.__table__
E = Evidence.__table__


def _verify(host: TestHost, tenant: str) -> Any:
    host.session().rollback()
    result = verify_chain(host.session(), tenant)
    host.session().rollback()
    return result


def _broken(host: TestHost, tenant: str) -> tuple[int, str]:
    result = _verify(host, tenant)
    assert result.broken is not None, "the tampering was not detected"
    return result.broken.seq, result.broken.kind


def _other_value(column: str, value: Any, row: dict[str, Any], texts: list[int]) -> Any:
    """A different but well-formed value for a column (the smallest plausible change)."""
    if column in ("given_at", "occurred_at", "expires_at"):
        return row["occurred_at"] if value is None else value + timedelta(microseconds=1)
    if column == "state":
        return "refused" if value != "refused" else "given"
    if column == "text_version_id":
        return texts[1] if value == texts[0] else texts[0]
    if column in ("text_major", "request_id"):
        return 7 if value is None else value + 1
    if column in ("text_sha256", "evidence_sha256", "prev_hash", "row_hash"):
        if value is None:
            return "f" * 64
        return ("1" if value[0] != "1" else "2") + value[1:]
    if column == "language":
        return "en" if value != "en" else "sv"
    if column == "method":
        return "verbal" if value != "verbal" else "paper"
    if column == "actor":
        return "staff:evil"
    if column == "seq":
        return value + 1000
    if value is None:
        return "x-forged"
    return value + "x"


TAMPERED_COLUMNS = (*CHAINED_FIELDS, "prev_hash", "row_hash")


def test_every_column_of_every_event_kind_is_caught(fhost: TestHost) -> None:
    """One practice per event kind; every column of that event altered in turn (and put
    back): verify names exactly that event, and the chain is whole again afterwards."""
    tenants = {}
    for state in KINDS:
        tenant = new_practice(fhost)
        tenants[state] = (tenant, every_kind_history(fhost, tenant)[state])
    assert triggers_refuse(fhost.engine, tenants[State.GIVEN][0])
    texts = [
        int(i) for i in fhost.session().scalars(
            select(TextVersion.id).where(TextVersion.tenant_ref == tenants[State.GIVEN][0])
        )
    ]
    fhost.session().rollback()
    checked = 0
    for state, (tenant, event) in tenants.items():
        assert _verify(fhost, tenant).ok
        with fhost.engine.connect() as conn:
            row = dict(conn.execute(select(T).where(T.c.id == event.id)).mappings().one())
        for column in TAMPERED_COLUMNS:
            forged = _other_value(column, row[column], row, texts)
            with tampering(fhost.engine) as conn:
                conn.execute(update(T).where(T.c.id == event.id).values({column: forged}))
            expected = "missing" if column in ("tenant_ref", "seq") else "changed"
            assert _broken(fhost, tenant) == (event.seq, expected), (state, column)
            with tampering(fhost.engine) as conn:
                conn.execute(update(T).where(T.c.id == event.id).values({column: row[column]}))
            assert _verify(fhost, tenant).ok, (state, column)
            checked += 1
        # The id is a storage key, not part of the proof: changing it matters only where
        # it links evidence, and there it is caught.
        new_id = event.id + 100_000
        with tampering(fhost.engine) as conn:
            conn.execute(update(T).where(T.c.id == event.id).values(id=new_id))
        if row["evidence_sha256"] is not None:
            assert _broken(fhost, tenant) == (event.seq, "evidence"), state
        else:
            assert _verify(fhost, tenant).ok, state
        with tampering(fhost.engine) as conn:
            conn.execute(update(T).where(T.c.id == new_id).values(id=event.id))
        assert _verify(fhost, tenant).ok
    assert checked == len(KINDS) * len(TAMPERED_COLUMNS)
    assert triggers_refuse(fhost.engine, tenants[State.GIVEN][0])  # protection restored


def test_every_evidence_column_is_caught(fhost: TestHost) -> None:
    tenant = new_practice(fhost)
    events = every_kind_history(fhost, tenant)
    with_evidence = [ev for ev in events.values() if ev.evidence_sha256 is not None]
    assert len(with_evidence) >= 5
    last_id = fhost.session().scalar(
        select(func.max(ConsentEvent.id)).where(ConsentEvent.tenant_ref == tenant)
    )
    fhost.session().rollback()
    for event in with_evidence:
        with fhost.engine.connect() as conn:
            original = dict(evidence_of(conn, event.id))
        changes = {
            "salt": "0" * 32,
            "ip_prefix": "192.0.2.0/24",
            "user_agent": "Forged/1.0",
            "note": "Client agreed on the phone",
            "tenant_ref": "t-other",
            "client_ref": "c-other",
            "event_id": last_id,  # moved onto an event that had no evidence
        }
        for column, forged in changes.items():
            with tampering(fhost.engine) as conn:
                conn.execute(update(E).where(E.c.event_id == event.id).values({column: forged}))
            assert _broken(fhost, tenant) == (event.seq, "evidence"), column
            with tampering(fhost.engine) as conn:
                conn.execute(
                    update(E).where(E.c.event_id == (last_id if column == "event_id" else event.id))
                    .values({column: original[column]})
                )
            assert _verify(fhost, tenant).ok, column
    # Evidence removed without an erasure, and evidence attached where there was none.
    target = with_evidence[1]
    with tampering(fhost.engine) as conn:
        saved = dict(evidence_of(conn, target.id))
        conn.execute(E.delete().where(E.c.event_id == target.id))
    assert _broken(fhost, tenant) == (target.seq, "evidence")
    with tampering(fhost.engine) as conn:
        conn.execute(E.insert().values(saved))
    assert _verify(fhost, tenant).ok
    bare = next(ev for ev in events.values() if ev.evidence_sha256 is None)
    with tampering(fhost.engine) as conn:
        conn.execute(E.insert().values({**saved, "event_id": bare.id}))
    assert _broken(fhost, tenant) == (bare.seq, "evidence")


def _rows(engine: Engine, tenant: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [
            dict(r) for r in conn.execute(
                select(T).where(T.c.tenant_ref == tenant).order_by(T.c.seq)
            ).mappings()
        ]


def _shift(conn: Any, tenant: str, from_seq: int, by: int) -> None:
    """Renumber events ≥ from_seq by ``by`` (via a detour past the unique constraint)."""
    conn.execute(
        update(T).where(T.c.tenant_ref == tenant, T.c.seq >= from_seq)
        .values(seq=T.c.seq + 100_000)
    )
    conn.execute(
        update(T).where(T.c.tenant_ref == tenant, T.c.seq >= 100_000)
        .values(seq=T.c.seq - 100_000 + by)
    )


def _forged_row(rows: list[dict[str, Any]], seq: int, prev: str) -> dict[str, Any]:
    """A well-formed event for position ``seq``, hashed correctly after ``prev``."""
    template = dict(rows[seq - 2])
    template.pop("id")
    template.update(seq=seq, client_ref="c-forged", state="given", evidence_sha256=None,
                    prev_hash=prev)
    template["row_hash"] = row_hash(prev, {k: template[k] for k in CHAINED_FIELDS})
    return template


def test_deleted_inserted_and_reordered_rows_are_caught(fhost: TestHost) -> None:
    cases: dict[str, tuple[str, int, str]] = {}

    def practice() -> tuple[str, list[dict[str, Any]]]:
        tenant = new_practice(fhost)
        every_kind_history(fhost, tenant)
        return tenant, _rows(fhost.engine, tenant)

    tenant, rows = practice()
    with tampering(fhost.engine) as conn:  # a gap in the middle
        conn.execute(T.delete().where(T.c.tenant_ref == tenant, T.c.seq == 5))
    cases["delete middle"] = (tenant, 5, "missing")

    tenant, rows = practice()
    last = rows[-1]["seq"]
    with tampering(fhost.engine) as conn:  # the newest event gone
        conn.execute(T.delete().where(T.c.tenant_ref == tenant, T.c.seq == last))
    cases["delete last"] = (tenant, last, "missing")

    tenant, rows = practice()
    with tampering(fhost.engine) as conn:  # gone, and the later ones renumbered
        conn.execute(E.delete().where(E.c.event_id == rows[3]["id"]))
        conn.execute(T.delete().where(T.c.tenant_ref == tenant, T.c.seq == 4))
        _shift(conn, tenant, 5, -1)
    cases["delete and renumber"] = (tenant, 4, "missing")

    tenant, rows = practice()
    with tampering(fhost.engine) as conn:  # a forged event after the chain head
        conn.execute(T.insert().values(_forged_row(rows, last + 1, rows[-1]["row_hash"])))
    cases["insert past head"] = (tenant, last + 1, "inserted")

    tenant, rows = practice()
    with tampering(fhost.engine) as conn:  # a forged event in the middle, hash and all
        _shift(conn, tenant, 6, +1)
        conn.execute(T.insert().values(_forged_row(rows, 6, rows[4]["row_hash"])))
        conn.execute(
            update(Practice.__table__).where(Practice.__table__.c.tenant_ref == tenant)
            .values(head_seq=last + 1)
        )
    cases["insert middle"] = (tenant, 6, "inserted")

    tenant, rows = practice()
    with tampering(fhost.engine) as conn:  # two events swap places
        conn.execute(update(T).where(T.c.id == rows[6]["id"]).values(seq=100_007))
        conn.execute(update(T).where(T.c.id == rows[7]["id"]).values(seq=7))
        conn.execute(update(T).where(T.c.id == rows[6]["id"]).values(seq=8))
    cases["swap"] = (tenant, 7, "reordered")

    tenant, rows = practice()
    with tampering(fhost.engine) as conn:  # one event rewritten, its own hash recomputed
        forged = {**rows[2], "state": "given"}
        forged["row_hash"] = row_hash(forged["prev_hash"], {k: forged[k] for k in CHAINED_FIELDS})
        conn.execute(update(T).where(T.c.id == rows[2]["id"]).values(
            state="given", row_hash=forged["row_hash"]))
    cases["rewrite one"] = (tenant, 3, "changed")

    tenant, rows = practice()
    with tampering(fhost.engine) as conn:  # the chain head altered
        conn.execute(
            update(Practice.__table__).where(Practice.__table__.c.tenant_ref == tenant)
            .values(head_hash="0" * 64)
        )
    cases["head hash"] = (tenant, last, "head")

    for name, (tenant, seq, kind) in cases.items():
        assert _broken(fhost, tenant) == (seq, kind), name
    everything = {r.tenant_ref: r for r in verify_all(fhost.session())}
    fhost.session().rollback()
    assert {t for t, _, _ in cases.values()} <= set(everything)
    assert all(not everything[t].ok for t, _, _ in cases.values())


def test_a_fully_recomputed_chain_verifies_but_an_old_checkpoint_catches_it(
    fhost: TestHost,
) -> None:
    from samtycke_plugin import checkpoint, checkpoint_keys

    key = checkpoint_keys.generate_key()
    tenant = new_practice(fhost)
    events = every_kind_history(fhost, tenant)
    early = checkpoint.create(fhost.session(), tenant, key, fhost.now())
    fhost.session().commit()
    keys = {key.key_id: key.public}
    assert checkpoint.check(fhost.session(), early, keys).ok
    fhost.session().rollback()

    # The attacker turns a withdrawal into consent and recomputes everything, head too.
    withdrawn = events[State.WITHDRAWN]
    with tampering(fhost.engine) as conn:
        conn.execute(update(T).where(T.c.id == withdrawn.id).values(state="given"))
        recompute_chain(conn, tenant)
    assert _verify(fhost, tenant).ok  # the chain alone cannot tell
    result = checkpoint.check(fhost.session(), early, keys)
    fhost.session().rollback()
    assert result.problem == "rewritten"
    assert f"#{early['seq']}" in result.detail
    assert result.chain is not None and result.chain.ok


def test_verify_command_exits_nonzero_and_names_the_break(fhost: TestHost) -> None:
    good = new_practice(fhost)
    every_kind_history(fhost, good)
    bad = new_practice(fhost)
    events = every_kind_history(fhost, bad)
    url = fhost.engine.url.render_as_string(hide_password=False)
    runner = CliRunner()
    ok = runner.invoke(main, ["--database-url", url, "verify", "--tenant", good])
    assert ok.exit_code == 0, ok.output
    assert f"OK      {good}" in ok.output

    target = events[State.REFUSED]
    with tampering(fhost.engine) as conn:
        conn.execute(update(T).where(T.c.id == target.id).values(actor="staff:evil"))
    res = runner.invoke(main, ["--database-url", url, "verify"])
    assert res.exit_code == 1, res.output
    assert f"BROKEN  {bad}: first broken event #{target.seq} (changed)" in res.output
    assert f"OK      {good}" in res.output
    assert "2 practice(s) checked, 1 broken." in res.output
    only = runner.invoke(main, ["--database-url", url, "verify", "--tenant", bad])
    assert only.exit_code == 1 and good not in only.output
    unknown = runner.invoke(main, ["--database-url", url, "verify", "--tenant", "t-nobody"])
    assert unknown.exit_code != 0 and "No such practice" in unknown.output


def test_erasure_is_not_a_break_but_evidence_loss_without_it_is(fhost: TestHost) -> None:
    from samtycke_plugin import erasure

    tenant = new_practice(fhost)
    events = every_kind_history(fhost, tenant)
    assert events[State.GIVEN].evidence_sha256 is not None
    erasure.erase_client(fhost, tenant, "c-main")
    fhost.session().commit()
    assert _verify(fhost, tenant).ok
    # The erased client's evidence went; the last client's did not exist; all fine.
    assert fhost.session().scalar(
        select(func.count()).select_from(Evidence).where(Evidence.tenant_ref == tenant)
    ) == 0
    fhost.session().rollback()


def test_the_purpose_of_an_event_is_in_its_hash(fhost: TestHost) -> None:
    """An event of another purpose hashes its purpose: moving it to the default purpose
    (where the canonical form leaves the purpose out) is a changed event."""
    tenant = new_practice(fhost)
    session = fhost.session()
    at = fhost.now()
    [care] = append(session, [NewEvent(
        tenant_ref=tenant, client_ref="c1", state=State.GIVEN, channel="manual",
        method="verbal", actor="staff:s1", occurred_at=at, given_at=at,
    )])
    [news] = append(session, [NewEvent(
        tenant_ref=tenant, client_ref="c1", state=State.GIVEN, channel="manual",
        method="verbal", actor="staff:s1", occurred_at=at, given_at=at,
        purpose_key="newsletter",
    )])
    session.commit()
    assert (care.purpose_key, news.purpose_key) == ("care", "newsletter")
    assert _verify(fhost, tenant).ok
    with tampering(fhost.engine) as conn:
        conn.execute(update(T).where(T.c.id == news.id).values(purpose_key="care"))
    assert _broken(fhost, tenant) == (news.seq, "changed")
    with tampering(fhost.engine) as conn:
        conn.execute(update(T).where(T.c.id == news.id).values(purpose_key="newsletter"))
        conn.execute(update(T).where(T.c.id == care.id).values(purpose_key="newsletter"))
    assert _broken(fhost, tenant) == (care.seq, "changed")
