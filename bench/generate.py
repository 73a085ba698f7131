"""The data generator: practices of the example platform with their clients (the
host's ``host_client`` table), consent texts and a realistic consent ledger.

Set-based and fast: every table is filled with bulk ``executemany`` inserts in large
batches, never row by row through the app.  The hash chain is computed in Python with
:func:`samtycke_plugin.chain.row_hash` exactly as :func:`samtycke_plugin.ledger.append`
does, and the projection is folded with :func:`samtycke_plugin.rules.fold`, so the
result is what the app would have written event by event (``tests/test_bench_smoke.py``
holds the chain and the projection to that; C7 verifies the biggest chain of each run).
The schema comes from the platform's own migrate step
(:func:`examples.host_app.database.migrate`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from attrs import field, frozen
from sqlalchemy import Engine, Table, func, insert, select
from sqlalchemy.orm import Session
from werkzeug.security import generate_password_hash

from examples.host_app.models import AppActivation, Client, Service, Staff
from examples.host_app.models import Practice as HostPractice
from samtycke_plugin import purpose_catalogue, purposes
from samtycke_plugin.chain import evidence_hash, row_hash
from samtycke_plugin.models import (
    GENESIS_HASH,
    ConsentEvent,
    ConsentStateRow,
    Evidence,
    Practice,
    Purpose,
    TextVersion,
)
from samtycke_plugin.rules import EventFacts, Snapshot, State, fold, paused
from samtycke_plugin.settings import PracticeSettings, unstructure_settings
from samtycke_plugin.text import LANGUAGES, normalise_body, render_html, sha256

#: The benchmark's "now": every generated timestamp lies before it.
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
PASSWORD = "bench-pass"
BATCH = 20_000

FIRST = ("Anna", "Erik", "Maria", "Lars", "Karin", "Johan", "Eva", "Per", "Lena", "Nils",
         "Sara", "Olof", "Ingrid", "Ahmed", "Fatima", "Mikael", "Sofia", "Jonas", "Elin", "Ali")
LAST = ("Andersson", "Johansson", "Karlsson", "Nilsson", "Eriksson", "Larsson", "Olsson",
        "Persson", "Svensson", "Gustafsson", "Pettersson", "Jonsson", "Lindberg", "Berg")
AGENTS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/124.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 Safari/605.1",
)


@frozen(kw_only=True)
class PracticeSpec:
    name: str  # the benchmark's own label (slug ``bench-<name>``)
    clients: int
    #: False: a practice where Samtycke was never activated (the baseline of C1-C3, C8).
    app: bool = True
    current_major: int = 2
    validity_days: int | None = 730
    required: bool = False
    #: Purposes from the catalogue besides the default one, each with one text version,
    #: the catalogue's validity and a ledger story of its own per client.
    purposes: tuple[str, ...] = ()
    seed: int = 0


@frozen(kw_only=True)
class Generated:
    name: str
    practice_id: int
    slug: str
    staff_email: str
    clients: int
    first_client: int  # client ids are first_client .. first_client + clients - 1
    events: int
    #: Client ids per status group, for choosing benchmark subjects.
    valid: list[int]
    not_valid: list[int]
    #: Those of ``not_valid`` a batch request asks: not the ones who withdrew or declined
    #: within the practice's pause.
    to_ask: list[int]
    #: How many clients are without valid consent to each of the spec's other purposes.
    not_valid_by_purpose: dict[str, int] = field(factory=dict)

    @property
    def tenant(self) -> str:
        return str(self.practice_id)


def main_practices(count: int, clients: int) -> list[PracticeSpec]:
    """The main data set: ``count`` practices of ``clients`` clients each, mixed settings."""
    specs = []
    for i in range(count):
        rng = random.Random(1000 + i)
        specs.append(PracticeSpec(
            name=f"p{i:02d}", clients=clients,
            current_major=2 if i == 0 else rng.choice((1, 2, 2, 3)),
            validity_days=730 if i % 3 == 0 else None, required=i % 4 == 1, seed=1000 + i,
        ))
    return specs


@frozen(kw_only=True)
class _Spec:
    """What the ledger story needs of a practice (its samtycke tenant)."""

    tenant: str
    current_major: int
    validity_days: int | None
    purpose: str = purposes.DEFAULT_PURPOSE


def _ts(rng: random.Random, start: datetime, end: datetime) -> datetime:
    span = int((end - start).total_seconds() * 1_000_000)
    return start + timedelta(microseconds=rng.randrange(max(span, 1)))



def _ts(rng: random.Random, start: datetime, end: datetime) -> datetime:
    span = int((end - start).total_seconds() * 1_000_000)
    return start + timedelta(microseconds=rng.randrange(max(span, 1)))


class _Texts:
    """A practice's text versions: majors 1..current, sv and en, a correction on the current."""

    def __init__(self, session: Session, spec: _Spec) -> None:
        self.by_major: dict[tuple[int, str], tuple[int, str]] = {}
        self.major_start: dict[int, datetime] = {}
        years = {1: NOW - timedelta(days=1100), 2: NOW - timedelta(days=400),
                 3: NOW - timedelta(days=90)}
        name = f"Praktik {spec.tenant}"
        catalogued = purpose_catalogue.by_key(spec.purpose)
        assert catalogued is not None
        rows = []
        for major in range(1, spec.current_major + 1):
            start = years[major] if spec.current_major > 1 else years[1]
            self.major_start[major] = start
            for language in LANGUAGES:
                minors = 2 if major == spec.current_major and language == "sv" else 1
                for minor in range(minors):
                    body = normalise_body(
                        catalogued.text(language, practice_name=name, practice_contact=name)
                        + f"\n\nVersion {major}.{minor}.\n"
                    )
                    rows.append(
                        {"tenant_ref": spec.tenant, "purpose_key": spec.purpose,
                         "language": language, "major": major,
                         "minor": minor, "body": body, "html": render_html(body),
                         "sha256": sha256(body),
                         "change_kind": "initial" if major == 1 and minor == 0
                         else ("content" if minor == 0 else "correction"),
                         "reason": None, "created_by": "system",
                         "created_at": start + timedelta(days=minor)}
                    )
        session.execute(insert(TextVersion), rows)
        for tv in session.execute(
            select(TextVersion.id, TextVersion.major, TextVersion.minor, TextVersion.language,
                   TextVersion.sha256)
            .where(TextVersion.tenant_ref == spec.tenant,
                   TextVersion.purpose_key == spec.purpose)
            .order_by(TextVersion.minor)
        ):
            self.by_major[(tv.major, tv.language)] = (tv.id, tv.sha256)  # newest minor wins

    def pick(self, major: int, language: str) -> tuple[int, str]:
        return self.by_major[(major, language)]


