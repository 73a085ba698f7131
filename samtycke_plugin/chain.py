"""The per-practice hash chain over the ledger: canonical hashing and verification.

``row_hash = sha256(prev_hash || "\\n" || JCS(fields))`` where JCS is the JSON
Canonicalization Scheme (RFC 8785) and ``fields`` are the event's columns
except ``id``, ``prev_hash`` and ``row_hash``.  Personal evidence (IP, user
agent, note) is not in the chain itself: only its salted hash is, so erasing
the evidence keeps the chain verifiable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import rfc8785
from attrs import frozen
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from samtycke_plugin.integrity import TextSeal, event_text_problem, text_seals, time_problem
from samtycke_plugin.models import GENESIS_HASH, ConsentEvent, Evidence, Practice

CHAINED_FIELDS = (
    "tenant_ref",
    "seq",
    "client_ref",
    "state",
    "text_version_id",
    "text_major",
    "text_sha256",
    "language",
    "channel",
    "method",
    "actor",
    "given_at",
    "occurred_at",
    "expires_at",
    "booking_ref",
    "request_id",
    "evidence_sha256",
)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    return value


def jcs(members: Mapping[str, Any]) -> bytes:
    """RFC 8785 (JCS) canonical JSON of an object (the ``rfc8785`` implementation)."""
    return bytes(rfc8785.dumps(dict(members)))


def canonical(fields: Mapping[str, Any]) -> bytes:
    """RFC 8785 canonical JSON of the chained fields."""
    return jcs({k: _jsonable(fields[k]) for k in CHAINED_FIELDS})


def row_hash(prev_hash: str, fields: Mapping[str, Any]) -> str:
    """The hash of one event, given the previous event's hash."""
    return hashlib.sha256(prev_hash.encode("ascii") + b"\n" + canonical(fields)).hexdigest()


def evidence_hash(
    salt: str, ip_prefix: str | None, user_agent: str | None, note: str | None
) -> str:
    """Salted hash of an event's personal evidence (the salt goes with the evidence)."""
    payload = jcs({"ip": ip_prefix, "ua": user_agent, "note": note})
    return hashlib.sha256(salt.encode("ascii") + b"\n" + payload).hexdigest()


BreakKind = Literal[
    "changed", "missing", "inserted", "reordered", "head", "evidence", "text", "time"
]


@frozen(kw_only=True)
class ChainBreak:
    """The first broken link of a practice's chain."""

    tenant_ref: str
    seq: int
    kind: BreakKind
    detail: str


@frozen(kw_only=True)
class VerifyResult:
    tenant_ref: str
    events: int
    head_seq: int
    head_hash: str
    broken: ChainBreak | None

    @property
    def ok(self) -> bool:
        return self.broken is None


class _EventRow(Protocol):
    """What verification reads of an event (an ORM object or a Core row)."""

    @property
    def tenant_ref(self) -> str: ...
    @property
    def seq(self) -> int: ...
    @property
    def client_ref(self) -> str: ...
    @property
    def evidence_sha256(self) -> str | None: ...
    @property
    def occurred_at(self) -> datetime: ...
    @property
    def text_version_id(self) -> int | None: ...
    @property
    def prev_hash(self) -> str: ...
    @property
    def row_hash(self) -> str: ...


class _EvidenceRow(Protocol):
    """What verification reads of an evidence row."""

    @property
    def tenant_ref(self) -> str: ...
    @property
    def client_ref(self) -> str: ...
    @property
    def salt(self) -> str: ...
    @property
    def ip_prefix(self) -> str | None: ...
    @property
    def user_agent(self) -> str | None: ...
    @property
    def note(self) -> str | None: ...


@frozen
class _EvidenceView:
    tenant_ref: str
    client_ref: str
    salt: str
    ip_prefix: str | None
    user_agent: str | None
    note: str | None


def _fields(ev: Any) -> dict[str, Any]:
    return {k: getattr(ev, k) for k in CHAINED_FIELDS}


#: How far from its position a renumbered event is looked for (diagnosis only).
_RENUMBER_WINDOW = 64


