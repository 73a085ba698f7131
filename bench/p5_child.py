"""P5 in its own process, so its peak RSS is the batch request's alone.

``python -m bench.p5_child URL TENANT`` runs
:func:`samtycke_plugin.requests.request_batch` for every client of the practice
without valid consent, commits, and prints one JSON line: elapsed time, outbox
rows written and the process's peak RSS (``ru_maxrss``).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, delete, func, select

from bench.floor import floor_metadata, floor_outbox
from bench.host import NOW, BenchHost
from hookspecs.types import TenantRef
from samtycke_plugin.db import make_engine
from samtycke_plugin.models import OutboxMessage


def run(url: str, tenant: str) -> dict[str, int]:
    from samtycke_plugin.requests import request_batch

    engine = make_engine(url)
    host = BenchHost(engine)
    session = host.session()
    before = session.scalar(
        select(func.count()).select_from(OutboxMessage).where(OutboxMessage.tenant_ref == tenant)
    ) or 0
    session.rollback()
    t0 = time.perf_counter_ns()
    request_batch(host, TenantRef(tenant), actor="staff:s1")
    session.commit()
    elapsed = time.perf_counter_ns() - t0
    after = session.scalar(
        select(func.count()).select_from(OutboxMessage).where(OutboxMessage.tenant_ref == tenant)
    ) or 0
    session.close()
    engine.dispose()
    return {
        "elapsed_ns": elapsed,
        "outbox_rows": int(after) - int(before),
        "max_rss_kb": peak_rss_kb(),
    }


def peak_rss_kb() -> int:
    """This process's peak resident set size.

    ``VmHWM`` where there is ``/proc``: ``ru_maxrss`` survives ``exec`` on Linux and so
    would report the parent's size at the fork (the parent holds the generated data).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def floor_insert(engine: Engine, n: int) -> int:
    """Raw DB-API ``executemany`` of ``n`` outbox-shaped rows and a commit, in ns."""
    from bench.floor import Raw

    floor_metadata.create_all(engine, tables=[floor_outbox])
    with engine.begin() as conn:
        conn.execute(delete(floor_outbox))
    raw = Raw(engine)
    sqlite = raw.dialect == "sqlite"
    when = NOW.replace(tzinfo=None).isoformat(sep=" ") if sqlite else NOW
    later = (NOW + timedelta(minutes=1)).replace(tzinfo=None).isoformat(sep=" ") if sqlite else (
        NOW + timedelta(minutes=1)
    )
    rows = [
        ("p", f"c{i}", i, "request", f"<{i}.bench@booking.example>", f"c{i}@example.org", "sv",
         f'{{"request": {i}}}', "queued", 0, later, when)
        for i in range(n)
    ]
    sql = raw.sql(
        "INSERT INTO bench_floor_outbox (tenant_ref, client_ref, request_id, kind, message_id, "
        "to_addr, locale, payload, status, attempts, next_attempt_at, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    t0 = time.perf_counter_ns()
    raw.begin()
    raw.cur.executemany(sql, rows)
    raw.commit()
    elapsed = time.perf_counter_ns() - t0
    raw.close()
    return elapsed


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1], sys.argv[2])))
