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
from typing import Any

from attrs import frozen
from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from samtycke_plugin.models import ConsentEvent, ConsentStateRow, TextVersion
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


def replay_clients(session: Session, tenant_ref: str) -> Iterator[tuple[str, ReplayedState]]:
    """Every client of a practice with its replayed status, in client order, streamed
    (the events come ordered by client and sequence number; one client is held at a
    time).  ``last_seq`` is the event that last changed the status, as the write path
    records it (a request that leaves consent in place changes nothing)."""
    e = ConsentEvent.__table__.c
    rows = session.execute(
        select(e.client_ref, e.seq, e.state, e.text_major, e.expires_at, e.occurred_at)
        .where(e.tenant_ref == tenant_ref)
        .order_by(e.client_ref, e.seq)
        .execution_options(yield_per=5000)
    )
    current: str | None = None
    replayed: ReplayedState | None = None
    for client, seq, state, major, expires, occurred in rows:
        if client != current:
            if current is not None and replayed is not None:
                yield current, replayed
            current, replayed = client, None
        replayed = replay_step(replayed, seq, state, major, expires, occurred)
    if current is not None and replayed is not None:
        yield current, replayed


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
    """The first client whose stored status is not what the ledger says."""

    tenant_ref: str
    client_ref: str
    detail: str


#: Clients compared per status-table query.
_WINDOW = 1000

_S = ConsentStateRow.__table__.c


def describe_status(
    client: str, stored: Any | None, replayed: ReplayedState | None
) -> str | None:
    """How a client's stored status row differs from its replay, or ``None`` (also
    when there is neither)."""
    if stored is None and replayed is None:
        return None
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


def _compare_window(
    session: Session, tenant_ref: str, window: list[tuple[str, ReplayedState]]
) -> StatusMismatch | None:
    stored = {
        row.client_ref: row
        for row in session.execute(
            select(_S.client_ref, _S.state, _S.text_major, _S.expires_at, _S.since,
                   _S.last_seq)
            .where(_S.tenant_ref == tenant_ref,
                   _S.client_ref.in_([client for client, _ in window]))
        )
    }
    for client, replayed in window:
        detail = describe_status(client, stored.get(client), replayed)
        if detail is not None:
            return StatusMismatch(tenant_ref=tenant_ref, client_ref=client, detail=detail)
    return None


def check_projection(session: Session, tenant_ref: str) -> StatusMismatch | None:
    """Compare the stored status of every client of a practice with a replay of its
    ledger; the first client that differs (in client order), or ``None``.

    Streamed: the replay comes client by client and the stored rows are read for a
    window of clients at a time, so memory stays bounded whatever the practice's size.
    Status rows of clients without any event are looked for last.  The delivery state
    of a request (bounced, failed) comes from the mail relay, not the ledger, and is
    not compared.
    """
    window: list[tuple[str, ReplayedState]] = []
    for item in replay_clients(session, tenant_ref):
        window.append(item)
        if len(window) >= _WINDOW:
            found = _compare_window(session, tenant_ref, window)
            if found is not None:
                return found
            window = []
    if window:
        found = _compare_window(session, tenant_ref, window)
        if found is not None:
            return found
    e = ConsentEvent.__table__.c
    orphan = session.execute(
        select(_S.client_ref, _S.state)
        .where(
            _S.tenant_ref == tenant_ref,
            ~select(e.id)
            .where(and_(e.tenant_ref == _S.tenant_ref, e.client_ref == _S.client_ref))
            .exists(),
        )
        .order_by(_S.client_ref)
        .limit(1)
    ).first()
    if orphan is not None:
        detail = describe_status(str(orphan.client_ref), orphan, None)
        assert detail is not None
        return StatusMismatch(tenant_ref=tenant_ref, client_ref=orphan.client_ref, detail=detail)
    return None
