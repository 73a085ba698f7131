"""Checks beyond the hash chain: the consent texts events point at, the stored status
(projection) against a replay of the ledger, and time along the chain.

The chain covers each event's columns, and an event records the SHA-256 of the text
body the client was shown; the texts and the status table are rows of their own.
These checks tie them back to the chain: a text must still hash to what its events
recorded (and its HTML be the rendering of that body), and every status row must be
what a replay of the practice's ledger gives.  Memory stays constant in the number of
events and clients (texts are few, and are held once per practice).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias

from attrs import frozen
from sqlalchemy import Result, Row, Select, and_, select
from sqlalchemy.orm import Session

from samtycke_plugin.models import ConsentEvent, ConsentStateRow, TextVersion
from samtycke_plugin.purposes import DEFAULT_PURPOSE
from samtycke_plugin.rules import EventFacts, Snapshot, State, fold
from samtycke_plugin.text import render_html, sha256

#: How far an event's time may lie before the latest time earlier in the chain (and an
#: event after a checkpoint before the checkpoint's signing time): the clocks of the
#: app's servers differ a little, and concurrent writers read the time before they take
#: the practice's lock, so they may append in a slightly different order.
CLOCK_TOLERANCE = timedelta(minutes=5)


# -- texts ----------------------------------------------------------------------------------


@frozen(kw_only=True)
class TextSeal:
    """One text version as stored, with what re-hashing it found."""

    id: int
    label: str
    major: int
    language: str
    sha256: str
    problem: str | None


def text_label(text_id: int, major: int, minor: int, language: str) -> str:
    """How a text is named in a finding: ``text 2.0 (sv, id 7)``."""
    return f"text {major}.{minor} ({language}, id {text_id})"


def _seal(tv: Any) -> TextSeal:
    label = text_label(int(tv.id), tv.major, tv.minor, tv.language)
    problem: str | None = None
    if sha256(tv.body) != tv.sha256:
        problem = f"the body of {label} no longer matches its SHA-256 (the text was altered)"
    elif render_html(tv.body) != tv.html:
        problem = (
            f"the HTML shown for {label} is not the rendering of its body "
            "(the HTML was altered, or the Markdown renderer changed its output)"
        )
    return TextSeal(
        id=int(tv.id), label=label, major=int(tv.major), language=str(tv.language),
        sha256=str(tv.sha256), problem=problem,
    )


def text_seals(session: Session, tenant_ref: str) -> dict[int, TextSeal]:
    """Every text version of a practice, re-hashed and re-rendered (id → seal)."""
    t = TextVersion.__table__.c
    rows = session.execute(
        select(t.id, t.major, t.minor, t.language, t.body, t.html, t.sha256)
        .where(t.tenant_ref == tenant_ref)
        .order_by(t.id)
    )
    return {int(row.id): _seal(row) for row in rows}


def event_text_problem(ev: Any, seals: Mapping[int, TextSeal]) -> str | None:
    """Why the text an event points at is not the text the event recorded, or ``None``.

    ``ev`` has ``seq``, ``text_version_id``, ``text_sha256``, ``text_major`` and
    ``language`` (all covered by the chain)."""
    if ev.text_version_id is None:
        return None
    seal = seals.get(int(ev.text_version_id))
    if seal is None:
        return (
            f"event #{ev.seq} points at text id {ev.text_version_id}, which is not among "
            "the practice's texts (it was removed or moved)"
        )
    if ev.text_sha256 is not None and ev.text_sha256 != seal.sha256:
        return (
            f"{seal.label} no longer has the SHA-256 event #{ev.seq} recorded for it "
            "(the text and its hash were altered)"
        )
    if seal.problem is not None:
        return seal.problem
    if ev.text_major is not None and ev.text_major != seal.major:
        return f"{seal.label} is not version {ev.text_major}, which event #{ev.seq} recorded"
    if ev.language is not None and ev.language != seal.language:
        return (
            f"{seal.label} is not in language {ev.language}, which event #{ev.seq} recorded"
        )
    return None


# -- time -----------------------------------------------------------------------------------


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def time_problem(ev: Any, latest: datetime) -> str | None:
    """Why an event (``seq``, ``client_ref``, ``occurred_at``) cannot come after an
    event of ``latest``, or ``None``: time never runs backwards along the chain."""
    if ev.occurred_at >= latest - CLOCK_TOLERANCE:
        return None
    return (
        f"event #{ev.seq} (client {ev.client_ref}) is dated {_iso(ev.occurred_at)}, before "
        f"an earlier event of the chain ({_iso(latest)}): time never runs backwards along "
        "the chain (the event was backdated or inserted)"
    )


def backdated_after(
    session: Session, tenant_ref: str, seq: int, signed_at: datetime
) -> str | None:
    """Why an event after ``seq`` cannot be there: the first one older than ``signed_at``
    (less the clock tolerance), or ``None``.  Events appended after a checkpoint was
    signed cannot have happened before it."""
    e = ConsentEvent.__table__.c
    row = session.execute(
        select(e.seq, e.occurred_at)
        .where(
            e.tenant_ref == tenant_ref, e.seq > seq,
            e.occurred_at < signed_at - CLOCK_TOLERANCE,
        )
        .order_by(e.seq)
        .limit(1)
    ).first()
    if row is None:
        return None
    return (
        f"event #{row.seq} comes after the checkpoint of event #{seq} but is dated "
        f"{_iso(row.occurred_at)}, more than {int(CLOCK_TOLERANCE.total_seconds() // 60)} "
        f"minutes before the checkpoint was signed ({_iso(signed_at)}): it was backdated "
        "or forged"
    )


# -- the stored status (projection) ----------------------------------------------------------


@frozen(kw_only=True)
class ReplayedState:
    """A client's status as a replay of its events gives it, with the sequence number
    of the event it comes from (the ``last_seq`` the write path stores)."""

    snapshot: Snapshot
    last_seq: int


_E = ConsentEvent.__table__.c
#: What a replay reads of each event, in :func:`_replayed`'s order.
_REPLAY_COLUMNS = (_E.client_ref, _E.purpose_key, _E.seq, _E.state, _E.text_major,
                   _E.expires_at, _E.occurred_at)
_WIDTH = len(_REPLAY_COLUMNS)


#: A result row of any width (read by position or by column name).
DbRow: TypeAlias = "Row[*tuple[Any, ...]]"


def streamed(session: Session, stmt: Select[*tuple[Any, ...]]) -> Iterator[DbRow]:
    """Core rows of ``stmt`` through the session's connection, in batches: no ORM
    result processing per row, and memory bounded by the batch."""
    result: Result[*tuple[Any, ...]] = session.connection().execute(
        stmt.execution_options(yield_per=2000)
    )
    yield from result


def _replayed(
    rows: Iterator[DbRow],
) -> Iterator[tuple[tuple[str, str], ReplayedState, DbRow]]:
    """Rows that start with :data:`_REPLAY_COLUMNS`, ordered by client and sequence
    number, folded client by client and purpose by purpose: each ``(client, purpose)``
    with its replayed status and its last row (one client is held at a time; its
    purposes come in key order)."""
    current: str | None = None
    held: dict[str, tuple[ReplayedState, DbRow]] = {}
    for row in rows:
        client, purpose, seq, state, major, expires, occurred = row[:_WIDTH]
        if client != current:
            if current is not None:
                yield from _release(current, held)
            current, held = client, {}
        before = held.get(purpose)
        replayed = replay_step(before[0] if before else None, seq, state, major, expires,
                               occurred)
        held[purpose] = (replayed, row)
    if current is not None:
        yield from _release(current, held)


def _release(
    client: str, held: Mapping[str, tuple[ReplayedState, DbRow]]
) -> Iterator[tuple[tuple[str, str], ReplayedState, DbRow]]:
    for purpose in sorted(held):
        yield (client, purpose), *held[purpose]


def replay_clients(
    session: Session, tenant_ref: str
) -> Iterator[tuple[tuple[str, str], ReplayedState]]:
    """Every ``(client, purpose)`` of a practice with its replayed status, in client
    order, streamed (the events come ordered by client and sequence number; one client
    is held at a time).  ``last_seq`` is the event that last changed the status, as the
    write path records it (a request that leaves consent in place changes nothing)."""
    rows = streamed(
        session,
        select(*_REPLAY_COLUMNS)
        .where(_E.tenant_ref == tenant_ref)
        .order_by(_E.client_ref, _E.seq),
    )
    for key, replayed, _ in _replayed(rows):
        yield key, replayed


def replay_step(
    replayed: ReplayedState | None, seq: int, state: str, text_major: int | None,
    expires_at: datetime | None, occurred_at: datetime,
) -> ReplayedState:
    """One event of a client applied to its replayed status."""
    snap = replayed.snapshot if replayed is not None else None
    folded = fold(
        snap,
        EventFacts(state=State(state), text_major=text_major, expires_at=expires_at,
                   occurred_at=occurred_at),
    )
    if replayed is not None and folded is snap:
        return replayed
    return ReplayedState(snapshot=folded, last_seq=int(seq))


@frozen(kw_only=True)
class StatusMismatch:
    """The first client whose stored status of a purpose is not what the ledger says."""

    tenant_ref: str
    client_ref: str
    detail: str
    purpose_key: str = DEFAULT_PURPOSE


_S = ConsentStateRow.__table__.c


@frozen(kw_only=True)
class _StoredStatus:
    """A client's stored status row, as :func:`describe_status` reads it."""

    state: str
    text_major: int | None
    expires_at: datetime | None
    since: datetime
    last_seq: int


