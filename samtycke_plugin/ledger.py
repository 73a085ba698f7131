"""The ledger: the one place that appends consent events and writes the projection.

:func:`append` takes one or many events of one practice, links them into the
practice's hash chain, stores their evidence and folds them into the projection
(``samtycke_consent_state``, one row per client and purpose), in the caller's
transaction; nothing here commits.  Appends to one practice are serialized by the
chain-head lock (``SELECT … FOR UPDATE`` of the practice row on PostgreSQL; on SQLite
the write transaction, ``BEGIN IMMEDIATE``, holds the database lock); the unique
``(tenant_ref, seq)`` constraint is the backstop.  The projection can always be rebuilt
from the ledger (:func:`rebuild_projection`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from attrs import evolve, frozen
from sqlalchemy import Table, bindparam, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, make_transient_to_detached

from samtycke_plugin.canonical import row_hash
from samtycke_plugin.errors import NotActive
from samtycke_plugin.evidence import clean_user_agent as clean_user_agent
from samtycke_plugin.evidence import evidence_of
from samtycke_plugin.evidence import truncate_ip as truncate_ip
from samtycke_plugin.integrity import replay_clients
from samtycke_plugin.models import ConsentEvent, ConsentRequest, ConsentStateRow, Evidence, Practice
from samtycke_plugin.purposes import DEFAULT_PURPOSE
from samtycke_plugin.rules import EventFacts, Snapshot, State, fold, with_delivery
from samtycke_plugin.signals import note


@frozen(kw_only=True)
class NewEvent:
    """What a caller wants recorded."""

    tenant_ref: str
    client_ref: str
    state: State
    channel: str
    actor: str
    occurred_at: datetime
    method: str | None = None
    text_version_id: int | None = None
    text_major: int | None = None
    text_sha256: str | None = None
    language: str | None = None
    given_at: datetime | None = None
    expires_at: datetime | None = None
    booking_ref: str | None = None
    request_id: int | None = None
    ip_address: str | None = None
    user_agent: str | None = None
    note: str | None = None
    purpose_key: str = DEFAULT_PURPOSE
    #: SHA-256 of the change note the client was shown above the text, if any.
    change_note_sha256: str | None = None
    #: SHA-256 of the scan or photo of the signed paper form, if one was attached.
    attachment_sha256: str | None = None


def snapshot_of(row: ConsentStateRow | Any | None) -> Snapshot | None:
    """The projection row as a pure value."""
    if row is None:
        return None
    return Snapshot(
        state=State(row.state),
        text_major=row.text_major,
        expires_at=row.expires_at,
        since=row.since,
        delivery=row.delivery,
    )


_E = cast(Table, ConsentEvent.__table__)
_EV = cast(Table, Evidence.__table__)
_P = cast(Table, Practice.__table__).c
_ST = cast(Table, ConsentStateRow.__table__)
_S = _ST.c
#: Rows per ``IN (…)`` list, well under every backend's bind-parameter limit.
_IN_CHUNK = 900
_SNAPSHOT_COLUMNS = (_S.client_ref, _S.state, _S.text_major, _S.expires_at, _S.since,
                     _S.delivery)
#: A client's projection row is keyed by client and purpose.
Key = tuple[str, str]
_STATE_COLUMNS = ("state", "text_major", "expires_at", "since", "last_seq", "delivery")

#: Lock the practice row (the chain head) and read the head.  On PostgreSQL ``FOR
#: UPDATE`` holds the row until commit and returns it as the previous holder committed
#: it; on SQLite the write transaction (``BEGIN IMMEDIATE``) holds the database lock.
_LOCK_HEAD = (
    select(_P.head_seq, _P.head_hash).where(_P.tenant_ref == bindparam("tenant")).with_for_update()
)
_INSERT_EVENT = insert(_E).returning(_E.c.id)
_INSERT_EVENTS = insert(_E)
_EVENT_IDS = select(_E.c.seq, _E.c.id).where(
    _E.c.tenant_ref == bindparam("tenant"), _E.c.seq.between(bindparam("first"), bindparam("last"))
)
_INSERT_EVIDENCE = insert(_EV)


def _upsert_statement(dialect: str) -> Any:
    ins: Any = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(_ST)
    return ins.on_conflict_do_update(
        index_elements=["tenant_ref", "client_ref", "purpose_key"],
        set_={k: ins.excluded[k] for k in _STATE_COLUMNS},
    )


_UPSERT_STATE = {name: _upsert_statement(name) for name in ("postgresql", "sqlite")}


def load_snapshot(
    session: Session, tenant_ref: str, client_ref: str, purpose: str = DEFAULT_PURPOSE
) -> Snapshot | None:
    """One client's projection for a purpose, as a pure value (``None``: nothing
    recorded yet)."""
    return load_snapshots(session, tenant_ref, [client_ref], purpose).get(client_ref)


def load_snapshots(
    session: Session, tenant_ref: str, client_refs: Sequence[str], purpose: str = DEFAULT_PURPOSE
) -> dict[str, Snapshot]:
    """The projections of several clients of one practice for a purpose (absent: nothing
    recorded)."""
    found: dict[str, Snapshot] = {}
    refs = list(dict.fromkeys(client_refs))
    for start in range(0, len(refs), _IN_CHUNK):
        # The purpose is picked here, not in SQL: "tenant and purpose" would let a planner
        # without statistics prefer the validity index to the primary key for the list.
        for row in session.execute(
            select(*_SNAPSHOT_COLUMNS, _S.purpose_key).where(
                _S.tenant_ref == tenant_ref, _S.client_ref.in_(refs[start : start + _IN_CHUNK])
            )
        ):
            if row.purpose_key != purpose:
                continue
            snap = snapshot_of(row)
            assert snap is not None
            found[row.client_ref] = snap
    return found


def lock_practice(session: Session, tenant_ref: str) -> Practice | None:
    """Serialize a read-decide-append unit of work with every other writer of the
    practice, and return the practice as the previous writer committed it.

    Call it first in any unit that reads the ledger or projection to decide what to
    append (is consent already valid? is the text shown still current?).  On
    PostgreSQL it is ``SELECT … FOR UPDATE`` of the practice row (the chain head), held
    until commit, so a concurrent writer cannot slip in between the decision and the
    append (two simultaneous submits would otherwise both see "no consent yet" and
    both record one).  On SQLite the write transaction (``BEGIN IMMEDIATE``) already
    holds the database lock and ``FOR UPDATE`` renders nothing.  The practice object
    in the session is refreshed from the locked row.
    """
    return session.scalars(
        select(Practice)
        .where(Practice.tenant_ref == tenant_ref)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()


@frozen
class Head:
    """A practice's chain head as read under its lock (:func:`lock_head`)."""

    seq: int
    hash: str


