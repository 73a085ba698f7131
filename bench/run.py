"""``python -m bench``: build a fresh database, generate the data set, measure P1-P7,
print the table, write JSON to ``bench/out/`` and exit non-zero on any miss."""

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

from bench.figures import Bench, Result, p1, p2, p3, p4, p5, p6, p7
from bench.generate import extra_practice, generate, main_practices
from samtycke_plugin.db import make_engine, normalise_url

OUT = Path(__file__).parent / "out"
FIGURES = ("P1", "P2", "P3", "P4", "P5", "P6", "P7")


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="1/100 of the data set (a smoke run)")
    ap.add_argument("--database-url", help="a PostgreSQL server URL (a fresh database is "
                    "created on it for the run and dropped after); default: a SQLite file")
    ap.add_argument("--practices", type=int, default=10)
    ap.add_argument("--clients", type=int, default=100_000, help="clients per practice")
    ap.add_argument("--growth", default="10000,100000,1000000",
                    help="practice sizes for P7 (the middle one should equal --clients)")
    ap.add_argument("--only", default=",".join(FIGURES), help="figures to measure, e.g. P1,P3")
    ap.add_argument("--keep", action="store_true", help="keep the database after the run")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if args.quick:
        args.clients //= 100
        args.growth = ",".join(str(int(g) // 100) for g in args.growth.split(","))
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


def fmt_ns(ns: float) -> str:
    if ns >= 1e9:
        return f"{ns / 1e9:.2f} s"
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    return f"{ns / 1e3:.1f} µs"


def table(results: list[Result]) -> str:
    head = ("id", "figure (median)", "floor", "ratio", "target", "result")
    rows = [head] + [
        (r.id, fmt_ns(r.value_ns), fmt_ns(r.floor_ns), f"{r.ratio:.2f}×", r.target,
         "pass" if r.passed else "MISS")
        for r in results
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def growth_table(rows: list[dict[str, Any]]) -> str:
    out = ["clients     P1 (floor)             P3 page (floor)"]
    for r in rows:
        out.append(f"{r['clients']:<10,}  {fmt_ns(r['p1_ns']):>9} ({fmt_ns(r['p1_floor_ns']):>8})"
                   f"   {fmt_ns(r['p3_page_ns']):>9} ({fmt_ns(r['p3_page_floor_ns']):>8})")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    only = {x.strip().upper() for x in args.only.split(",")}
    started = time.perf_counter()
    url, drop = _fresh_database(args)
    engine = make_engine(url)
    try:
        main_specs = main_practices(args.practices, args.clients)
        sizes = [int(g) for g in args.growth.split(",")]
        growth = []
        specs = list(main_specs)
        for k, size in enumerate(sizes):
            if size == args.clients:
                growth.append(main_specs[0].tenant)
            elif "P7" in only:
                specs.append(extra_practice(f"g{k}", size, 5000 + k))
                growth.append(f"g{k}")
        specs.append(extra_practice("f1k", 700, 4000))  # the P4 floor: about 1,000 events
        print(f"generating on {engine.dialect.name}: {len(specs)} practices", flush=True)
        gen = generate(engine, specs)
        # The measurements start on new connections, not on those that did the bulk load.
        engine.dispose()
        b = Bench(engine=engine, url=url, gen=gen, main=main_specs[0].tenant, small="f1k",
                  growth=growth, quick=args.quick)
        results: list[Result] = []
        growth_rows: list[dict[str, Any]] = []
        # Order matters: P2, P5 and P4 change data, so the read-only figures go first.
        steps: list[tuple[str, Callable[[], Any]]] = [
            ("P1", lambda: results.append(p1(b))),
            ("P3", lambda: results.append(p3(b))),
            ("P6", lambda: results.append(p6(b))),
            ("P7", lambda: _p7(b, results, growth_rows)),
            ("P2", lambda: results.append(p2(b))),
            ("P5", lambda: results.append(p5(b, main_specs[-1].tenant))),
            ("P4", lambda: results.append(p4(b))),
        ]
        for name, step in steps:
            if name in only:
                t0 = time.perf_counter()
                step()
                print(f"  measured {name} ({time.perf_counter() - t0:.1f} s)", flush=True)
        b.close()
        info = machine(engine)
    finally:
        engine.dispose()
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
        "sizes": {"practices": args.practices, "clients": args.clients, "growth": sizes,
                  "events": sum(g.events for g in gen.values())},
        "results": [asdict(r) | {"ratio": r.ratio} for r in results],
        "growth": growth_rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    kind = "quick" if args.quick else "full"
    if only != set(FIGURES):
        kind += "-partial"  # never mistaken for a complete run by bench.results
    path = args.out / f"{engine.dialect.name}-{kind}.json"
    path.write_text(json.dumps(report, indent=2, default=str))
    print(f"wrote {path}")
    return 0 if all(r.passed for r in results) else 1


def _p7(b: Bench, results: list[Result], rows: list[dict[str, Any]]) -> None:
    found, table_rows = p7(b)
    results.extend(found)
    rows.extend(table_rows)


if __name__ == "__main__":
    sys.exit(main())