def describe_status(
    client: str, stored: Any | None, replayed: ReplayedState | None,
    purpose: str = DEFAULT_PURPOSE,
) -> str | None:
    """How a client's stored status row of a purpose differs from its replay, or
    ``None`` (also when there is neither)."""
    if stored is None and replayed is None:
        return None
    if purpose != DEFAULT_PURPOSE:
        client = f"{client} (purpose {purpose})"
    if stored is None:
        assert replayed is not None
        return (
            f"client {client} has events up to #{replayed.last_seq} but no stored status "
            f"(the ledger says {replayed.snapshot.state.value})"
        )
    if replayed is None:
        return (
            f"client {client} has a stored status ({stored.state}) but no event in the ledger"
        )
    snap = replayed.snapshot
    differs = [
        name for name, have, want in (
            ("state", stored.state, snap.state.value),
            ("text version", stored.text_major, snap.text_major),
            ("expiry", stored.expires_at, snap.expires_at),
            ("since", stored.since, snap.since),
            ("last event", int(stored.last_seq), replayed.last_seq),
        )
        if have != want
    ]
    if not differs:
        return None
    return (
        f"the stored status of client {client} ({stored.state}, from event "
        f"#{stored.last_seq}) is not what the ledger says ({snap.state.value}, from event "
        f"#{replayed.last_seq}); differs in: {', '.join(differs)}"
    )


