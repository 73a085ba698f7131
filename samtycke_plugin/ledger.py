"""Appending to the ledger: one event, its chain link and the projection, in the
caller's transaction.  Nothing here commits.

Appends to one practice are serialized by the conditional chain-head update
(``UPDATE samtycke_practice SET head_seq = head_seq + 1 … RETURNING``): on
PostgreSQL it row-locks the practice until commit, on SQLite the write
transaction (``BEGIN IMMEDIATE``) already holds the database lock.  The unique
``(tenant_ref, seq)`` constraint is the backstop.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from attrs import frozen
from sqlalchemy import Connection, Table, bindparam, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from samtycke_plugin.chain import CHAINED_FIELDS, evidence_hash, row_hash
from samtycke_plugin.errors import NotActive
from samtycke_plugin.integrity import replay_clients
from samtycke_plugin.models import ConsentEvent, ConsentStateRow, Evidence, Practice
from samtycke_plugin.prepared import Prepared, PreparedSelect, PreparedWrite, run_together
from samtycke_plugin.rules import EventFacts, Snapshot, State, fold


def truncate_ip(ip: str | None) -> str | None:
    """Keep only the network part: /24 for IPv4, /48 for IPv6 (data minimisation)."""
    if not ip or not isinstance(ip, str):
        return None
    ip = ip.strip()
    if (plain := _IPV4.fullmatch(ip)) is not None:  # the common case, without ipaddress
        octets = plain.groups()
        if all(len(o) == 1 or (o[0] != "0" and int(o) <= 255) for o in octets):
            return f"{octets[0]}.{octets[1]}.{octets[2]}.0/24"
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv4Address):  # the common case, without ip_network()
        return f"{ipaddress.IPv4Address(int(addr) & 0xFFFFFF00)}/24"
    return str(ipaddress.ip_network(f"{addr}/48", strict=False))


def clean_user_agent(value: str | None) -> str | None:
    """The user agent as evidence: control characters (NUL included, which PostgreSQL
    refuses) dropped, unencodable lone surrogates replaced, at most 512 characters."""
    if not value or not isinstance(value, str):
        return None
    kept = _SURROGATE.sub("\ufffd", _CONTROL.sub("", value))
    return kept[:512] or None


_CONTROL = re.compile("[\x00-\x1f\x7f]")
#: Dotted-quad IPv4 (ASCII digits); leading zeros and octets over 255 go to ``ipaddress``.
_IPV4 = re.compile(r"([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})")
_SURROGATE = re.compile("[\ud800-\udfff]")


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


#: The states by their stored value (a dict lookup; ``State(value)`` costs ten times
#: as much, and is kept for what is not found here: it raises with the value).
_STATES = {state.value: state for state in State}


def snapshot_of(row: ConsentStateRow | Any | None) -> Snapshot | None:
    """The projection row as a pure value."""
    if row is None:
        return None
    return Snapshot(
        state=_STATES.get(row.state) or State(row.state),
        text_major=row.text_major,
        expires_at=row.expires_at,
        since=row.since,
        delivery=row.delivery,
    )


# Statements of the write path, built once (compiled once per dialect by SQLAlchemy's
# statement cache; rebuilding them on every append cost more than executing them).
_E = cast(Table, ConsentEvent.__table__)
_PT = cast(Table, Practice.__table__)
_P = _PT.c
_ST = cast(Table, ConsentStateRow.__table__)
_S = _ST.c
_LOAD_SNAPSHOT = select(_S.state, _S.text_major, _S.expires_at, _S.since, _S.delivery).where(
    _S.tenant_ref == bindparam("tenant_ref"), _S.client_ref == bindparam("client_ref")
)
_ADVANCE_HEAD = PreparedWrite(
    update(_PT)
    .where(_P.tenant_ref == bindparam("tenant"))
    .values(head_seq=_P.head_seq + 1, updated_at=bindparam("now"))
    .returning(_P.head_seq, _P.head_hash),
    returning=(_P.head_seq, _P.head_hash),
)
_SET_HEAD_HASH = PreparedWrite(
    update(_PT)
    .where(_P.tenant_ref == bindparam("tenant"))
    .values(head_hash=bindparam("digest"))
)
_EVENT_KEYS = (*CHAINED_FIELDS, "prev_hash", "row_hash")
_INSERT_EVENT = PreparedWrite(
    insert(_E).returning(_E.c.id), column_keys=_EVENT_KEYS, returning=(_E.c.id,)
)
_EVIDENCE_KEYS = ("event_id", "tenant_ref", "client_ref", "salt", "ip_prefix", "user_agent",
                  "note")
_INSERT_EVIDENCE = PreparedWrite(
    insert(cast(Table, Evidence.__table__)), column_keys=_EVIDENCE_KEYS
)
_EVIDENCE_DATA = ("tenant_ref", "client_ref", "salt", "ip_prefix", "user_agent", "note")
_EVIDENCE_COLUMNS = cast(Table, Evidence.__table__).c
#: The evidence of the event just inserted at ``seq`` (sent with it, before its id is known).
_INSERT_EVIDENCE_AT_SEQ = PreparedWrite(
    insert(cast(Table, Evidence.__table__)).from_select(
        ["event_id", *_EVIDENCE_DATA],
        select(
            _E.c.id,
            *(bindparam(k, type_=_EVIDENCE_COLUMNS[k].type) for k in _EVIDENCE_DATA),
        ).where(_E.c.tenant_ref == bindparam("tenant_ref"), _E.c.seq == bindparam("seq")),
    )
)
_STATE_COLUMNS = ("state", "text_major", "expires_at", "since", "last_seq", "delivery")


def _upsert_statement(dialect: str) -> Any:
    ins: Any = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(
        cast(Table, ConsentStateRow.__table__)
    )
    return ins.on_conflict_do_update(
        index_elements=["tenant_ref", "client_ref"],
        set_={k: ins.excluded[k] for k in _STATE_COLUMNS},
    )


_UPSERT_STATE = PreparedWrite(
    {name: _upsert_statement(name) for name in ("postgresql", "sqlite")},
    column_keys=("tenant_ref", "client_ref", *_STATE_COLUMNS),
)


def load_snapshot(session: Session, tenant_ref: str, client_ref: str) -> Snapshot | None:
    row = session.execute(
        _LOAD_SNAPSHOT, {"tenant_ref": tenant_ref, "client_ref": client_ref}
    ).one_or_none()
    return snapshot_of(row)


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


def _state_values(
    tenant_ref: str, client_ref: str, snap: Snapshot, seq: int
) -> dict[str, Any]:
    return {
        "tenant_ref": tenant_ref,
        "client_ref": client_ref,
        "state": snap.state.value,
        "text_major": snap.text_major,
        "expires_at": snap.expires_at,
        "since": snap.since,
        "last_seq": seq,
        "delivery": snap.delivery,
    }


def _upsert_state(
    session: Session | Connection, tenant_ref: str, client_ref: str, snap: Snapshot, seq: int
) -> None:
    _UPSERT_STATE.execute(session, _state_values(tenant_ref, client_ref, snap, seq))


def _sync_head(session: Session, tenant_ref: str, seq: int, digest: str, now: datetime) -> None:
    """Keep a practice loaded in the session in step with the chain head just written."""
    # The identity key as ``Session.identity_key(Practice, tenant_ref)`` returns it
    # (class, primary key, no token), built directly: that call resolves the mapper
    # each time, ten times the cost of the lookup.
    practice = session.identity_map.get((Practice, (tenant_ref,), None))
    if practice is not None:
        set_committed_value(practice, "head_seq", seq)
        set_committed_value(practice, "head_hash", digest)
        set_committed_value(practice, "updated_at", now)



def _evidence_of(new: NewEvent) -> dict[str, Any] | None:
    """The event's personal evidence, minimised, with a fresh salt and its salted hash
    (the only part of it the chain covers), or ``None`` when there is none."""
    ip_prefix = truncate_ip(new.ip_address)
    user_agent = clean_user_agent(new.user_agent)
    if not (ip_prefix or user_agent or new.note):
        return None
    salt = secrets.token_hex(16)
    return {
        "salt": salt,
        "ip_prefix": ip_prefix,
        "user_agent": user_agent,
        "sha256": evidence_hash(salt, ip_prefix, user_agent, new.note),
    }


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
    }


class _Unread:
    """Marks a projection the caller has not read."""


UNREAD = _Unread()


#: Further writes that belong with a new event, given its sequence number.
WithEvent = Callable[[int], Sequence[tuple[Prepared, Mapping[str, Any]]]]


@frozen
class Head:
    """A practice's chain head as read under its lock (:data:`LOCK_HEAD`)."""

    seq: int
    hash: str


