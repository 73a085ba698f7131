"""The per-practice hash chain over the ledger: verification (the hash of one event is
:mod:`samtycke_plugin.canonical`'s).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, Literal

from attrs import frozen
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from samtycke_plugin import attachments
from samtycke_plugin.canonical import CHAINED_FIELDS as CHAINED_FIELDS
from samtycke_plugin.canonical import OMITTED_DEFAULTS as OMITTED_DEFAULTS
from samtycke_plugin.canonical import canonical as canonical
from samtycke_plugin.canonical import chained_members, link_hash
from samtycke_plugin.canonical import evidence_hash as evidence_hash
from samtycke_plugin.canonical import jcs as jcs
from samtycke_plugin.canonical import row_hash as row_hash
from samtycke_plugin.integrity import (
    CLOCK_TOLERANCE,
    DbRow,
    TextSeal,
    event_text_problem,
    streamed,
    text_seals,
    time_problem,
)
from samtycke_plugin.models import GENESIS_HASH, ConsentEvent, Evidence, Practice

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


#: Where verification finds an event's columns in a row: the chained fields in
#: :data:`CHAINED_FIELDS` order, then the event's links, then its evidence (if read).
_SEQ = CHAINED_FIELDS.index("seq")
_TEXT_KEY = slice(CHAINED_FIELDS.index("text_version_id"), CHAINED_FIELDS.index("language") + 1)
_OCCURRED = CHAINED_FIELDS.index("occurred_at")
_PREV = len(CHAINED_FIELDS)
_HASH = _PREV + 1
_EVIDENCE = slice(_HASH + 1, _HASH + 7)


#: How far from its position a renumbered event is looked for (diagnosis only).
_RENUMBER_WINDOW = 64


def _original_seq(row: DbRow) -> int | None:
    """The sequence number an intact but renumbered event was hashed with, if near."""
    members = chained_members(row)
    seq = int(row[_SEQ])
    for delta in range(1, _RENUMBER_WINDOW + 1):
        for candidate in (seq - delta, seq + delta):
            if candidate >= 1 and link_hash(
                row[_PREV], {**members, "seq": candidate}
            ) == row[_HASH]:
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


def _evidence_problem(row: DbRow, erased_after: Mapping[str, int] | None) -> str | None:
    """Why the event's evidence is not what the chain says, or ``None``."""
    evd_tenant, evd_client, salt, ip_prefix, user_agent, note = row[_EVIDENCE]
    if salt is not None:
        if row.evidence_sha256 is None:
            return "evidence (IP, user agent or note) was attached to an event that had none"
        if evd_tenant != row.tenant_ref or evd_client != row.client_ref:
            return "the event's evidence was moved to another practice or client"
        if evidence_hash(salt, ip_prefix, user_agent, note) != row.evidence_sha256:
            return "the event's evidence (IP, user agent, note) was altered"
        return None
    if row.evidence_sha256 is not None and erased_after is not None:
        if erased_after.get(row.client_ref, 0) <= row.seq:
            return "the event's evidence was removed without an erasure of the client"
    return None


def _link_problem(
    tenant_ref: str, count: int, row: DbRow, expected: int, prev: str,
    following: Callable[[], DbRow | None],
) -> VerifyResult | None:
    """The break at this event's place in the chain (its number, hash and link to the
    event before), or ``None``; ``following`` reads the next event (diagnosis only)."""
    seq, stored = row[_SEQ], row[_HASH]
    if seq != expected:
        if seq > expected:
            return _result(
                tenant_ref, count, seq, stored, expected, "missing",
                f"event #{expected} is missing (the next event found is #{seq})",
            )
        return _result(
            tenant_ref, count, seq, stored, seq, "reordered",
            f"event #{seq} appears after event #{expected - 1}",
        )
    if link_hash(row[_PREV], chained_members(row)) != stored:
        original = _original_seq(row)
        if original is None:
            return _result(
                tenant_ref, count, seq, stored, seq, "changed",
                "the event's contents do not match its hash (a column was altered)",
            )
        if original < seq:
            return _result(
                tenant_ref, count, seq, stored, original, "inserted",
                f"an event was inserted at #{original}: the original event #{original} "
                f"now appears as #{seq}",
            )
        after = following()
        if after is not None and _original_seq(after) == seq:
            return _result(
                tenant_ref, count, seq, stored, seq, "reordered",
                f"events #{seq} and #{original} swapped places",
            )
        return _result(
            tenant_ref, count, seq, stored, seq, "missing",
            f"event #{seq} was removed and the later events renumbered "
            f"(the original event #{original} now appears as #{seq})",
        )
    if row[_PREV] != prev:
        if seq == 1:
            return _result(
                tenant_ref, count, seq, stored, 1, "changed",
                "event #1 does not start from the genesis hash",
            )
        return _result(
            tenant_ref, count, seq, stored, seq - 1, "changed",
            f"event #{seq - 1} was replaced by one with a recomputed hash: "
            f"event #{seq} still points to the original",
        )
    return None


