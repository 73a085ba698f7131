"""``python -m bench.results``: write ``bench/RESULTS.md`` and ``bench/p7.png`` from the
latest full runs in ``bench/out/`` (``sqlite-full.json``, ``postgresql-full.json``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
OUT = HERE / "out"
NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}


def fmt_ns(ns: float) -> str:
    if ns >= 1e9:
        return f"{ns / 1e9:.2f} s"
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    return f"{ns / 1e3:.1f} µs"


def _extra(r: dict[str, Any]) -> str:
    notes = []
    extra = r.get("extra") or {}
    if "events_per_second" in extra:
        notes.append(f"{extra['events_per_second']:,} events/s sustained")
    if "peak_rss_mb" in extra:
        notes.append(f"peak RSS {extra['peak_rss_mb']} MB, {extra['outbox_rows']:,} outbox rows")
    if "without_valid_consent" in extra:
        notes.append(f"{extra['without_valid_consent']:,} of {extra['clients']:,} without")
    if "write_statements_big" in extra:
        notes.append(f"{extra['write_statements_big']} vs {extra['write_statements_small']} "
                     "write statements")
    if "skipped" in extra:
        notes.append(str(extra["skipped"]))
    return "; ".join(notes)


def section(report: dict[str, Any]) -> str:
    db = NAMES.get(report["database"], report["database"])
    m = report["machine"]
    sizes = report["sizes"]
    version = f"PostgreSQL {m['postgresql']}" if "postgresql" in m else f"SQLite {m['sqlite']}"
    lines = [
        f"## {db}",
        "",
        f"Run finished {report['finished']} in {report['elapsed_s']:.0f} s "
        f"(generation included). {sizes['practices']} practices × {sizes['clients']:,} "
        f"clients, {sizes['events']:,} ledger events in all (P7 practices included).",
        "",
        f"Machine: {m.get('nproc')} cores ({m.get('cpu', '?')}), {m.get('ram_gb', '?')} GB RAM, "
        f"Python {m['python']}, SQLite {m['sqlite']}"
        + (f", PostgreSQL {m['postgresql']}" if "postgresql" in m else "")
        + f"; {m.get('platform', '')}. Database: {version}.",
        "",
        "| id | figure (median) | floor | ratio | target | result | notes |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['id']} | {fmt_ns(r['value_ns'])} | {fmt_ns(r['floor_ns'])} | "
            f"{r['ratio']:.2f}× | {r['target']} | {'pass' if r['passed'] else '**miss**'} | "
            f"{_extra(r)} |"
        )
    if report.get("growth"):
        lines += ["", "P7, growth (medians; floors in brackets):", "",
                  "| clients in the practice | P1 booking check | P3 first page |",
                  "|---|---|---|"]
        for g in report["growth"]:
            lines.append(
                f"| {g['clients']:,} | {fmt_ns(g['p1_ns'])} ({fmt_ns(g['p1_floor_ns'])}) | "
                f"{fmt_ns(g['p3_page_ns'])} ({fmt_ns(g['p3_page_floor_ns'])}) |"
            )
    return "\n".join(lines)


def plot(reports: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(7, 2.8), dpi=90)
    for ax, key, title in ((axes[0], "p1_ns", "P1 booking check"),
                           (axes[1], "p3_page_ns", "P3 first page (50)")):
        for report in reports:
            rows = report.get("growth") or []
            if not rows:
                continue
            xs = [r["clients"] for r in rows]
            ax.plot(xs, [r[key] / 1e3 for r in rows], marker="o",
                    label=NAMES.get(report["database"], report["database"]))
        ax.set_xscale("log")
        ax.set_ylim(bottom=0)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("clients in the practice", fontsize=8)
        ax.set_ylabel("median, µs", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


HEAD = """# Benchmark results: the cost of consent at a million clients

Produced by `python -m bench` (full size) on SQLite and with
`--database-url postgresql://postgres@127.0.0.1:5432/postgres` on PostgreSQL, then
`python -m bench.results`.  Every figure is a median of many repetitions after
warm-up, against its floor measured in the same run on the same database, app and
floor alternating repetition by repetition (see `bench/figures.py` for exactly what
each one does and `../shared/brief/quality.md` for the targets).  For P7 the "floor"
column is the same figure in the smallest practice.  The machine is shared: other work
ran beside these runs, so absolute times are noisy; the ratios are what the targets
judge.
"""


def main() -> int:
    reports = []
    for db in ("sqlite", "postgresql"):
        path = OUT / f"{db}-full.json"
        if path.exists():
            reports.append(json.loads(path.read_text()))
    if not reports:
        print("no full runs in bench/out/", file=sys.stderr)
        return 1
    notes = (HERE / "RESULTS_NOTES.md")
    body = [HEAD] + [section(r) for r in reports]
    if notes.exists():
        body.append(notes.read_text())
    (HERE / "RESULTS.md").write_text("\n\n".join(body).rstrip() + "\n")
    plot(reports, HERE / "p7.png")
    print(f"wrote {HERE / 'RESULTS.md'} and {HERE / 'p7.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