#: Lock the practice row (the chain head) and read the head: PostgreSQL ``FOR UPDATE``
#: returns the locked row as the previous holder committed it; on SQLite ``BEGIN
#: IMMEDIATE`` holds the database lock already.  A statement of its own, so that the
#: reads after it see what the previous holder of the lock committed.
LOCK_HEAD = PreparedSelect(
    select(_P.head_seq, _P.head_hash)
    .where(_P.tenant_ref == bindparam("tenant"))
    .with_for_update()
)
#: Move the head from the seq read under the lock to the next one (one statement; the
#: condition is the backstop should a caller not hold the lock).
_MOVE_HEAD = PreparedWrite(
    update(_PT)
    .where(_P.tenant_ref == bindparam("tenant"), _P.head_seq == bindparam("prev_seq"))
    .values(head_seq=bindparam("seq"), head_hash=bindparam("digest"),
            updated_at=bindparam("now"))
)


def append(
    session: Session,
    new: NewEvent,
    *,
    previous: Snapshot | _Unread | None = UNREAD,
    head: Head | None = None,
    also: WithEvent | None = None,
) -> ConsentEvent:
    """Append one event: chain link, optional evidence, projection. Returns the event.

    ``previous`` is the client's projection if the caller already read it in this
    transaction, after taking the practice's lock (it is then not read again).
    ``head`` is the chain head the caller read with :data:`LOCK_HEAD` in this
    transaction (the writes then go together, and the head moves with one statement).
    ``also(seq)`` gives further writes that belong with the event at ``seq`` (they are
    sent with the event's own writes).
    """
    conn = session.connection()
    if head is not None:
        return _detached_event(*record_at_head(session, new, previous, head, also))
    moved = _ADVANCE_HEAD.returning_one(conn, {"tenant": new.tenant_ref, "now": new.occurred_at})
    if moved is None:
        raise NotActive(f"Samtycke has not been activated for practice {new.tenant_ref!r}.")
    seq, prev = int(moved[0]), str(moved[1])
    evd = _evidence_of(new)
    fields = _chained_fields(new, seq, evd["sha256"] if evd else None)
    digest = row_hash(prev, fields)
    row = {**fields, "prev_hash": prev, "row_hash": digest}
    event_id = int(_INSERT_EVENT.returning_one(conn, row)[0])
    if evd is not None:
        _INSERT_EVIDENCE.execute(conn, {"event_id": event_id, **_evidence_row(new, evd)})
    _SET_HEAD_HASH.execute(conn, {"tenant": new.tenant_ref, "digest": digest})
    _sync_head(session, new.tenant_ref, seq, digest, new.occurred_at)
    if isinstance(previous, _Unread):
        previous = load_snapshot(session, new.tenant_ref, new.client_ref)
    snap = _folded(previous, new)
    if snap is not previous:
        _upsert_state(conn, new.tenant_ref, new.client_ref, snap, seq)
    if also is not None:
        run_together(conn, also(seq))
    return _detached_event(event_id, row)