def lock_head(session: Session, tenant_ref: str) -> Head | None:
    """Take the practice's chain-head lock as :func:`lock_practice` does, without loading
    the practice, and return the head (``None``: no such practice).  A statement of its
    own, so that reads after it see what the previous holder of the lock committed."""
    row = session.execute(_LOCK_HEAD, {"tenant": tenant_ref}).one_or_none()
    return None if row is None else Head(int(row.head_seq), str(row.head_hash))


def _chained_fields(new: NewEvent, seq: int, evidence_sha256: str | None) -> dict[str, Any]:
    """The columns the hash chain covers (``chain.CHAINED_FIELDS``), for one new event."""
    return {
        "tenant_ref": new.tenant_ref,
        "seq": seq,
        "client_ref": new.client_ref,
        "state": new.state.value,
        "text_version_id": new.text_version_id,
        "text_major": new.text_major,
        "text_sha256": new.text_sha256,
        "language": new.language,
        "channel": new.channel,
        "method": new.method,
        "actor": new.actor,
        "given_at": new.given_at,
        "occurred_at": new.occurred_at,
        "expires_at": new.expires_at,
        "booking_ref": new.booking_ref,
        "request_id": new.request_id,
        "evidence_sha256": evidence_sha256,
        "purpose_key": new.purpose_key,
        "change_note_sha256": new.change_note_sha256,
        "attachment_sha256": new.attachment_sha256,
    }