def _original_seq(ev: _EventRow) -> int | None:
    """The sequence number an intact but renumbered event was hashed with, if near."""
    fields = _fields(ev)
    seq = int(ev.seq)
    for delta in range(1, _RENUMBER_WINDOW + 1):
        for candidate in (seq - delta, seq + delta):
            moved = {**fields, "seq": candidate}
            if candidate >= 1 and row_hash(ev.prev_hash, moved) == ev.row_hash:
                return candidate
    return None


def _result(
    tenant_ref: str, count: int, head_seq: int, head_hash: str, seq: int, kind: BreakKind,
    detail: str,
) -> VerifyResult:
    return VerifyResult(
        tenant_ref=tenant_ref, events=count, head_seq=head_seq, head_hash=head_hash,
        broken=ChainBreak(tenant_ref=tenant_ref, seq=seq, kind=kind, detail=detail),
    )


def _evidence_problem(
    ev: _EventRow, evd: _EvidenceRow | None, erased_after: Mapping[str, int] | None
) -> str | None:
    """Why the event's evidence is not what the chain says, or ``None``."""
    if evd is not None:
        if ev.evidence_sha256 is None:
            return "evidence (IP, user agent or note) was attached to an event that had none"
        if evd.tenant_ref != ev.tenant_ref or evd.client_ref != ev.client_ref:
            return "the event's evidence was moved to another practice or client"
        if evidence_hash(evd.salt, evd.ip_prefix, evd.user_agent, evd.note) != ev.evidence_sha256:
            return "the event's evidence (IP, user agent, note) was altered"
        return None
    if ev.evidence_sha256 is not None and erased_after is not None:
        if erased_after.get(ev.client_ref, 0) <= ev.seq:
            return "the event's evidence was removed without an erasure of the client"
    return None


def _walk(
    tenant_ref: str,
    rows: Iterable[tuple[_EventRow, _EvidenceRow | None]],
    *,
    head_seq: int | None,
    head_hash: str | None,
    check_evidence: bool,
    erased_after: Mapping[str, int] | None,
    seals: Mapping[int, TextSeal] | None = None,
) -> VerifyResult:
    """Walk ``(event, evidence)`` pairs in ``seq`` order and name the first broken link.

    Kinds: ``changed`` (an event's contents do not match its hash, or an event was
    replaced by one with a recomputed hash), ``missing`` (an event is gone: a gap, or
    later events renumbered down), ``inserted`` (an event that was never appended by
    the app: later events renumbered up, or events past the chain head),
    ``reordered`` (events swapped places), ``head`` (the practice's chain head does not
    match the last event), ``evidence`` (personal evidence altered, moved, attached or
    removed without an erasure), ``text`` (with ``seals``: the text an event points at
    no longer hashes to what the event recorded, or its HTML is not the rendering of its
    body), ``time`` (an event happened more than the clock tolerance before an earlier
    event of the chain).  Memory stays constant: nothing is kept per event.
    """
    expected = 1
    prev = GENESIS_HASH
    latest: datetime | None = None
    count = 0
    it = iter(rows)
    for ev, evd in it:
        count += 1
        if ev.seq != expected:
            if ev.seq > expected:
                return _result(
                    tenant_ref, count, ev.seq, ev.row_hash, expected, "missing",
                    f"event #{expected} is missing (the next event found is #{ev.seq})",
                )
            return _result(
                tenant_ref, count, ev.seq, ev.row_hash, ev.seq, "reordered",
                f"event #{ev.seq} appears after event #{expected - 1}",
            )
        if row_hash(ev.prev_hash, _fields(ev)) != ev.row_hash:
            original = _original_seq(ev)
            if original is None:
                return _result(
                    tenant_ref, count, ev.seq, ev.row_hash, ev.seq, "changed",
                    "the event's contents do not match its hash (a column was altered)",
                )
            if original < ev.seq:
                return _result(
                    tenant_ref, count, ev.seq, ev.row_hash, original, "inserted",
                    f"an event was inserted at #{original}: the original event #{original} "
                    f"now appears as #{ev.seq}",
                )
            following = next(it, None)
            if following is not None and _original_seq(following[0]) == ev.seq:
                return _result(
                    tenant_ref, count, ev.seq, ev.row_hash, ev.seq, "reordered",
                    f"events #{ev.seq} and #{original} swapped places",
                )
            return _result(
                tenant_ref, count, ev.seq, ev.row_hash, ev.seq, "missing",
                f"event #{ev.seq} was removed and the later events renumbered "
                f"(the original event #{original} now appears as #{ev.seq})",
            )
        if ev.prev_hash != prev:
            if ev.seq == 1:
                return _result(
                    tenant_ref, count, ev.seq, ev.row_hash, 1, "changed",
                    "event #1 does not start from the genesis hash",
                )
            return _result(
                tenant_ref, count, ev.seq, ev.row_hash, ev.seq - 1, "changed",
                f"event #{ev.seq - 1} was replaced by one with a recomputed hash: "
                f"event #{ev.seq} still points to the original",
            )
        if check_evidence:
            problem = _evidence_problem(ev, evd, erased_after)
            if problem is not None:
                return _result(
                    tenant_ref, count, ev.seq, ev.row_hash, ev.seq, "evidence", problem
                )
        if seals is not None and ev.text_version_id is not None:
            problem = event_text_problem(ev, seals)
            if problem is not None:
                return _result(tenant_ref, count, ev.seq, ev.row_hash, ev.seq, "text", problem)
        if latest is not None and (problem := time_problem(ev, latest)) is not None:
            return _result(tenant_ref, count, ev.seq, ev.row_hash, ev.seq, "time", problem)
        if latest is None or ev.occurred_at > latest:
            latest = ev.occurred_at
        prev = ev.row_hash
        expected += 1
    last_seq = expected - 1
    if head_seq is not None:
        if head_seq < last_seq:
            return _result(
                tenant_ref, count, last_seq, prev, head_seq + 1, "inserted",
                f"event #{head_seq + 1} lies beyond the practice's chain head #{head_seq} "
                "(it was not appended by the app)",
            )
        if head_seq > last_seq:
            return _result(
                tenant_ref, count, last_seq, prev, last_seq + 1, "missing",
                f"the practice's chain head says #{head_seq}, the ledger ends at #{last_seq}",
            )
        if head_hash != prev:
            return _result(
                tenant_ref, count, last_seq, prev, last_seq, "head",
                f"the last event #{last_seq} does not match the practice's chain head "
                "(the event was replaced or the head altered)",
            )
    return VerifyResult(
        tenant_ref=tenant_ref, events=count, head_seq=last_seq, head_hash=prev, broken=None
    )