def record_at_head(
    session: Session, new: NewEvent, previous: Snapshot | _Unread | None, head: Head,
    also: WithEvent | None = None,
) -> tuple[int, dict[str, Any]]:
    """:func:`append` with the head read under the lock (:data:`LOCK_HEAD`), returning
    the new event's id and columns rather than an ORM object (the booking path needs
    neither the object nor its cost).  The writes go together (PostgreSQL: one round
    trip, see :func:`samtycke_plugin.prepared.run_together`)."""
    conn = session.connection()
    if isinstance(previous, _Unread):
        previous = load_snapshot(session, new.tenant_ref, new.client_ref)
    seq, prev = head.seq + 1, head.hash
    evd = _evidence_of(new)
    fields = _chained_fields(new, seq, evd["sha256"] if evd else None)
    digest = row_hash(prev, fields)
    row = {**fields, "prev_hash": prev, "row_hash": digest}
    steps: list[tuple[Any, Mapping[str, Any]]] = [(_INSERT_EVENT, row)]
    if evd is not None:  # the event's id is not known yet: found by its (tenant, seq)
        steps.append((_INSERT_EVIDENCE_AT_SEQ, {"seq": seq, **_evidence_row(new, evd)}))
    steps.append((_MOVE_HEAD, {"tenant": new.tenant_ref, "prev_seq": head.seq, "seq": seq,
                               "digest": digest, "now": new.occurred_at}))
    snap = _folded(previous, new)
    if snap is not previous:
        steps.append((_UPSERT_STATE, _state_values(new.tenant_ref, new.client_ref, snap, seq)))
    if also is not None:
        steps.extend(also(seq))
    results = run_together(conn, steps)
    moved = results[2 if evd is not None else 1][1]
    if moved != 1:
        raise RuntimeError(
            f"the chain head of practice {new.tenant_ref!r} moved after it was read: "
            "append(head=...) needs the practice locked with LOCK_HEAD in this transaction"
        )
    _sync_head(session, new.tenant_ref, seq, digest, new.occurred_at)
    return int(results[0][0][0]), row