def _head_problem(
    tenant_ref: str, count: int, last_seq: int, last_hash: str, head_seq: int,
    head_hash: str | None,
) -> VerifyResult | None:
    if head_seq < last_seq:
        return _result(
            tenant_ref, count, last_seq, last_hash, head_seq + 1, "inserted",
            f"event #{head_seq + 1} lies beyond the practice's chain head #{head_seq} "
            "(it was not appended by the app)",
        )
    if head_seq > last_seq:
        return _result(
            tenant_ref, count, last_seq, last_hash, last_seq + 1, "missing",
            f"the practice's chain head says #{head_seq}, the ledger ends at #{last_seq}",
        )
    if head_hash != last_hash:
        return _result(
            tenant_ref, count, last_seq, last_hash, last_seq, "head",
            f"the last event #{last_seq} does not match the practice's chain head "
            "(the event was replaced or the head altered)",
        )
    return None


def _walk(
    tenant_ref: str,
    rows: Iterable[DbRow],
    *,
    head_seq: int | None,
    head_hash: str | None,
    check_evidence: bool,
    erased_after: Mapping[str, int] | None,
    seals: Mapping[int, TextSeal] | None = None,
) -> VerifyResult:
    """Walk events in ``seq`` order and name the first broken link.

    Each row holds the chained fields in :data:`CHAINED_FIELDS` order, ``prev_hash``,
    ``row_hash`` and, with ``check_evidence``, the evidence columns of
    :func:`_event_rows`.  Kinds: ``changed`` (an event's contents do not match its
    hash, or an event was replaced by one with a recomputed hash), ``missing`` (an
    event is gone: a gap, or later events renumbered down), ``inserted`` (an event that
    was never appended by the app: later events renumbered up, or events past the chain
    head), ``reordered`` (events swapped places), ``head`` (the practice's chain head
    does not match the last event), ``evidence`` (personal evidence altered, moved,
    attached or removed without an erasure), ``text`` (with ``seals``: the text an
    event points at no longer hashes to what the event recorded, or its HTML is not the
    rendering of its body), ``time`` (an event happened more than the clock tolerance
    before an earlier event of the chain).  Memory stays constant: nothing is kept per
    event (only the text references already found sound, at most one per text version,
    language and hash an event recorded).
    """
    expected = 1
    prev = GENESIS_HASH
    latest: datetime | None = None
    earliest_allowed: datetime | None = None
    sound_texts: set[tuple[Any, ...]] = set()
    count = 0
    it = iter(rows)
    for row in it:
        count += 1
        seq = row[_SEQ]
        broken = _link_problem(tenant_ref, count, row, expected, prev, lambda: next(it, None))
        if broken is not None:
            return broken
        if check_evidence:
            problem = _evidence_problem(row, erased_after)
            if problem is not None:
                return _result(tenant_ref, count, seq, row[_HASH], seq, "evidence", problem)
        if seals is not None:
            text_key = row[_TEXT_KEY]
            if text_key[0] is not None and text_key not in sound_texts:
                problem = event_text_problem(row, seals)
                if problem is not None:
                    return _result(tenant_ref, count, seq, row[_HASH], seq, "text", problem)
                sound_texts.add(text_key)
        occurred = row[_OCCURRED]
        if earliest_allowed is not None and occurred < earliest_allowed:
            assert latest is not None
            problem = time_problem(row, latest)
            if problem is not None:
                return _result(tenant_ref, count, seq, row[_HASH], seq, "time", problem)
        if latest is None or occurred > latest:
            latest = occurred
            earliest_allowed = latest - CLOCK_TOLERANCE
        prev = row[_HASH]
        expected += 1
    last_seq = expected - 1
    if head_seq is not None:
        broken = _head_problem(tenant_ref, count, last_seq, prev, head_seq, head_hash)
        if broken is not None:
            return broken
    return VerifyResult(
        tenant_ref=tenant_ref, events=count, head_seq=last_seq, head_hash=prev, broken=None
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


_T = ConsentEvent.__table__
#: The event columns :func:`_walk` reads, in its order (no ORM objects are built).
_EVENT_COLUMNS = (*(_T.c[k] for k in CHAINED_FIELDS), _T.c.prev_hash, _T.c.row_hash)


def _event_rows(session: Session, tenant_ref: str, with_evidence: bool) -> Iterator[DbRow]:
    """A practice's events in ``seq`` order, streamed (with their evidence)."""
    stmt = (
        select(*_EVENT_COLUMNS, *_EVIDENCE_COLUMNS)
        .select_from(_T.outerjoin(Evidence, Evidence.event_id == _T.c.id))
        if with_evidence
        else select(*_EVENT_COLUMNS)
    )
    return streamed(session, stmt.where(_T.c.tenant_ref == tenant_ref).order_by(_T.c.seq))


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
    gone is accepted only for a client erased later in the chain; so is an attached
    scan, whose bytes must still hash to what the event recorded.  Every text version
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
        _event_rows(session, tenant_ref, check_evidence),
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
        # The scan of a paper form is evidence too: its bytes must hash to the event's
        # attachment_sha256 (or be gone through an erasure).
        scan = next(attachments.problems(session, tenant_ref, erased or {}), None)
        if scan is not None:
            return _result(
                tenant_ref, result.events, result.head_seq, result.head_hash, scan[0],
                "evidence", scan[1],
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