def verify_events(
    tenant_ref: str,
    events: Iterable[ConsentEvent],
    *,
    head_seq: int | None,
    head_hash: str | None,
    evidence: Mapping[int, Evidence] | None = None,
    erased_after: Mapping[str, int] | None = None,
    seals: Mapping[int, TextSeal] | None = None,
) -> VerifyResult:
    """Walk events in ``seq`` order and name the first broken link.

    ``evidence`` (event id → evidence row) enables the evidence check; with
    ``erased_after`` (client → seq of its latest ``erased`` event) evidence that is
    gone without a later erasure is a break too.  ``seals`` (from
    :func:`samtycke_plugin.integrity.text_seals`) enables the text check.
    """
    rows = ((ev, evidence.get(ev.id) if evidence is not None else None) for ev in events)
    return _walk(
        tenant_ref, rows, head_seq=head_seq, head_hash=head_hash,
        check_evidence=evidence is not None, erased_after=erased_after, seals=seals,
    )


def erased_after(session: Session, tenant_ref: str) -> dict[str, int]:
    """Client → sequence number of its latest ``erased`` event, for one practice."""
    return {
        str(client): int(seq)
        for client, seq in session.execute(
            select(ConsentEvent.client_ref, func.max(ConsentEvent.seq))
            .where(ConsentEvent.tenant_ref == tenant_ref, ConsentEvent.state == "erased")
            .group_by(ConsentEvent.client_ref)
        )
    }


_EVIDENCE_COLUMNS = (
    Evidence.tenant_ref.label("evd_tenant_ref"),
    Evidence.client_ref.label("evd_client_ref"),
    Evidence.salt.label("evd_salt"),
    Evidence.ip_prefix.label("evd_ip_prefix"),
    Evidence.user_agent.label("evd_user_agent"),
    Evidence.note.label("evd_note"),
)