def append(
    session: Session,
    events: Sequence[NewEvent],
    *,
    previous: Mapping[str, Snapshot | None] | Mapping[Key, Snapshot | None] | None = None,
    head: Head | None = None,
) -> list[ConsentEvent]:
    """Append events of one practice, in order: chain links, evidence, projection.

    The only function that writes ledger events; the projection is written by
    :func:`_write_projection` alone (called here, by :func:`note_delivery` and by
    :func:`rebuild_projection`).
    Takes the practice's chain-head lock, so it is safe beside every other writer;
    ``previous`` holds the projections the caller already read in this transaction
    after taking the lock (:func:`lock_practice`), by ``(client, purpose)`` or by client
    for the default purpose, which are then not read again; ``head`` is the head the
    caller read with :func:`lock_head` in this transaction (a head that moved since is
    refused).  Returns the new events as
    detached rows.  Nothing here commits.
    """
    if not events:
        return []
    tenant = events[0].tenant_ref
    if any(e.tenant_ref != tenant for e in events):
        raise ValueError("append: every event must belong to the same practice")
    head = head or lock_head(session, tenant)
    if head is None:
        raise NotActive(f"Samtycke has not been activated for practice {tenant!r}.")
    first_seq, prev = head.seq + 1, head.hash

    rows: list[dict[str, Any]] = []
    evidence: list[dict[str, Any] | None] = []
    for i, new in enumerate(events):
        evd = evidence_of(new.tenant_ref, new.client_ref, new.ip_address, new.user_agent,
                          new.note)
        evidence.append(evd)
        fields = _chained_fields(new, first_seq + i, evd["sha256"] if evd else None)
        digest = row_hash(prev, fields)
        rows.append({**fields, "prev_hash": prev, "row_hash": digest})
        prev = digest
    last_seq = first_seq + len(events) - 1
    if len(rows) == 1:
        ids = [int(session.execute(_INSERT_EVENT, rows[0]).scalar_one())]
    else:
        # executemany without RETURNING (SQLite would then insert row by row), and the
        # ids back by the chain's own key (tenant_ref, seq)
        session.execute(_INSERT_EVENTS, rows)
        by_seq = {
            int(seq): int(id_) for seq, id_ in session.execute(
                _EVENT_IDS, {"tenant": tenant, "first": first_seq, "last": last_seq})
        }
        ids = [by_seq[first_seq + i] for i in range(len(rows))]
    evidence_rows = [
        {"event_id": ids[i], **{k: v for k, v in evd.items() if k != "sha256"}}
        for i, evd in enumerate(evidence) if evd is not None
    ]
    if evidence_rows:
        session.execute(_INSERT_EVIDENCE, evidence_rows)
    # Move the head from the seq read under the lock (the condition is the backstop
    # should anything have moved it meanwhile).  An ORM update, so that a practice the
    # host holds in its session shows the new head without a reload.
    moved = session.execute(
        update(Practice)
        .where(Practice.tenant_ref == tenant, Practice.head_seq == first_seq - 1)
        .values(head_seq=last_seq, head_hash=prev, updated_at=events[-1].occurred_at)
        .execution_options(synchronize_session="fetch")
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        raise RuntimeError(
            f"the chain head of practice {tenant!r} moved after it was read: append(head=…) "
            "needs the head read with lock_head in this transaction"
        )

    current = {_key(ref): snap for ref, snap in (previous or {}).items()}
    unread: dict[str, list[str]] = {}
    for e in events:
        if (e.client_ref, e.purpose_key) not in current:
            unread.setdefault(e.purpose_key, []).append(e.client_ref)
    for purpose, refs in unread.items():
        found = load_snapshots(session, tenant, refs, purpose)
        current.update({(ref, purpose): found.get(ref) for ref in refs})
    changed: dict[Key, tuple[Snapshot, int]] = {}
    for i, new in enumerate(events):
        key = (new.client_ref, new.purpose_key)
        before = current[key]
        snap = fold(before, EventFacts(state=new.state, text_major=new.text_major,
                                       expires_at=new.expires_at, occurred_at=new.occurred_at))
        if snap is not before:
            current[key] = snap
            changed[key] = (snap, first_seq + i)
    _write_projection(session, tenant, changed)
    return [_detached_event(event_id, row) for event_id, row in zip(ids, rows, strict=True)]


def _key(ref: str | Key) -> Key:
    return (ref, DEFAULT_PURPOSE) if isinstance(ref, str) else ref


def _write_projection(
    session: Session,
    tenant_ref: str,
    changed: Mapping[Key, tuple[Snapshot, int]],
    *,
    clear: bool = False,
) -> None:
    """The one writer of the projection: upsert rows ``{(client, purpose): (snapshot,
    seq of the event it reflects)}``; with ``clear``, first delete every row of the
    practice (a rebuild)."""
    if clear:
        session.execute(delete(_ST).where(_S.tenant_ref == tenant_ref))
    if not changed:
        return
    note(session, tenant_ref, changed)
    session.execute(
        _UPSERT_STATE[session.get_bind().dialect.name],
        [
            {"tenant_ref": tenant_ref, "client_ref": client, "purpose_key": purpose,
             "state": snap.state.value, "text_major": snap.text_major,
             "expires_at": snap.expires_at, "since": snap.since, "last_seq": seq,
             "delivery": snap.delivery}
            for (client, purpose), (snap, seq) in changed.items()
        ],
    )


_DELIVERY_FACTS = select(*_SNAPSHOT_COLUMNS, _S.last_seq).where(
    _S.tenant_ref == bindparam("tenant"), _S.client_ref == bindparam("client"),
    _S.purpose_key == bindparam("purpose"),
)
_REQUEST_OPEN = select(ConsentRequest.id).where(
    ConsentRequest.id == bindparam("request"), ConsentRequest.tenant_ref == bindparam("tenant"),
    ConsentRequest.used_at.is_(None), ConsentRequest.revoked_at.is_(None),
)


def note_delivery(
    session: Session, tenant_ref: str, client_ref: str, request_id: int, outcome: str,
    *, purpose: str = DEFAULT_PURPOSE,
) -> bool:
    """Show how the mail of a request fared on the client's status (``bounced`` →
    "Address rejected"), through the projection's one writer, under the chain-head lock.

    The ledger keeps no event for it (it is mail status, not a consent state); whether
    it shows is decided by :func:`~samtycke_plugin.rules.with_delivery`.  Returns
    whether the status changed.  Nothing here commits."""
    if lock_head(session, tenant_ref) is None:
        return False
    row = session.execute(
        _DELIVERY_FACTS, {"tenant": tenant_ref, "client": client_ref, "purpose": purpose}
    ).first()
    opened = session.execute(_REQUEST_OPEN, {"request": request_id, "tenant": tenant_ref}).first()
    before = snapshot_of(row)
    after = with_delivery(before, outcome, request_open=opened is not None)
    if row is None or after is None or after == before:
        return False
    _write_projection(session, tenant_ref, {(client_ref, purpose): (after, int(row.last_seq))})
    return True


def _detached_event(event_id: int, row: dict[str, Any]) -> ConsentEvent:
    # The inserted row as a detached ORM object, without a flush or a reload.  It is
    # deliberately not added to the session: an object attached that way is not part
    # of the transaction, so a rollback would leave it in the identity map for a row
    # that no longer exists, and a retry in the same session (SQLite reuses the id)
    # would fail with "another instance with key ... is already present".
    event = ConsentEvent(id=event_id, **row)
    make_transient_to_detached(event)
    return event


def replay(
    session: Session, tenant_ref: str, purpose: str = DEFAULT_PURPOSE
) -> dict[str, Snapshot]:
    """The projection of one purpose, client by client, recomputed from the ledger alone
    (delivery status aside)."""
    result: dict[str, Snapshot] = {}
    rows = session.execute(
        select(
            ConsentEvent.client_ref,
            ConsentEvent.state,
            ConsentEvent.text_major,
            ConsentEvent.expires_at,
            ConsentEvent.occurred_at,
        )
        .where(ConsentEvent.tenant_ref == tenant_ref, ConsentEvent.purpose_key == purpose)
        .order_by(ConsentEvent.seq)
        .execution_options(yield_per=5000)
    )
    for client_ref, state, major, expires, occurred in rows:
        result[client_ref] = fold(
            result.get(client_ref),
            EventFacts(
                state=State(state), text_major=major, expires_at=expires, occurred_at=occurred
            ),
        )
    return result


def projection(
    session: Session, tenant_ref: str, purpose: str = DEFAULT_PURPOSE
) -> dict[str, Snapshot]:
    """The stored projection of one purpose (delivery status left out, for comparison
    with :func:`replay`)."""
    out: dict[str, Snapshot] = {}
    for row in session.scalars(
        select(ConsentStateRow).where(
            ConsentStateRow.tenant_ref == tenant_ref, ConsentStateRow.purpose_key == purpose
        )
    ):
        out[row.client_ref] = Snapshot(
            state=State(row.state), text_major=row.text_major, expires_at=row.expires_at,
            since=row.since, delivery=None,
        )
    return out


def rebuild_projection(session: Session, tenant_ref: str) -> int:
    """Rewrite the stored status (projection) of one practice from its ledger; returns
    the row count (one per client and purpose).  Streamed, client by client; each row
    records the event it comes
    from (``last_seq``) as the write path does.  The delivery state of a pending request
    (bounced, failed), which only the mail relay knows, is kept."""
    delivery: dict[Key, str] = {
        (client, purpose): value
        for client, purpose, value in session.execute(
            select(_S.client_ref, _S.purpose_key, _S.delivery).where(
                _S.tenant_ref == tenant_ref, _S.delivery.is_not(None)
            )
        )
    }
    _write_projection(session, tenant_ref, {}, clear=True)
    count = 0
    batch: dict[Key, tuple[Snapshot, int]] = {}
    for key, replayed in replay_clients(session, tenant_ref):
        batch[key] = (evolve(replayed.snapshot, delivery=delivery.get(key)), replayed.last_seq)
        if len(batch) >= _IN_CHUNK:
            _write_projection(session, tenant_ref, batch)
            count += len(batch)
            batch = {}
    _write_projection(session, tenant_ref, batch)
    return count + len(batch)