def _folded(previous: Snapshot | None, new: NewEvent) -> Snapshot:
    return fold(
        previous,
        EventFacts(state=new.state, text_major=new.text_major, expires_at=new.expires_at,
                   occurred_at=new.occurred_at),
    )


def _evidence_row(new: NewEvent, evd: dict[str, Any]) -> dict[str, Any]:
    return {
        "tenant_ref": new.tenant_ref,
        "client_ref": new.client_ref,
        "salt": evd["salt"],
        "ip_prefix": evd["ip_prefix"],
        "user_agent": evd["user_agent"],
        "note": new.note,
    }


def _detached_event(event_id: int, row: dict[str, Any]) -> ConsentEvent:
    # The inserted row as a detached ORM object, without a flush or a reload.  It is
    # deliberately not added to the session: an object attached that way is not part
    # of the transaction, so a rollback would leave it in the identity map for a row
    # that no longer exists, and a retry in the same session (SQLite reuses the id)
    # would fail with "another instance with key ... is already present".
    event = ConsentEvent(id=event_id, **row)
    make_transient_to_detached(event)
    return event


#: Rows per statement in :func:`append_many` lookups (well under every backend's bind limit).
_IN_CHUNK = 900
_EVENTS: Any = ConsentEvent.__table__
_INSERT_EVENT_ROWS = PreparedWrite(insert(_E), column_keys=_EVENT_KEYS)
_EVENT_IDS = select(_E.c.seq, _E.c.id).where(
    _E.c.tenant_ref == bindparam("tenant"), _E.c.seq.between(bindparam("first"), bindparam("last"))
)