def _client_events(
    rng: random.Random, spec: _Spec, texts: _Texts, client: str, language: str
) -> list[dict[str, Any]]:
    """The ledger story of one client: a realistic mix of states and text versions."""
    cur = spec.current_major
    r = rng.random()
    out: list[dict[str, Any]] = []

    def ev(state: State, major: int | None, at: datetime, channel: str, method: str | None,
           actor: str, **extra: Any) -> dict[str, Any]:
        text_id, text_sha = texts.pick(major, language) if major else (None, None)
        given = at if state in (State.GIVEN, State.RENEWED) else None
        expires = (
            given + timedelta(days=spec.validity_days) if given and spec.validity_days else None
        )
        row = {"client_ref": client, "state": state.value, "text_version_id": text_id,
               "text_major": major, "text_sha256": text_sha,
               "language": language if major else None, "channel": channel, "method": method,
               "actor": actor, "given_at": given, "occurred_at": at, "expires_at": expires,
               "booking_ref": None, "request_id": None, "purpose_key": spec.purpose,
               "_evidence": None}
        row.update(extra)
        out.append(row)
        return row

    def online(state: State, major: int, at: datetime) -> None:
        row = ev(state, major, at, "online_booking", "checkbox", "client",
                 booking_ref=f"b{rng.getrandbits(40):x}")
        row["_evidence"] = (f"198.51.{rng.randrange(256)}.0/24", rng.choice(AGENTS), None)

    def start(major: int) -> datetime:
        return texts.major_start[major]

    def grant(major: int, at: datetime, renewed: bool = False) -> None:
        state = State.RENEWED if renewed else State.GIVEN
        if rng.random() < 0.7:
            online(state, major, at)
        elif rng.random() < 0.5:
            ev(State.REQUESTED, major, at - timedelta(days=2), "email", "link", "staff:s1")
            ev(state, major, at, "email_link", "link", "client")
        else:
            row = ev(state, major, at, "manual", rng.choice(("paper", "verbal")), "staff:s1")
            if rng.random() < 0.3:
                row["_evidence"] = (None, None, "Signed on paper at the reception.")

    if r < 0.18:  # never asked
        return out
    if r < 0.60:  # valid for the current text, often renewed after an older one
        if cur > 1 and rng.random() < 0.9:
            old = rng.randrange(1, cur)
            grant(old, _ts(rng, start(old), start(old + 1)))
            grant(cur, _ts(rng, start(cur), NOW - timedelta(hours=1)), renewed=True)
        else:
            grant(cur, _ts(rng, start(cur), NOW - timedelta(hours=1)))
        if rng.random() < 0.3:  # a later request for the same text keeps it valid
            ev(State.REQUESTED, cur, NOW - timedelta(minutes=rng.randrange(1, 600)), "email",
               "link", "staff:s1")
        return out
    if r < 0.70 and cur > 1:  # outdated: consent to an older text only
        old = rng.randrange(1, cur)
        grant(old, _ts(rng, start(old), start(old + 1)))
        return out
    if r < 0.76:  # declined at an online booking
        online(State.REFUSED, cur, _ts(rng, start(cur), NOW - timedelta(hours=1)))
        return out
    if r < 0.84:  # withdrawn or ended by the practice
        at = _ts(rng, start(1), NOW - timedelta(days=2))
        major = max(m for m in texts.major_start if texts.major_start[m] <= at)
        grant(major, at)
        ev(State.WITHDRAWN if rng.random() < 0.75 else State.REVOKED, major,
           at + timedelta(days=1), "email_link" if rng.random() < 0.5 else "manual", None,
           "client")
        return out
    if r < 0.96:  # asked by e-mail, no answer yet (some deferred)
        at = _ts(rng, start(cur), NOW - timedelta(hours=1))
        ev(State.REQUESTED, cur, at, "email", "link", "staff:s1")
        if rng.random() < 0.15:
            ev(State.DEFERRED, cur, at + timedelta(minutes=30), "email_link", "link", "client")
        return out
    # the rest: refused by staff-recorded answer
    ev(State.REFUSED, cur, _ts(rng, start(cur), NOW - timedelta(hours=1)), "manual", "verbal",
       "staff:s1")
    return out