def check_projection(session: Session, tenant_ref: str) -> StatusMismatch | None:
    """Compare the stored status of every client of a practice with a replay of its
    ledger; the first client that differs (in client order), or ``None``.

    Streamed: one query reads the events ordered by client and sequence number, each
    with its client's stored status row beside it, so memory stays bounded whatever the
    practice's size.  Status rows of clients without any event are looked for last.
    The delivery state of a request (bounced, failed) comes from the mail relay, not the
    ledger, and is not compared.
    """
    rows = streamed(
        session,
        select(*_REPLAY_COLUMNS, _S.state, _S.text_major, _S.expires_at, _S.since,
               _S.last_seq)
        .select_from(ConsentEvent.__table__.outerjoin(
            ConsentStateRow, and_(_S.tenant_ref == _E.tenant_ref,
                                  _S.client_ref == _E.client_ref,
                                  _S.purpose_key == _E.purpose_key)))
        .where(_E.tenant_ref == tenant_ref)
        .order_by(_E.client_ref, _E.seq),
    )
    for (client, purpose), replayed, row in _replayed(rows):
        state, major, expires, since, last_seq = row[_WIDTH:]
        snap = replayed.snapshot
        if state == snap.state.value and (major, expires, since, last_seq) == (
            snap.text_major, snap.expires_at, snap.since, replayed.last_seq
        ):
            continue
        stored = None if state is None else _StoredStatus(
            state=state, text_major=major, expires_at=expires, since=since, last_seq=last_seq
        )
        detail = describe_status(client, stored, replayed, purpose)
        if detail is not None:
            return StatusMismatch(tenant_ref=tenant_ref, client_ref=client, detail=detail,
                                  purpose_key=purpose)
    orphan = session.execute(
        select(_S.client_ref, _S.purpose_key, _S.state)
        .where(
            _S.tenant_ref == tenant_ref,
            ~select(_E.id)
            .where(and_(_E.tenant_ref == _S.tenant_ref, _E.client_ref == _S.client_ref,
                        _E.purpose_key == _S.purpose_key))
            .exists(),
        )
        .order_by(_S.client_ref, _S.purpose_key)
        .limit(1)
    ).first()
    if orphan is not None:
        detail = describe_status(str(orphan.client_ref), orphan, None, orphan.purpose_key)
        assert detail is not None
        return StatusMismatch(tenant_ref=tenant_ref, client_ref=orphan.client_ref, detail=detail,
                              purpose_key=orphan.purpose_key)
    return None
