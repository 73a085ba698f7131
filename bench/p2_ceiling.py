"""How close can P2 get on SQLite?  One booking's database work alone, without Python.

``python -m bench.p2_ceiling [--clients N] [--bookings N]`` records one consent at
booking through the app (``AppHooks.submitted`` + commit) with a statement listener,
then replays exactly those statements on a raw ``sqlite3`` connection, once per booking
(``BEGIN IMMEDIATE`` … ``COMMIT``, the app's durability settings), for other clients
and the next sequence numbers, alternating with P2's floor (one row + commit).

What it prints is a bound, not a figure of the app: no Python runs for a booking but
the replay loop, and no host work either (its read, SQLAlchemy's session).  The chain
hashes and the receipt's payload are the recorded booking's (the file is thrown away).
If even this cannot meet a P2 target, no change to the app's Python can.  Each replay
changes, by value: the client ref, the new sequence number (event, evidence, head) and
the one before it (the head's condition), and the receipt's Message-ID; every
booking's parameters are made before the timing starts.  As in P2, the ratio leaves
the ``BEGIN`` out; the bookings per second count it.

Last, the benchmark's host runs alone, with no app: the units of work of P2's
sustained run, each writing one row (the floor's) through the host's session instead
of recording a consent.  Its rate is what a single writer gets before the app adds
anything; P2's sustained rate is bounded by it.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, select

from bench.figures import Bench, _submission
from bench.floor import floor_event, floor_event_insert, floor_metadata
from bench.generate import generate, main_practices
from bench.host import NOW
from hookspecs.types import BookingRef, ClientRef
from samtycke_plugin.db import make_engine

#: As ``samtycke_plugin.db.configure_sqlite`` sets them (P2's floor has the same
#: durability settings).
_PRAGMAS = ("PRAGMA busy_timeout = 10000", "PRAGMA foreign_keys = ON",
            "PRAGMA journal_mode = WAL", "PRAGMA synchronous = FULL")

Statement = tuple[str, tuple[Any, ...]]

#: Stands for the new event's id in the recorded statements (the evidence names its
#: event by id): each replay puts in the id its own event insert returned.
EVENT_ID = object()


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in _PRAGMAS:
        conn.execute(pragma)
    return conn


def record_one(path: Path, clients: int) -> tuple[list[Statement], str, int, list[str], str]:
    """Generate a two-practice database and record one booking through the app.

    Returns its statements (SQL and DB-API parameters, ``BEGIN`` left out), its client,
    its sequence number, the practice's other clients without valid consent and the
    practice."""
    engine = make_engine(f"sqlite:///{path}")
    specs = main_practices(2, clients)
    gen = generate(engine, specs)
    engine.dispose()
    b = Bench(engine=engine, url=f"sqlite:///{path}", gen=gen, main=specs[0].tenant,
              small=specs[1].tenant, growth=[], quick=True)
    pool = list(gen[b.main].not_valid)
    sub = _submission(b, b.main, pool[0], tick=True)
    statements: list[Statement] = []

    def grab(_conn: Any, _cursor: Any, sql: str, params: Any, _ctx: Any, _many: bool) -> None:
        if not sql.lstrip().upper().startswith("BEGIN"):
            statements.append((sql, tuple(params)))

    b.fresh_unit_of_work()
    event.listen(engine, "before_cursor_execute", grab)
    b.hooks.submitted(sub, BookingRef("bk0"), ClientRef(pool[0]))
    event.remove(engine, "before_cursor_execute", grab)
    b.host.session().commit()
    b.close()
    floor_metadata.create_all(engine, tables=[floor_event])
    engine.dispose()
    conn = _connect(path)
    seq = int(conn.execute("SELECT head_seq FROM samtycke_practice WHERE tenant_ref = ?",
                           (b.main,)).fetchone()[0])
    event_id = int(conn.execute(
        "SELECT id FROM samtycke_consent_event WHERE tenant_ref = ? AND seq = ?", (b.main, seq)
    ).fetchone()[0])
    conn.close()
    statements = [
        (sql, tuple(EVENT_ID if type(v) is int and v == event_id else v for v in params))
        if sql.lstrip().startswith("INSERT INTO samtycke_evidence") else (sql, params)
        for sql, params in statements
    ]
    others = pool[1:]
    small = [v for _, params in statements for v in params
             if type(v) is int and v not in (seq, seq - 1)]
    if seq - 1 <= max(small, default=0):  # the replay finds the seq by its value
        raise ValueError(f"sequence number {seq} too small to find: generate more clients")
    return statements, pool[0], seq, others, b.main


def replay_params(params: tuple[Any, ...], *, client: str, seq: int, new_client: str,
                  k: int) -> tuple[Any, ...]:
    """The recorded booking's parameters for the ``k``-th booking after it."""
    out: list[Any] = []
    for v in params:
        if v == client:
            v = new_client
        elif type(v) is int and v == seq:
            v = seq + k
        elif type(v) is int and v == seq - 1:
            v = seq + k - 1
        elif isinstance(v, str) and v.startswith("<samtycke."):
            v = v.replace("<samtycke.", f"<samtycke.r{k}.", 1)
        out.append(v)
    return tuple(out)


