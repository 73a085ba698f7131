"""The benchmark's data generator writes what the app would have written: a chain that
verifies and a projection equal to a replay of the ledger (not a timed test)."""

from __future__ import annotations

import sqlite3
import sys
import uuid
from pathlib import Path

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

# bench/ is not part of the installed package: import it from the source tree, after
# the installed packages (so samtycke_plugin still comes from the installation).
sys.path.append(str(Path(__file__).resolve().parents[1]))

from bench.generate import PracticeSpec, generate
from bench.host import BenchHost, host_client
from hookspecs.types import TenantRef
from samtycke_plugin import service
from samtycke_plugin.chain import verify_chain
from samtycke_plugin.ledger import projection, replay
from samtycke_plugin.models import ConsentEvent


def _specs(prefix: str) -> list[PracticeSpec]:
    return [
        PracticeSpec(tenant=f"{prefix}a", clients=300, current_major=2, validity_days=730,
                     required=False, seed=11),
        PracticeSpec(tenant=f"{prefix}b", clients=200, current_major=3, validity_days=None,
                     required=True, seed=12),
    ]


def test_generated_practices_verify_and_match_a_replay(engine: Engine) -> None:
    prefix = f"s{uuid.uuid4().hex[:6]}"
    specs = _specs(prefix)
    gen = generate(engine, specs, log=lambda _msg: None)
    with Session(engine) as session:
        for spec in specs:
            assert verify_chain(session, spec.tenant).ok
            assert projection(session, spec.tenant) == replay(session, spec.tenant)
            events = session.scalar(
                select(func.count()).select_from(ConsentEvent)
                .where(ConsentEvent.tenant_ref == spec.tenant)
            )
            assert events == gen[spec.tenant].events > spec.clients  # > 1 event per client
            clients = session.scalar(
                select(func.count()).select_from(host_client)
                .where(host_client.c.tenant == spec.tenant)
            )
            assert clients == spec.clients
    # The generator's valid / not valid split is what the app's filter says.
    host = BenchHost(engine)
    try:
        for spec in specs:
            host.active[spec.tenant] = frozenset({service.APP_KEY})
            clause = service.filter_clause(
                host, TenantRef(spec.tenant), service.FILTER_NOT_VALID,
                host_client.c.id,  # type: ignore[arg-type]
            )
            assert clause is not None
            without = set(host.session().scalars(
                select(host_client.c.id).where(host_client.c.tenant == spec.tenant, clause.clause)
            ))
            assert without == set(gen[spec.tenant].not_valid)
            assert 0 < len(without) < spec.clients
    finally:
        host.close()


def test_the_p2_ceiling_replays_a_whole_booking(tmp_path: Path) -> None:
    """``bench.p2_ceiling`` replays the app's own statements of one booking: each replay
    writes what a booking writes (event, evidence, projection, head, receipt row) for
    another client, so the bound it prints is for the same database work; the host
    alone writes one row per unit of work and commits it."""
    from bench.p2_ceiling import host_alone, record_one
    from bench.p2_ceiling import replay as replay_bookings

    path = tmp_path / "ceiling.sqlite"
    statements, client, seq, others, tenant = record_one(path, 60)
    kinds = [" ".join(sql.split()[:3]) for sql, _ in statements]
    assert kinds == [
        "SELECT samtycke_practice.head_seq, samtycke_practice.head_hash",
        "SELECT samtycke_practice.active, samtycke_practice.setup_complete,",
        "INSERT INTO samtycke_consent_event", "INSERT INTO samtycke_evidence",
        "UPDATE samtycke_practice SET", "INSERT INTO samtycke_consent_state",
        "INSERT INTO samtycke_outbox",
    ]
    begin_ns, booking_ns, floor_ns = replay_bookings(
        path, statements, client=client, seq=seq, others=others[:3], tenant=tenant)
    assert len(begin_ns) == len(booking_ns) == len(floor_ns) == 3
    with sqlite3.connect(path) as conn:
        def count(sql: str) -> int:
            return int(conn.execute(sql, {"tenant": tenant, "seq": seq}).fetchone()[0])
        assert conn.execute("SELECT head_seq FROM samtycke_practice WHERE tenant_ref = ?",
                            (tenant,)).fetchone()[0] == seq + 3
        new = conn.execute(
            "SELECT client_ref FROM samtycke_consent_event WHERE tenant_ref = ? AND seq > ? "
            "ORDER BY seq", (tenant, seq)).fetchall()
        assert [r[0] for r in new] == others[:3]
        assert count("SELECT count(*) FROM samtycke_evidence e JOIN samtycke_consent_event v "
                     "ON v.id = e.event_id WHERE v.tenant_ref = :tenant AND v.seq > :seq") == 3
        assert count("SELECT count(*) FROM samtycke_outbox WHERE tenant_ref = :tenant "
                     "AND kind = 'receipt' AND message_id LIKE '<samtycke.r%'") == 3
        assert count("SELECT count(*) FROM bench_floor_event WHERE tenant_ref = :tenant") == 3
    # the host alone writes one floor row per unit of work, after the replay's
    alone_ns = host_alone(path, tenant, 4)
    assert len(alone_ns) == 4 and min(alone_ns) > 0
    with sqlite3.connect(path) as conn:
        seqs = [r[0] for r in conn.execute(
            "SELECT seq FROM bench_floor_event WHERE tenant_ref = ? ORDER BY seq", (tenant,))]
    assert seqs == [1, 2, 3, 4, 5, 6, 7]
