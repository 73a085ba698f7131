"""The benchmark's data generator writes what the app would have written: a chain that
verifies and a projection equal to a replay of the ledger (not a timed test)."""

from __future__ import annotations

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