def host_alone(path: Path, tenant: str, units: int) -> list[int]:
    """The benchmark's host with no app: units of work back to back, each as P2's
    sustained run begins them (rollback, ``BEGIN IMMEDIATE`` and the host's first read,
    through the host's SQLAlchemy session), then one row (the floor's) written through
    the session's connection and the session committed.  The nanoseconds of each unit.

    A booking platform writes at least its own booking row per booking, so this is what
    a single writer gets before any consent is recorded."""
    engine = make_engine(f"sqlite:///{path}")
    b = Bench(engine=engine, url=f"sqlite:///{path}", gen={}, main=tenant, small=tenant,
              growth=[], quick=True)
    fsql, frow = floor_event_insert(tenant, NOW.isoformat())
    session = b.host.session()
    first = 1 + int(session.scalar(select(func.coalesce(func.max(floor_event.c.seq), 0))) or 0)
    out: list[int] = []
    try:
        for k in range(first, first + units):
            t0 = time.perf_counter_ns()
            b.fresh_unit_of_work()
            session.connection().exec_driver_sql(fsql, (k, *frow))
            session.commit()
            out.append(time.perf_counter_ns() - t0)
    finally:
        b.close()
        engine.dispose()
    return out


def replay(path: Path, statements: list[Statement], *, client: str, seq: int,
           others: list[str], tenant: str) -> tuple[list[int], list[int], list[int]]:
    """Replay the booking for each of ``others``, alternating with P2's floor; the
    nanoseconds of each booking's BEGIN, of the rest of it (its statements and COMMIT)
    and of each floor (row + COMMIT)."""
    app, floor = _connect(path), _connect(path)
    fsql, frow = floor_event_insert(tenant, NOW.isoformat())
    bookings = [
        [(sql, replay_params(params, client=client, seq=seq, new_client=other, k=k))
         for sql, params in statements]
        for k, other in enumerate(others, start=1)
    ]
    begin_ns: list[int] = []
    booking_ns: list[int] = []
    floor_ns: list[int] = []
    try:
        for k, booking in enumerate(bookings, start=1):
            cur = app.cursor()
            t0 = time.perf_counter_ns()
            cur.execute("BEGIN IMMEDIATE")
            t1 = time.perf_counter_ns()
            event_id = None
            for sql, params in booking:
                if EVENT_ID in params:
                    params = tuple(event_id if v is EVENT_ID else v for v in params)
                cur.execute(sql, params)
                rows = cur.fetchall()
                if event_id is None and rows and sql.startswith("INSERT INTO samtycke_consent_e"):
                    event_id = rows[0][0]
            cur.execute("COMMIT")
            booking_ns.append(time.perf_counter_ns() - t1)
            begin_ns.append(t1 - t0)
            cur.close()
            fc = floor.cursor()
            fc.execute("BEGIN IMMEDIATE")  # untimed, as in P2
            t0 = time.perf_counter_ns()
            fc.execute(fsql, [k, *frow])
            fc.execute("COMMIT")
            floor_ns.append(time.perf_counter_ns() - t0)
            fc.close()
    finally:
        app.close()
        floor.close()
    return begin_ns, booking_ns, floor_ns


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.p2_ceiling", description=__doc__)
    parser.add_argument("--clients", type=int, default=100_000)
    parser.add_argument("--bookings", type=int, default=1500)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ceiling.sqlite"
        statements, client, seq, others, tenant = record_one(path, args.clients)
        print(f"one booking: {len(statements)} statements")
        for sql, _ in statements:
            print("  " + " ".join(sql.split())[:96])
        begin_ns, booking_ns, floor_ns = replay(
            path, statements, client=client, seq=seq, others=others[:args.bookings],
            tenant=tenant,
        )
        alone_ns = host_alone(path, tenant, args.bookings)
    n = len(booking_ns)
    skip = min(200, n // 5)  # warm-up
    b_med = statistics.median(booking_ns[skip:]) / 1000
    whole = [b + w for b, w in zip(begin_ns[skip:], booking_ns[skip:], strict=True)]
    w_mean = statistics.mean(whole) / 1000
    f_med = statistics.median(floor_ns[skip:]) / 1000
    print(f"replayed {n} bookings")
    print(f"database work of a booking after BEGIN, to COMMIT: median {b_med:.0f} µs")
    print(f"with BEGIN: mean {w_mean:.0f} µs, at most {1e6 / w_mean:,.0f} bookings/s")
    print(f"P2 floor, one row + COMMIT: median {f_med:.0f} µs; ratio {b_med / f_med:.2f}× "
          f"of the 3× the target allows")
    a_mean = statistics.mean(alone_ns[skip:]) / 1000
    print(f"the host alone (its BEGIN and read, one row, SQLAlchemy's commit; no app): "
          f"mean {a_mean:.0f} µs, at most {1e6 / a_mean:,.0f} units/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
