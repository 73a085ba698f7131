"""``python -m bench.results``: write ``bench/RESULTS.md`` and ``bench/c4-growth.png`` from
the latest full runs in ``bench/out/`` (``sqlite-full.json``, ``postgresql-full.json``);
``--quick`` renders the quick runs instead (clearly marked as such)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
OUT = HERE / "out"
NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
PLOT = "c4-growth.png"


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


def _notes(r: dict[str, Any]) -> str:
    extra = r.get("extra") or {}
    notes = []
    if "without_valid_consent" in extra and "queued" not in extra:
        notes.append(f"{extra['without_valid_consent']:,} of {extra['clients']:,} without")
    if "hand_written_sql_growth" in extra:
        notes.append(f"hand-written SQL page grows {extra['hand_written_sql_growth']:.2f}×")
    if "queued" in extra:
        if "preview_s" in extra:
            notes.append(f"the preview page took {extra['preview_s']:.2f} s")
        notes.append(f"{extra['queued']:,} requests queued; the request took "
                     f"{extra['request_s']:.2f} s"
                     + (" and waited for the batch" if extra.get("request_waited_for_batch")
                        else ", the batch ran after it"))
    if "peak_rss_mb" in extra:
        notes.append(f"peak RSS {extra['peak_rss_mb']} MB ({extra['rss_before_mb']} MB "
                     "before the work)")
    if "booked" in extra:
        notes.append(f"{extra['booked']:,} against {extra['baseline_booked']:,} bookings in "
                     f"{extra['seconds']:.0f} s each, {extra['clients']} clients")
        failed = {**extra.get("failed", {})}
        if failed or extra.get("baseline_failed"):
            notes.append(f"failed submits (HTTP status: count) {failed} against "
                         f"{extra.get('baseline_failed', {})}")
    if "informational" in extra:
        notes.append(str(extra["informational"]))
    if "problem" in extra:
        notes.append(f"problem: {extra['problem']}")
    return "; ".join(notes)


def _verdict(r: dict[str, Any]) -> str:
    if "informational" in (r.get("extra") or {}):
        return "info"
    return "pass" if r["passed"] else "**miss**"


def section(report: dict[str, Any]) -> str:
    db = NAMES.get(report["database"], report["database"])
    m = report["machine"]
    sizes = report["sizes"]
    kind = "quick run (1/100 of the data set)" if report["quick"] else "full run"
    lines = [
        f"## {db}",
        "",
        f"{kind.capitalize()} finished {report['finished']} in {report['elapsed_s']:.0f} s "
        f"(generation included): {sizes['practices']} practices × {sizes['clients']:,} "
        f"clients, {sizes['host_clients']:,} host clients and {sizes['events']:,} ledger "
        f"events in all (the growth practices, the practice without the app and C5's small "
        f"practice included).",
        "",
        f"Machine: {m.get('nproc')} cores ({m.get('cpu', '?')}), {m.get('ram_gb', '?')} GB RAM, "
        f"Python {m['python']}, SQLite {m['sqlite']}"
        + (f", PostgreSQL {m['postgresql']}" if "postgresql" in m else "")
        + f"; {m.get('platform', '')}.",
        "",
        "| id | what | figure | baseline | ratio | target | result | notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        ratio = "—" if r["ratio"] is None else f"{r['ratio']:.2f}×"
        lines.append(
            f"| {r['id']} | {r['what']} | {fmt(r['value'], r['unit'])} | "
            f"{fmt(r['baseline'], r['unit'])} | {ratio} | {r['target']} | {_verdict(r)} | "
            f"{_notes(r)} |"
        )
    if report.get("growth"):
        lines += ["", "C4's growth (medians of the first page with its total):", "",
                  "| clients in the practice | without valid consent | app's page | "
                  "hand-written SQL page |", "|---|---|---|---|"]
        for g in report["growth"]:
            lines.append(f"| {g['clients']:,} | {g['without_valid_consent']:,} | "
                         f"{fmt(g['app_ns'], 'ns')} | {fmt(g['sql_ns'], 'ns')} |")
    return "\n".join(lines)


def plot(reports: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3), dpi=80)
    for report in reports:
        rows = report.get("growth") or []
        name = NAMES.get(report["database"], report["database"])
        xs = [r["clients"] for r in rows]
        ax.plot(xs, [r["app_ns"] / 1e6 for r in rows], marker="o", label=f"{name}, app")
        ax.plot(xs, [r["sql_ns"] / 1e6 for r in rows], marker="x", linestyle="--",
                label=f"{name}, hand-written SQL")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_title("C4: client list without valid consent (first page and total)", fontsize=9)
    ax.set_xlabel("clients in the practice", fontsize=8)
    ax.set_ylabel("median, ms", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


HEAD = """# Benchmark results: what installing Samtycke costs the example platform

Produced by `python -m bench` on SQLite and with `--database-url
postgresql://postgres@127.0.0.1:5432/postgres` on PostgreSQL, then `python -m
bench.results`.  Each figure is the example platform's own work (its request handlers
through Flask's test client) at a practice with the app, against the same work without
the app in the same run; medians of many repetitions, the two sides alternating
repetition by repetition.  `bench/README.md` says what each figure does; the machine is
shared, so absolute times are noisy and the ratios are what the targets judge.
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.results", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="render the quick runs")
    args = ap.parse_args(argv)
    kind = "quick" if args.quick else "full"
    reports = [json.loads(path.read_text()) for db in ("sqlite", "postgresql")
               if (path := OUT / f"{db}-{kind}.json").exists()]
    if not reports:
        print(f"no {kind} runs in {OUT}")
        return 1
    body = [HEAD]
    if args.quick:
        body.append("**These are quick runs (1/100 of the data set), not the full runs the "
                    "targets are about.**")
    body += [section(r) for r in reports]
    body.append(f"![C4: page time against practice size]({PLOT})")
    (HERE / "RESULTS.md").write_text("\n\n".join(body).rstrip() + "\n")
    plot(reports, HERE / PLOT)
    print(f"wrote {HERE / 'RESULTS.md'} and {HERE / PLOT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