def _table(model: Any) -> Table:
    """The model's table: Core ``executemany`` inserts (the ORM bulk path goes row by row
    when primary keys are given)."""
    table: Table = model.__table__
    return table


def _batched(rows: Sequence[Any], size: int = BATCH) -> Iterator[Any]:
    for i in range(0, len(rows), size):
        yield rows[i : i + size]


def _insert(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Bulk insert of rows with the same keys: ``COPY`` on PostgreSQL (through the
    driver's connection of the session's transaction), batched ``executemany`` else."""
    if not rows:
        return
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        for batch in _batched(rows):
            session.execute(insert(table), batch)
        return
    columns = list(rows[0])
    driver = connection.connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor, cursor.copy(
        f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
    ) as copy:
        for row in rows:
            copy.write_row([row[c] for c in columns])


def _host_practice(session: Session, spec: PracticeSpec, password_hash: str) -> HostPractice:
    practice = HostPractice(slug=f"bench-{spec.name}", name=f"Praktik {spec.name}",
                            city="Uppsala", email=f"info@{spec.name}.bench.example",
                            phone="018-10 20 30", locale="sv",
                            created_at=NOW - timedelta(days=1200))
    session.add(practice)
    session.flush()
    session.add(Staff(practice_id=practice.id, email=f"owner@{spec.name}.bench.example",
                      name="Behandlare", role="owner", can_record_consent=True,
                      password_hash=password_hash))
    session.add_all([
        Service(practice_id=practice.id, name_sv="Behandling", name_en="Treatment", minutes=60,
                price_sek=800),
        Service(practice_id=practice.id, name_sv="Kort behandling", name_en="Short treatment",
                minutes=30, price_sek=450),
    ])
    if spec.app:
        session.add(AppActivation(practice_id=practice.id, app_key="samtycke", active=True,
                                  changed_at=NOW - timedelta(days=1100), changed_by=None))
    session.flush()
    return practice


def generate_practice(session: Session, spec: PracticeSpec, *, first_client: int,
                      next_event_id: int, password_hash: str) -> Generated:
    """Insert one practice: the host's rows, its clients and (with the app) its texts,
    events, evidence and projection."""
    rng = random.Random(spec.seed)
    host = _host_practice(session, spec, password_hash)
    tenant = str(host.id)
    story = _Spec(tenant=tenant, current_major=spec.current_major,
                  validity_days=spec.validity_days)
    texts = _Texts(session, story) if spec.app else None
    others = []  # the other purposes' stories: one text version each
    for key in spec.purposes if spec.app else ():
        catalogued = purpose_catalogue.by_key(key)
        assert catalogued is not None
        other = _Spec(tenant=tenant, current_major=1, validity_days=catalogued.validity_days,
                      purpose=key)
        others.append((other, _Texts(session, other)))
    clients = []
    events: list[dict[str, Any]] = []
    for i in range(spec.clients):
        cid = first_client + i
        language = "sv" if rng.random() < 0.85 else "en"
        clients.append({"id": cid, "practice_id": host.id,
                        "name": f"{rng.choice(LAST)} {rng.choice(FIRST)} {i:07d}",
                        "email": f"c{cid}@bench.example", "phone": None, "locale": language,
                        "notes": None, "created_by": "staff",
                        "created_at": NOW - timedelta(days=1200 - i % 1000)})
        if texts is not None:
            events.extend(_client_events(rng, story, texts, str(cid), language))
        for other, other_texts in others:
            events.extend(_client_events(rng, other, other_texts, str(cid), language))
    _insert(session, _table(Client), clients)
    del clients
    common = {"name": spec.name, "practice_id": host.id, "slug": host.slug,
              "staff_email": f"owner@{spec.name}.bench.example", "clients": spec.clients,
              "first_client": first_client}
    if texts is None:
        return Generated(**common, events=0, valid=[], not_valid=[], to_ask=[])

    events.sort(key=lambda e: e["occurred_at"])
    prev = GENESIS_HASH
    evidence = []
    snaps: dict[tuple[str, str], tuple[Snapshot, int]] = {}
    for seq, e in enumerate(events, start=1):
        e["id"] = next_event_id + seq - 1
        e["tenant_ref"] = tenant
        e["seq"] = seq
        facts = e.pop("_evidence")
        if facts is not None:
            salt = f"{rng.getrandbits(128):032x}"
            ip, ua, note = facts
            e["evidence_sha256"] = evidence_hash(salt, ip, ua, note)
            evidence.append({"event_id": e["id"], "tenant_ref": tenant,
                             "client_ref": e["client_ref"], "salt": salt, "ip_prefix": ip,
                             "user_agent": ua, "note": note})
        else:
            e["evidence_sha256"] = None
        e["prev_hash"] = prev
        prev = e["row_hash"] = row_hash(prev, e)
        key = (e["client_ref"], e["purpose_key"])
        old = snaps.get(key)
        snap = fold(
            old[0] if old else None,
            EventFacts(state=State(e["state"]), text_major=e["text_major"],
                       expires_at=e["expires_at"], occurred_at=e["occurred_at"]),
        )
        if old is None or snap is not old[0]:
            snaps[key] = (snap, seq)
    _insert(session, _table(ConsentEvent), events)
    _insert(session, _table(Evidence), evidence)

    state_rows = []
    for (client_ref, purpose_key), (snap, last_seq) in snaps.items():
        delivery = None
        if snap.state is State.REQUESTED:
            delivery = "bounced" if rng.random() < 0.1 else "sent"
        state_rows.append({"tenant_ref": tenant, "client_ref": client_ref,
                           "purpose_key": purpose_key,
                           "state": snap.state.value, "text_major": snap.text_major,
                           "expires_at": snap.expires_at, "since": snap.since,
                           "last_seq": last_seq, "delivery": delivery})
    _insert(session, _table(ConsentStateRow), state_rows)
    valid: list[int] = []
    not_valid: list[int] = []
    to_ask: list[int] = []
    settings = PracticeSettings(require_consent_for_online_booking=spec.required,
                                validity_days=spec.validity_days)
    for cid in range(first_client, first_client + spec.clients):
        item = snaps.get((str(cid), purposes.DEFAULT_PURPOSE))
        final = item[0] if item else None
        ok = _valid(final, spec.current_major)
        (valid if ok else not_valid).append(cid)
        if not ok and not paused(final, settings, NOW):
            to_ask.append(cid)
    not_valid_by_purpose = {
        other.purpose: sum(
            not _valid(item[0] if item else None, 1)
            for item in (snaps.get((str(cid), other.purpose))
                         for cid in range(first_client, first_client + spec.clients)))
        for other, _texts in others
    }

    session.execute(insert(Practice).values(
        tenant_ref=tenant, active=True, setup_complete=True,
        settings=unstructure_settings(settings), current_major=spec.current_major,
        default_language="sv", head_seq=len(events), head_hash=prev,
        activated_at=NOW - timedelta(days=1100), deactivated_at=None,
        updated_at=events[-1]["occurred_at"] if events else NOW - timedelta(days=1100),
    ))
    purposes.create_default(session, tenant, required=spec.required,
                            validity_days=spec.validity_days, current_major=spec.current_major,
                            created_at=NOW - timedelta(days=1100))
    for position, (other, _texts) in enumerate(others, start=1):
        catalogued = purpose_catalogue.by_key(other.purpose)
        assert catalogued is not None
        session.execute(insert(Purpose).values(
            tenant_ref=tenant, key=other.purpose, position=position, required=False,
            validity_days=other.validity_days,
            names={language: catalogued.name.get(language) for language in LANGUAGES},
            legal_basis={language: catalogued.legal_basis.get(language)
                         for language in LANGUAGES},
            current_major=1, created_at=NOW - timedelta(days=1100), archived_at=None))
    return Generated(**common, events=len(events), valid=valid, not_valid=not_valid,
                     to_ask=to_ask, not_valid_by_purpose=not_valid_by_purpose)


def _valid(final: Snapshot | None, current_major: int) -> bool:
    return (final is not None and final.state in (State.GIVEN, State.RENEWED)
            and final.text_major == current_major
            and (final.expires_at is None or final.expires_at > NOW))


def generate(engine: Engine, specs: Sequence[PracticeSpec], *, log: Any = print
             ) -> dict[str, Generated]:
    """Every practice of ``specs`` on a migrated database."""
    t0 = time.perf_counter()
    password_hash = generate_password_hash(PASSWORD)
    with Session(engine) as session:  # explicit ids continue after any existing row
        next_event = int(session.scalar(select(func.coalesce(func.max(ConsentEvent.id), 0)))
                         or 0) + 1
        next_client = int(session.scalar(select(func.coalesce(func.max(Client.id), 0))) or 0) + 1
    out: dict[str, Generated] = {}
    for spec in specs:
        t1 = time.perf_counter()
        with Session(engine) as session, session.begin():
            gen = generate_practice(session, spec, first_client=next_client,
                                    next_event_id=next_event, password_hash=password_hash)
        next_event += gen.events
        next_client += gen.clients
        out[spec.name] = gen
        log(f"  {spec.name}: {gen.clients:>9,} clients {gen.events:>9,} events "
            f"({time.perf_counter() - t1:5.1f} s)")
    _after_load(engine)
    log(f"  generated in {time.perf_counter() - t0:.1f} s")
    return out


def _after_load(engine: Engine) -> None:
    """Continue id sequences past the explicit ids and refresh planner statistics."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            for table in (_table(ConsentEvent), _table(TextVersion), _table(Client)):
                last = select(func.coalesce(func.max(table.c.id), 1)).scalar_subquery()
                conn.execute(
                    select(func.setval(func.pg_get_serial_sequence(table.name, "id"), last))
                )
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
            # Write the loaded pages out now, not in the middle of the measurements.
            conn.exec_driver_sql("CHECKPOINT")
    else:
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.commit()
        raw = engine.raw_connection()  # autocommit: a checkpoint cannot run in a transaction
        try:
            raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            raw.close()