def _joined_rows(
    session: Session, tenant_ref: str, with_evidence: bool
) -> Iterator[tuple[_EventRow, _EvidenceRow | None]]:
    table = ConsentEvent.__table__
    stmt = (
        select(table, *_EVIDENCE_COLUMNS)
        .select_from(table.outerjoin(Evidence, Evidence.event_id == table.c.id))
        if with_evidence
        else select(table)
    )
    result = session.execute(
        stmt.where(table.c.tenant_ref == tenant_ref)
        .order_by(table.c.seq)
        .execution_options(yield_per=2000)
    )
    for row in result:
        evd: _EvidenceRow | None = None
        if with_evidence and row.evd_salt is not None:
            evd = _EvidenceView(
                row.evd_tenant_ref, row.evd_client_ref, row.evd_salt, row.evd_ip_prefix,
                row.evd_user_agent, row.evd_note,
            )
        yield row, evd


def _stray_evidence(session: Session, tenant_ref: str) -> tuple[int, str] | None:
    """Evidence filed under this practice whose event is elsewhere or has no evidence."""
    row = session.execute(
        select(Evidence.event_id, ConsentEvent.seq, ConsentEvent.tenant_ref)
        .select_from(Evidence)
        .outerjoin(ConsentEvent, ConsentEvent.id == Evidence.event_id)
        .where(
            Evidence.tenant_ref == tenant_ref,
            or_(
                ConsentEvent.id.is_(None),
                ConsentEvent.tenant_ref != tenant_ref,
                ConsentEvent.evidence_sha256.is_(None),
            ),
        )
        .order_by(Evidence.event_id)
        .limit(1)
    ).first()
    if row is None:
        return None
    seq = int(row.seq) if row.seq is not None and row.tenant_ref == tenant_ref else 0
    return seq, f"evidence row for event id {row.event_id} does not belong to any event of it"


def verify_chain(session: Session, tenant_ref: str, *, check_evidence: bool = True) -> VerifyResult:
    """Recompute one practice's chain from the database (streamed in ``seq`` order).

    Memory is constant in the number of events.  With ``check_evidence`` the personal
    evidence of every event is checked against its salted hash, and evidence that is
    gone is accepted only for a client erased later in the chain.  Every text version
    of the practice is re-hashed and re-rendered: an event whose text no longer matches
    what it recorded is a ``text`` break, and so (at ``seq`` 0, after the walk) is an
    altered text no event points at.  Time must not run backwards along the chain
    (``time``, within :data:`~samtycke_plugin.integrity.CLOCK_TOLERANCE`).
    """
    practice = session.get(Practice, tenant_ref)
    erased = erased_after(session, tenant_ref) if check_evidence else None
    seals = text_seals(session, tenant_ref)
    result = _walk(
        tenant_ref,
        _joined_rows(session, tenant_ref, check_evidence),
        head_seq=practice.head_seq if practice else None,
        head_hash=practice.head_hash if practice else None,
        check_evidence=check_evidence,
        erased_after=erased,
        seals=seals,
    )
    if result.broken is not None:
        return result
    if practice is None and result.events:
        return _result(
            tenant_ref, result.events, result.head_seq, result.head_hash, result.head_seq,
            "head", "the practice's chain head record is missing",
        )
    if check_evidence:
        stray = _stray_evidence(session, tenant_ref)
        if stray is not None:
            return _result(
                tenant_ref, result.events, result.head_seq, result.head_hash, stray[0],
                "evidence", stray[1],
            )
    unsound = next((seal.problem for seal in seals.values() if seal.problem), None)
    if unsound is not None:
        return _result(
            tenant_ref, result.events, result.head_seq, result.head_hash, 0, "text", unsound
        )
    return result


def practices_in_ledger(session: Session) -> list[str]:
    """Every practice with a chain head or ledger events, sorted."""
    heads = set(session.scalars(select(Practice.tenant_ref)))
    in_ledger = set(session.scalars(select(ConsentEvent.tenant_ref).distinct()))
    return sorted(heads | in_ledger)


def verify_all(session: Session, *, check_evidence: bool = True) -> list[VerifyResult]:
    """:func:`verify_chain` for every practice (those with a head or with events)."""
    return [
        verify_chain(session, tenant, check_evidence=check_evidence)
        for tenant in practices_in_ledger(session)
    ]
