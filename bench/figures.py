"""P1-P7: each figure measured against its floor in the same run."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import pluggy
from attrs import define, field, frozen
from sqlalchemy import Engine, event, func, literal, select

from bench.floor import (
    PANEL_TEMPLATE,
    STATUS_SQL,
    Raw,
    floor_event,
    floor_event_insert,
    floor_metadata,
)
from bench.generate import Generated
from bench.host import NOW, BenchHost, host_client
from bench.timing import Sample, compare
from hookspecs import PROJECT, hookimpl
from hookspecs.facade import AppHooks
from hookspecs.spec import BookingSpecs
from hookspecs.types import (
    BookingRef,
    BookingSubmission,
    ClientRef,
    StaffContext,
    StaffRef,
    TenantRef,
)
from samtycke_plugin import service
from samtycke_plugin.models import ConsentEvent, Practice

#: What the host reads before it calls the app (its own request data).
_HOST_FIRST_READ = select(literal(1))

STAFF = StaffContext(ref=StaffRef("s1"), name="Dr. Berg", can_record_consent=True)


@frozen(kw_only=True)
class Result:
    id: str
    what: str
    value_ns: float
    floor_ns: float
    limit: float
    target: str
    passed: bool
    extra: dict[str, Any] = field(factory=dict)

    @property
    def ratio(self) -> float:
        return self.value_ns / self.floor_ns if self.floor_ns else float("inf")


@define
class Bench:
    engine: Engine
    url: str
    gen: dict[str, Generated]
    main: str
    small: str
    growth: list[str]
    quick: bool
    host: BenchHost = field(init=False)
    hooks: AppHooks = field(init=False)
    raw: Raw = field(init=False)
    rng: random.Random = field(factory=lambda: random.Random(7))

    def __attrs_post_init__(self) -> None:
        self.host = BenchHost(self.engine)
        for tenant in self.gen:
            self.host.active[tenant] = frozenset({service.APP_KEY})
        self.hooks = self.host.hooks()
        self.raw = Raw(self.engine)

    def reps(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    def fresh_unit_of_work(self, _i: int = 0) -> None:
        """End the host's previous request and begin the next one (untimed): the host's
        transaction is open when it calls the app, as it has read its own data first
        (on PostgreSQL the driver sends BEGIN with the first statement)."""
        session = self.host.session()
        session.rollback()
        session.execute(_HOST_FIRST_READ)

    def close(self) -> None:
        self.host.close()
        self.raw.close()


class _NoOp:
    @hookimpl
    def booking_submit_check(self, host: Any, submission: BookingSubmission) -> list[Any]:
        return []


def _noop_pm() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(BookingSpecs)
    pm.register(_NoOp(), name="noop")
    return pm


def _submission(b: Bench, tenant: str, client: str, *, tick: bool) -> BookingSubmission:
    fields = {"service": "massage"}
    if tick:
        fields |= {service.FIELD_CONSENT: "yes",
                   service.FIELD_TEXT: str(b.gen[tenant].current_text_ids["sv"])}
    return BookingSubmission(
        tenant=TenantRef(tenant), client=ClientRef(client), is_new_client=False,
        channel="online", fields=fields, locale="sv", ip_address="198.51.100.23",
        user_agent="Mozilla/5.0 (bench)",
    )


# -- P1 -------------------------------------------------------------------------------------------


def booking_check_samples(b: Bench, tenant: str) -> tuple[Sample, Sample]:
    """The booking-submit check for random clients, as the booking page submits it:
    clients with valid consent post no consent fields, the others tick the box."""
    gen = b.gen[tenant]
    valid = set(gen.valid)
    everyone = gen.valid + gen.not_valid
    clients = [b.rng.choice(everyone) for _ in range(4096)]
    subs = [_submission(b, tenant, c, tick=c not in valid) for c in clients]
    for sub in subs[:200]:  # correctness before speed: these bookings pass
        assert b.hooks.submit_check(sub) == [], sub
    b.host.session().rollback()
    pm0 = _noop_pm()
    sql = b.raw.sql(STATUS_SQL)
    cur = b.raw.cur
    host = b.host
    submit_check = b.hooks.submit_check

    def app(i: int) -> None:
        submit_check(subs[i & 4095])

    def floor(i: int) -> None:
        sub = subs[i & 4095]
        pm0.hook.booking_submit_check(host=host, submission=sub)
        cur.execute(sql, (tenant, sub.client))
        cur.fetchone()

    result = compare(app, floor, reps=b.reps(4000, 1500), warmup=300,
                     setup_app=b.fresh_unit_of_work)
    b.host.session().rollback()
    return result


def p1(b: Bench) -> Result:
    app, floor = booking_check_samples(b, b.main)
    return Result(
        id="P1", what="booking-submit check, one random client (AppHooks.submit_check)",
        value_ns=app.median_ns, floor_ns=floor.median_ns, limit=3.0, target="≤ 3×",
        passed=app.median_ns <= 3 * floor.median_ns, extra={"p90_ns": app.p90_ns, "n": app.n},
    )


# -- P2 -------------------------------------------------------------------------------------------


def p2(b: Bench) -> Result:
    """Recording consent at an online booking: event, chain link, projection, committed."""
    tenant = b.main
    pool = list(b.gen[tenant].not_valid)
    b.rng.shuffle(pool)
    reps = min(b.reps(1000, 300), len(pool) - 100)
    subs = [_submission(b, tenant, c, tick=True) for c in pool]
    # The sustained-rate run goes on with the other practices' clients without consent.
    for other in sorted(b.gen):
        if other.startswith("p") and other != tenant:
            subs += [_submission(b, other, c, tick=True) for c in b.gen[other].not_valid]
    session = b.host.session()
    session.rollback()
    submitted = b.hooks.submitted
    floor_metadata.create_all(b.engine, tables=[floor_event])
    insert_sql, values = floor_event_insert(tenant, NOW.isoformat())
    insert_sql = b.raw.sql(insert_sql)
    raw = b.raw
    used = iter(range(len(subs)))

    def app(_i: int) -> None:
        k = next(used)
        sub = subs[k]
        submitted(sub, BookingRef(f"bk{k}"), sub.client)  # type: ignore[arg-type]
        session.commit()

    def floor_begin(_i: int) -> None:
        raw.begin()

    def floor(i: int) -> None:
        raw.cur.execute(insert_sql, [i, *values])
        raw.commit()

    # Timed: the hook and the commit.  The host's transaction is open when it calls the
    # hook (it has just written its booking), as in P1, P3 and P6; the floor's BEGIN is
    # likewise untimed.
    app_s, floor_s = compare(app, floor, reps=reps, warmup=20,
                             setup_app=b.fresh_unit_of_work, setup_floor=floor_begin)
    # Single writer, sustained: whole bookings back to back (the host's BEGIN and first
    # read included), for one second or more.
    n, t0 = 0, time.perf_counter()
    left = len(subs) - reps - 100
    while time.perf_counter() - t0 < (1.0 if b.quick else 3.0) and n < left:
        b.fresh_unit_of_work()
        app(0)
        n += 1
    per_second = n / (time.perf_counter() - t0)
    recorded = session.scalar(
        select(func.count()).select_from(ConsentEvent).where(
            ConsentEvent.tenant_ref == tenant, ConsentEvent.booking_ref.like("bk%")
        )
    )
    session.rollback()
    ok_rate = per_second >= 2000 if b.engine.dialect.name == "sqlite" else True
    return Result(
        id="P2", what="record consent at booking (event + chain + projection, committed)",
        value_ns=app_s.median_ns, floor_ns=floor_s.median_ns, limit=3.0,
        target="≤ 3×" + ("; ≥ 2,000 events/s" if b.engine.dialect.name == "sqlite" else ""),
        passed=app_s.median_ns <= 3 * floor_s.median_ns and ok_rate,
        extra={"events_per_second": round(per_second), "recorded": recorded,
               "p90_ns": app_s.p90_ns, "n": app_s.n},
    )


# -- P3 -------------------------------------------------------------------------------------------

PAGE_SQL = (
    "SELECT c.id, c.name, c.email FROM host_client c WHERE c.tenant = ? AND NOT EXISTS ("
    "SELECT 1 FROM samtycke_consent_state s WHERE s.tenant_ref = ? AND s.client_ref = c.id "
    "AND s.state IN ('given', 'renewed') AND s.text_major = ? "
    "AND (s.expires_at IS NULL OR s.expires_at > ?)) ORDER BY c.name, c.id LIMIT 50"
)
COUNT_SQL = (
    "SELECT count(*) FROM host_client c WHERE c.tenant = ? AND NOT EXISTS ("
    "SELECT 1 FROM samtycke_consent_state s WHERE s.tenant_ref = ? AND s.client_ref = c.id "
    "AND s.state IN ('given', 'renewed') AND s.text_major = ? "
    "AND (s.expires_at IS NULL OR s.expires_at > ?))"
)


def _current_major(b: Bench, tenant: str) -> int:
    return int(b.host.session().scalar(
        select(Practice.current_major).where(Practice.tenant_ref == tenant)
    ) or 0)


def list_samples(b: Bench, tenant: str, *, count: bool, reps: int) -> tuple[Sample, Sample, int]:
    """The host's client list filtered to "without valid consent": page 1 (and the total)."""
    session = b.host.session()
    major = _current_major(b, tenant)
    sqlite = b.raw.dialect == "sqlite"
    now_param: Any = NOW.replace(tzinfo=None).isoformat(sep=" ") if sqlite else NOW
    params = (tenant, tenant, major, now_param)
    page_sql, count_sql = b.raw.sql(PAGE_SQL), b.raw.sql(COUNT_SQL)
    cur = b.raw.cur
    hooks = b.hooks
    c = host_client.c

    def host_list() -> tuple[Sequence[Any], int | None]:
        clause = hooks.list_filter_clause(
            TenantRef(tenant), service.FILTER_NOT_VALID, c.id
        )
        assert clause is not None
        where = (c.tenant == tenant, clause.clause)
        rows = session.execute(
            select(c.id, c.name, c.email).where(*where).order_by(c.name, c.id).limit(50)
        ).all()
        total = session.execute(
            select(func.count()).select_from(host_client).where(*where)
        ).scalar_one() if count else None
        return rows, total

    def floor_list() -> tuple[Sequence[Any], int | None]:
        cur.execute(page_sql, params)
        rows = cur.fetchall()
        total = None
        if count:
            cur.execute(count_sql, params)
            total = cur.fetchone()[0]
        return rows, total

    app_rows, app_total = host_list()
    floor_rows, floor_total = floor_list()
    assert [r[0] for r in app_rows] == [r[0] for r in floor_rows], "filter differs from the SQL"
    assert app_total == floor_total, (app_total, floor_total)
    app_s, floor_s = compare(lambda _i: host_list(), lambda _i: floor_list(), reps=reps,
                             warmup=max(3, reps // 10), setup_app=b.fresh_unit_of_work)
    session.rollback()
    return app_s, floor_s, int(floor_total or 0)


def p3(b: Bench) -> Result:
    app, floor, total = list_samples(b, b.main, count=True, reps=b.reps(60, 30))
    return Result(
        id="P3", what="client list, page 1 (50) + total count, \"without valid consent\"",
        value_ns=app.median_ns, floor_ns=floor.median_ns, limit=1.5, target="≤ 1.5×",
        passed=app.median_ns <= 1.5 * floor.median_ns,
        extra={"without_valid_consent": total, "clients": b.gen[b.main].clients},
    )


# -- P4 -------------------------------------------------------------------------------------------


def _statements(engine: Engine, fn: Callable[[], Any]) -> list[str]:
    seen: list[str] = []

    def before(_c: Any, _cur: Any, statement: str, *_a: Any) -> None:
        seen.append(statement.split(None, 1)[0].upper())

    event.listen(engine, "before_cursor_execute", before)
    try:
        fn()
    finally:
        event.remove(engine, "before_cursor_execute", before)
    return seen


def p4(b: Bench) -> Result:
    """A content change of the text (new major) on a big practice vs on a 1,000-event one."""
    session = b.host.session()
    session.rollback()
    majors = {t: _current_major(b, t) for t in (b.main, b.small)}
    session.rollback()

    def publish(tenant: str, i: int) -> None:
        service.publish_text(
            b.host, tenant,
            bodies={"sv": f"Vi behandlar dina personuppgifter enligt version {i} av texten.",
                    "en": f"We process your personal data according to version {i} of the text."},
            kind="content", reason="bench", actor="staff:s1", expected_major=majors[tenant],
        )
        session.commit()
        majors[tenant] += 1

    def first_publish(tenant: str) -> Callable[[], None]:
        return lambda: publish(tenant, 0)

    counts = {t: _statements(b.engine, first_publish(t)) for t in (b.main, b.small)}
    writes = {
        t: sum(1 for s in v if s in ("INSERT", "UPDATE", "DELETE")) for t, v in counts.items()
    }
    app_s, floor_s = compare(lambda i: publish(b.main, i), lambda i: publish(b.small, i),
                             reps=b.reps(60, 20), warmup=5)
    return Result(
        id="P4", what="content change of the text (new major), 100k-client practice",
        value_ns=app_s.median_ns, floor_ns=floor_s.median_ns, limit=2.0,
        target="≤ 2× (constant)",
        passed=app_s.median_ns <= 2 * floor_s.median_ns and writes[b.main] == writes[b.small],
        extra={"write_statements_big": writes[b.main], "write_statements_small": writes[b.small],
               "floor_practice_events": b.gen[b.small].events},
    )


# -- P5 -------------------------------------------------------------------------------------------


def p5(b: Bench, tenant: str) -> Result:
    """Batch request to every client without valid consent, in a child process (peak RSS)."""
    try:
        import samtycke_plugin.requests  # noqa: F401
    except ImportError:
        return Result(id="P5", what="batch request (samtycke_plugin.requests not available)",
                      value_ns=0, floor_ns=0, limit=3.0, target="≤ 3×; ≤ 200 MB",
                      passed=False, extra={"skipped": "samtycke_plugin.requests is missing"})
    child = subprocess.run(
        [sys.executable, "-m", "bench.p5_child", b.url, tenant],
        capture_output=True, text=True, check=False, env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    if child.returncode != 0:
        raise RuntimeError(f"P5 child failed:\n{child.stderr[-4000:]}")
    out = json.loads(child.stdout.strip().splitlines()[-1])
    from bench.p5_child import floor_insert

    floor_ns = floor_insert(b.engine, out["outbox_rows"])
    rss_mb = out["max_rss_kb"] / 1024
    return Result(
        id="P5", what="batch request to all without valid consent (outbox rows written)",
        value_ns=out["elapsed_ns"], floor_ns=floor_ns, limit=3.0, target="≤ 3×; ≤ 200 MB",
        passed=out["elapsed_ns"] <= 3 * floor_ns and rss_mb <= 200,
        extra={"outbox_rows": out["outbox_rows"], "peak_rss_mb": round(rss_mb, 1)},
    )


# -- P6 -------------------------------------------------------------------------------------------


def p6(b: Bench) -> Result:
    tenant = b.main
    gen = b.gen[tenant]
    everyone = gen.valid + gen.not_valid
    clients = [b.rng.choice(everyone) for _ in range(4096)]
    major = _current_major(b, tenant)
    b.host.session().rollback()
    sql = b.raw.sql(STATUS_SQL)
    cur = b.raw.cur
    now_s = NOW.replace(tzinfo=None).isoformat(sep=" ")
    profile_panels = b.hooks.profile_panels
    labels = {
        True: ("ok", "✓", "Giltigt samtycke", "Klienten har samtyckt till den aktuella texten."),
        False: ("missing", "!", "Inget giltigt samtycke", "Klienten behöver samtycka."),
    }

    def app(i: int) -> None:
        [_panel] = profile_panels(TenantRef(tenant), ClientRef(clients[i & 4095]), STAFF, "sv")

    def floor(i: int) -> None:
        client = clients[i & 4095]
        cur.execute(sql, (tenant, client))
        row = cur.fetchone()
        exp = row[2] if row else None
        valid = (row is not None and row[0] in ("given", "renewed") and row[1] == major
                 and (exp is None or str(exp) > now_s))
        tone, icon, label, reason = labels[valid]
        PANEL_TEMPLATE.render(
            tone=tone, status="valid" if valid else "unknown", icon=icon, label=label,
            reason=reason, since=row[3] if row else None, prefix="/apps/samtycke", client=client,
            withdrawable=valid,
        )

    app_s, floor_s = compare(app, floor, reps=b.reps(3000, 1000), warmup=200,
                             setup_app=b.fresh_unit_of_work)
    b.host.session().rollback()
    return Result(
        id="P6", what="client profile render (AppHooks.profile_panels)",
        value_ns=app_s.median_ns, floor_ns=floor_s.median_ns, limit=2.0, target="≤ 2×",
        passed=app_s.median_ns <= 2 * floor_s.median_ns, extra={"p90_ns": app_s.p90_ns},
    )


# -- P7 -------------------------------------------------------------------------------------------


def p7(b: Bench) -> tuple[list[Result], list[dict[str, Any]]]:
    """Growth: P1 and the P3 page at three practice sizes."""
    rows: list[dict[str, Any]] = []
    for tenant in b.growth:
        check_app, check_floor = booking_check_samples(b, tenant)
        page_app, page_floor, _total = list_samples(b, tenant, count=False, reps=b.reps(400, 200))
        rows.append({"tenant": tenant, "clients": b.gen[tenant].clients,
                     "p1_ns": check_app.median_ns, "p1_floor_ns": check_floor.median_ns,
                     "p3_page_ns": page_app.median_ns, "p3_page_floor_ns": page_floor.median_ns})
    small, large = rows[0], rows[-1]
    results = []
    for key, name in (("p1_ns", "P1"), ("p3_page_ns", "P3 page")):
        big, base = float(large[key]), float(small[key])
        results.append(Result(
            id=f"P7 {name}",
            what=f"{name} at {large['clients']:,} vs {small['clients']:,} clients",
            value_ns=big, floor_ns=base, limit=1.5, target="≤ 1.5× (flat)",
            passed=big <= 1.5 * base,
        ))
    return results, rows