def append_many(session: Session, events: Sequence[NewEvent]) -> list[int]:
    """Append several events of one practice, with exactly the chain and projection
    semantics of calling :func:`append` for each in order, but with one chain-head
    advance (``head_seq + n``) and ``executemany`` inserts.  Nothing here commits.

    For batch work (e-mail requests to thousands of clients).  Returns the new event
    ids in the order given.  All events must belong to the same practice.
    """
    if not events:
        return []
    tenant = events[0].tenant_ref
    if any(e.tenant_ref != tenant for e in events):
        raise ValueError("append_many: every event must belong to the same practice")
    n = len(events)
    head = session.execute(
        update(Practice)
        .where(Practice.tenant_ref == tenant)
        .values(head_seq=Practice.head_seq + n, updated_at=events[-1].occurred_at)
        .returning(Practice.head_seq, Practice.head_hash)
    ).one_or_none()
    if head is None:
        raise NotActive(f"Samtycke has not been activated for practice {tenant!r}.")
    first_seq, prev = int(head[0]) - n + 1, str(head[1])

    rows: list[dict[str, Any]] = []
    evidence: dict[int, dict[str, Any]] = {}
    for i, new in enumerate(events):
        evd = _evidence_of(new)
        if evd:
            evidence[i] = {
                "tenant_ref": tenant, "client_ref": new.client_ref, "salt": evd["salt"],
                "ip_prefix": evd["ip_prefix"], "user_agent": evd["user_agent"],
                "note": new.note,
            }
        fields = _chained_fields(new, first_seq + i, evd["sha256"] if evd else None)
        digest = row_hash(prev, fields)
        rows.append({**fields, "prev_hash": prev, "row_hash": digest})
        prev = digest

    conn = session.connection()
    # executemany without RETURNING (SQLite would run a RETURNING insert row by row),
    # then the ids back by the chain's own key (tenant_ref, seq).
    _INSERT_EVENT_ROWS.executemany(conn, rows)
    by_seq = {
        int(seq): int(id_)
        for seq, id_ in conn.execute(
            _EVENT_IDS, {"tenant": tenant, "first": first_seq, "last": first_seq + n - 1}
        )
    }
    ids = [int(by_seq[first_seq + i]) for i in range(n)]
    if evidence:
        _INSERT_EVIDENCE.executemany(
            conn, [{"event_id": ids[i], **values} for i, values in evidence.items()]
        )
    _SET_HEAD_HASH.execute(conn, {"tenant": tenant, "digest": prev})

    clients = list(dict.fromkeys(e.client_ref for e in events))
    current: dict[str, Snapshot | None] = {}
    for start in range(0, len(clients), _IN_CHUNK):
        part = clients[start : start + _IN_CHUNK]
        for row in session.execute(
            select(
                ConsentStateRow.client_ref,
                ConsentStateRow.state,
                ConsentStateRow.text_major,
                ConsentStateRow.expires_at,
                ConsentStateRow.since,
                ConsentStateRow.delivery,
            ).where(ConsentStateRow.tenant_ref == tenant, ConsentStateRow.client_ref.in_(part))
        ):
            current[row.client_ref] = snapshot_of(row)
    changed: dict[str, tuple[Snapshot, int]] = {}
    for i, new in enumerate(events):
        previous = current.get(new.client_ref)
        snap = fold(
            previous,
            EventFacts(
                state=new.state, text_major=new.text_major, expires_at=new.expires_at,
                occurred_at=new.occurred_at,
            ),
        )
        if snap is not previous:
            current[new.client_ref] = snap
            changed[new.client_ref] = (snap, first_seq + i)
    if changed:
        _UPSERT_STATE.executemany(
            conn,
            [
                {
                    "tenant_ref": tenant, "client_ref": client, "state": snap.state.value,
                    "text_major": snap.text_major, "expires_at": snap.expires_at,
                    "since": snap.since, "last_seq": seq, "delivery": snap.delivery,
                }
                for client, (snap, seq) in changed.items()
            ],
        )
    return ids


def replay(session: Session, tenant_ref: str) -> dict[str, Snapshot]:
    """The projection recomputed from the ledger alone (delivery status aside)."""
    result: dict[str, Snapshot] = {}
    rows = session.execute(
        select(
            ConsentEvent.client_ref,
            ConsentEvent.state,
            ConsentEvent.text_major,
            ConsentEvent.expires_at,
            ConsentEvent.occurred_at,
        )
        .where(ConsentEvent.tenant_ref == tenant_ref)
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


def projection(session: Session, tenant_ref: str) -> dict[str, Snapshot]:
    """The stored projection (delivery status left out, for comparison with :func:`replay`)."""
    out: dict[str, Snapshot] = {}
    for row in session.scalars(
        select(ConsentStateRow).where(ConsentStateRow.tenant_ref == tenant_ref)
    ):
        out[row.client_ref] = Snapshot(
            state=State(row.state), text_major=row.text_major, expires_at=row.expires_at,
            since=row.since, delivery=None,
        )
    return out


def rebuild_projection(session: Session, tenant_ref: str) -> int:
    """Rewrite the stored status (projection) of one practice from its ledger; returns
    the row count.  Streamed, client by client; each row records the event it comes
    from (``last_seq``) as the write path does.  The delivery state of a pending request
    (bounced, failed), which only the mail relay knows, is kept."""
    delivery = dict(
        session.execute(
            select(ConsentStateRow.client_ref, ConsentStateRow.delivery).where(
                ConsentStateRow.tenant_ref == tenant_ref, ConsentStateRow.delivery.is_not(None)
            )
        ).all()  # Result.tuples() is deprecated in SQLAlchemy 2.1 (rows are tuples)
    )
    session.execute(delete(ConsentStateRow).where(ConsentStateRow.tenant_ref == tenant_ref))
    count = 0
    batch: list[dict[str, Any]] = []
    for client_ref, replayed in replay_clients(session, tenant_ref):
        values = _state_values(tenant_ref, client_ref, replayed.snapshot, replayed.last_seq)
        batch.append({**values, "delivery": delivery.get(client_ref)})
        if len(batch) >= _IN_CHUNK:
            session.execute(insert(_ST), batch)
            count += len(batch)
            batch = []
    if batch:
        session.execute(insert(_ST), batch)
        count += len(batch)
    return count
