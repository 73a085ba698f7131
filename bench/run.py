"""``python -m bench``: build a fresh database, generate the data set, measure C1-C8
through the example platform, print the table, write JSON to ``bench/out/`` and exit
non-zero on any miss."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from attrs import asdict
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from bench.figures import Bench, Result, c1, c2, c3, c4, c5, c6, c7, c8
from bench.generate import PracticeSpec, generate, main_practices
from bench.site import SlotClock, close_app, make_app
from examples.host_app.testing import platform_of
from samtycke_plugin.db import normalise_url

OUT = Path(__file__).parent / "out"
FIGURES = ("C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8")


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--quick", action="store_true",
                    help="1/100 of the data set (a short run of the whole benchmark)")
    ap.add_argument("--database-url", help="a PostgreSQL server URL (a fresh database is "
                    "created on it for the run and dropped after); default: a SQLite file")
    ap.add_argument("--practices", type=int, default=10)
    ap.add_argument("--clients", type=int, default=100_000, help="clients per practice")
    ap.add_argument("--only", default=",".join(FIGURES), help="figures to measure, e.g. C1,C3")
    ap.add_argument("--smoke", action="store_true",
                    help="a few repetitions only: checks that every figure runs (tests)")
    ap.add_argument("--keep", action="store_true", help="keep the database after the run")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if args.quick:
        args.clients //= 100
    return args


def machine(engine: Engine) -> dict[str, Any]:
    info: dict[str, Any] = {
        "nproc": os.cpu_count(), "python": platform.python_version(),
        "platform": platform.platform(), "sqlite": sqlite3.sqlite_version,
    }
    try:
        info["cpu"] = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
        info["ram_gb"] = round(mem_kb / 1024 / 1024, 1)
    except (OSError, StopIteration, ValueError):
        pass
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            info["postgresql"] = conn.scalar(text("SHOW server_version"))
    return info


def _fresh_database(args: argparse.Namespace) -> tuple[str, Callable[[], None]]:
    """A URL of an empty database for this run, and how to remove it afterwards."""
    if not args.database_url:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / "bench.sqlite"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)

        def drop() -> None:
            if not args.keep:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)

        return f"sqlite:///{path}", drop
    admin_url = make_url(normalise_url(args.database_url))
    name = f"samtycke_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop_pg() -> None:
        if not args.keep:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return admin_url.set(database=name).render_as_string(hide_password=False), drop_pg


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "/s":
        return f"{value:,.1f}/s"
    ns = value * 1e9 if unit == "s" else value
    if ns >= 1e9:
        return f"{ns / 1e9:.2f} s"
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    return f"{ns / 1e3:.1f} µs"


def ratio_text(r: Result) -> str:
    return "—" if r.ratio is None else f"{r.ratio:.2f}×"


def verdict(r: Result) -> str:
    if "informational" in r.extra:
        return "info"
    return "pass" if r.passed else "MISS"


def table(results: list[Result]) -> str:
    head = ("id", "figure", "baseline", "ratio", "target", "result")
    rows = [head] + [(r.id, fmt(r.value, r.unit), fmt(r.baseline, r.unit), ratio_text(r),
                      r.target, verdict(r)) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def growth_table(rows: list[dict[str, Any]]) -> str:
    out = ["clients       without consent   app page    hand-written SQL page"]
    for r in rows:
        out.append(f"{r['clients']:<12,}  {r['without_valid_consent']:<16,}  "
                   f"{fmt(r['app_ns'], 'ns'):>9}   {fmt(r['sql_ns'], 'ns'):>9}")
    return "\n".join(out)


def specs(args: argparse.Namespace) -> tuple[list[PracticeSpec], list[str]]:
    """The data set: the main practices, one without the app (C1-C3, C8), the growth
    practices of C4 (a tenth and ten times the main size; the big one is C7's), one of
    about 1,000 events (C5) and C4's practice of three purposes."""
    n = args.clients
    out = main_practices(args.practices, n)
    out.append(PracticeSpec(name="plain", clients=n, app=False, seed=2000))
    out.append(PracticeSpec(name="g-small", clients=max(n // 10, 10), seed=5000))
    out.append(PracticeSpec(name="g-big", clients=n * 10, seed=5002))
    out.append(PracticeSpec(name="small", clients=700, seed=4000))
    # C4's practice asks for three purposes: the list's badges then show one per purpose.
    out.append(PracticeSpec(name="purposes", clients=n, purposes=("reminders", "newsletter"),
                            seed=3000))
    return out, ["g-small", "p00", "g-big"]


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    only = {x.strip().upper() for x in args.only.split(",")}
    if args.practices < 4:
        raise SystemExit("--practices must be at least 4 (C1-C8 use four of them)")
    started = time.perf_counter()
    url, drop = _fresh_database(args)
    clock = SlotClock()
    app = make_app(url, clock)  # migrates the empty database: the platform's and the app's tables
    engine = platform_of(app).engine
    try:
        data, growth = specs(args)
        print(f"generating on {engine.dialect.name}: {len(data)} practices", flush=True)
        gen = generate(engine, data)
        engine.dispose()  # the measurements start on new connections
        b = Bench(app=app, url=url, clock=clock, gen=gen, quick=args.quick or args.smoke,
                  smoke=args.smoke, database=engine.dialect.name)
        results: list[Result] = []
        growth_rows: list[dict[str, Any]] = []

        def c4_step() -> None:
            found, rows = c4(b, "purposes", growth)
            results.extend(found)
            growth_rows.extend(rows)

        # Order matters: C6, C5, C1 and C8 write, so the read-only figures go first.
        steps: list[tuple[str, Callable[[], Any]]] = [
            ("C2", lambda: results.append(c2(b, "p00", "plain"))),
            ("C3", lambda: results.append(c3(b, "p00", "plain"))),
            ("C4", c4_step),
            ("C7", lambda: results.extend(c7(b, "g-big"))),
            ("C6", lambda: results.append(c6(b, "p01"))),
            ("C5", lambda: results.append(c5(b, "p02", "small"))),
            ("C1", lambda: results.append(c1(b, "p00", "plain"))),
            ("C8", lambda: results.append(c8(b, "p03", "plain"))),
        ]
        for name, step in steps:
            if name in only:
                t0 = time.perf_counter()
                step()
                print(f"  measured {name} ({time.perf_counter() - t0:.1f} s)", flush=True)
        info = machine(engine)
    finally:
        close_app(app)
        drop()
    results.sort(key=lambda r: r.id)
    print()
    print(table(results))
    if growth_rows:
        print()
        print(growth_table(growth_rows))
    elapsed = time.perf_counter() - started
    print(f"\n{engine.dialect.name}, {'quick' if args.quick else 'full'} run, {elapsed:.0f} s")
    report = {
        "database": engine.dialect.name, "quick": args.quick, "elapsed_s": round(elapsed, 1),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": info,
        "sizes": {"practices": args.practices, "clients": args.clients,
                  "growth": [gen[g].clients for g in growth],
                  "events": sum(g.events for g in gen.values()),
                  "host_clients": sum(g.clients for g in gen.values())},
        "results": [asdict(r) | {"ratio": r.ratio} for r in results],
        "growth": growth_rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    kind = "smoke" if args.smoke else "quick" if args.quick else "full"
    if only != set(FIGURES):
        kind += "-partial"  # never mistaken for a complete run by bench.results
    path = args.out / f"{engine.dialect.name}-{kind}.json"
    path.write_text(json.dumps(report, indent=2, default=str))
    print(f"wrote {path}")
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
