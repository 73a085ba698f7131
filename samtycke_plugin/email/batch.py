"""The batch request: asking every client without valid consent (or a given set) at
once, in chunks that commit as they go, without asking anyone twice.  Clients who
withdrew or declined are left out, and counted.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from itertools import islice
from typing import TYPE_CHECKING, Any

from attrs import field, frozen
from sqlalchemy import (
    Select,
    String,
    and_,
    any_,
    bindparam,
    cast,
    delete,
    distinct,
    func,
    literal,
    literal_column,
    null,
    or_,
    select,
    text,
    union_all,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from hookspecs.host import ClientQuery
from hookspecs.types import ClientInfo, ClientRef, TenantRef
from samtycke_plugin import common, consent, practices, store
from samtycke_plugin.db import run_in_transaction
from samtycke_plugin.email.addresses import (
    header_safe,
    mail_domain,
    normalise_address,
    practice_name,
)
from samtycke_plugin.email.outbox import (
    _IN_CHUNK,
    _INSERT_ONE_OUTBOX,
    _INSERT_WAITING,
    _OUTBOX,
    _PENDING,
    _REQUESTS,
    _STATE,
    QUEUED,
    _for_dialect,
    _insert_pending,
    _inserted_rows,
    _new_request_values,
    _outbox_values,
    _pending_links,
    _revoke_ids,
    _Texts,
)
from samtycke_plugin.email.tokens import PURPOSE_CONSENT, link_key
from samtycke_plugin.errors import InputError, NotActive
from samtycke_plugin.i18n import lang
from samtycke_plugin.ledger import load_snapshots
from samtycke_plugin.models import (
    KIND_REQUEST,
    WAITING_REQUEST,
    OutboxMessage,
    TextVersion,
)
from samtycke_plugin.rules import State, Status, status

if TYPE_CHECKING:
    from hookspecs.host import Host


log = logging.getLogger("samtycke.requests")


#: Clients per chunk (and per commit) in :func:`request_batch`.
BATCH_CHUNK = 5000


@frozen(kw_only=True)
class BatchResult:
    """What a batch request did."""

    #: Requests queued (one outbox row each; the relay mints the link and records the
    #: ``requested`` event when it sends the mail).
    asked: int
    #: Clients who already have valid consent.
    skipped_valid: int
    #: Clients who already have a pending, unexpired request for the current text, or
    #: one queued by an earlier batch and not sent yet.
    skipped_pending: int
    #: Clients without a usable e-mail address (missing or invalid).
    skipped_no_email: int
    #: Clients whose name cannot go into a mail header (line breaks).
    skipped_bad_name: int = 0
    #: Given client refs the host does not know in this practice.
    skipped_unknown: int = 0
    #: Clients who withdrew their consent: a batch does not ask them again (the
    #: practitioner can still ask one of them from the client's profile).
    skipped_withdrawn: int = 0
    #: Clients who declined to consent: left out as the ones who withdrew.
    skipped_refused: int = 0
    #: The key stored on every request of this run.
    batch_key: str = ""

    @property
    def total(self) -> int:
        return (
            self.asked + self.skipped_valid + self.skipped_pending + self.skipped_no_email
            + self.skipped_bad_name + self.skipped_unknown + self.skipped_withdrawn
            + self.skipped_refused
        )


@frozen(kw_only=True)
class _ChunkCounts:
    asked: int = 0
    valid: int = 0
    pending: int = 0
    no_email: int = 0
    bad_name: int = 0
    withdrawn: int = 0
    refused: int = 0
    #: ``{client: request id}`` of the clients asked.
    links: dict[str, int] = field(factory=dict)
    #: ``{client: why}`` of the clients not asked.
    reasons: dict[str, str] = field(factory=dict)


_WHY_VALID = "not asked: the client has valid consent now"


_WHY_PENDING = "not asked: the client already has a pending request"


_WHY_NO_EMAIL = "not asked: the client has no usable e-mail address"


_WHY_BAD_NAME = "not asked: the client's name cannot go into an e-mail"


_WHY_WITHDRAWN = "not asked: the client withdrew their consent"


_WHY_REFUSED = "not asked: the client declined to consent"


#: The clients' own "no": a batch request or an automatic trigger does not ask them
#: again (only a practitioner's single request from the profile does).
_SAID_NO = {Status.WITHDRAWN: _WHY_WITHDRAWN, Status.REFUSED: _WHY_REFUSED}


_SAID_NO_STATES = (State.WITHDRAWN.value, State.REFUSED.value)


@frozen
class _NotMailable:
    why: str


_NO_EMAIL = _NotMailable(_WHY_NO_EMAIL)


_BAD_NAME = _NotMailable(_WHY_BAD_NAME)


def _mail_address(email: str | None, name: str | None) -> str | _NotMailable:
    """The normalised address of a client a request can be mailed to, or why not: no
    usable address, or a name that cannot go into a header."""
    try:
        address = normalise_address(email)
    except InputError:
        return _NO_EMAIL
    return address if header_safe(name or "") else _BAD_NAME


def _ask_chunk(
    host: Host,
    session: Session,
    tenant: str,
    infos: Sequence[ClientInfo],
    *,
    actor: str,
    batch_key: str | None,
    queue_mail: bool = True,
) -> _ChunkCounts:
    """Ask every client of ``infos`` without valid consent, who has not withdrawn or
    declined, and without a pending request for the current text.  Writes requests,
    ``requested`` events and (``queue_mail``) outbox rows; does not commit."""
    practice = practices.require_practice(session, tenant)
    session.refresh(practice)
    now = common.now_utc(host)
    unique = list({info.ref: info for info in infos}.values())
    snaps = load_snapshots(session, tenant, [str(info.ref) for info in unique])

    valid = pending = 0
    unmailable: Counter[str] = Counter()
    reasons: dict[str, str] = {}
    candidates: list[ClientInfo] = []
    for info in unique:
        current = status(snaps.get(info.ref), practice.current_major, now)
        if current is Status.VALID:
            valid += 1
            reasons[info.ref] = _WHY_VALID
        elif current in _SAID_NO:
            unmailable[_SAID_NO[current]] += 1
            reasons[info.ref] = _SAID_NO[current]
        else:
            candidates.append(info)
    # Pending links: expired ones and ones for an outdated text are replaced, the rest
    # mean "already asked" (checked here in one query so a re-run is cheap; the unique
    # index below still decides under concurrency).
    open_links = _pending_links(session, tenant, [str(i.ref) for i in candidates])
    stale = [
        id_ for id_, (expires_at, major) in open_links.values()
        if expires_at <= now or major is None or major < practice.current_major
    ]
    _revoke_ids(session, tenant, stale, now)
    stale_set = set(stale)
    eligible: list[tuple[ClientInfo, str, str]] = []
    for info in candidates:
        found = open_links.get(info.ref)
        if found is not None and found[0] not in stale_set:
            pending += 1
            reasons[info.ref] = _WHY_PENDING
            continue
        address = _mail_address(info.email, info.name)
        if isinstance(address, _NotMailable):
            unmailable[address.why] += 1
            reasons[info.ref] = address.why
            continue
        eligible.append((info, address, (info.name or "").strip()))
    no_email, bad_name = unmailable[_WHY_NO_EMAIL], unmailable[_WHY_BAD_NAME]
    withdrawn, refused = unmailable[_WHY_WITHDRAWN], unmailable[_WHY_REFUSED]
    if not eligible:
        return _ChunkCounts(valid=valid, pending=pending, no_email=no_email, bad_name=bad_name,
                            withdrawn=withdrawn, refused=refused, reasons=reasons)
    practice_name(host, tenant)

    key = link_key(host)
    texts = _Texts(session, practice)
    expires = now + timedelta(days=practices.settings_of(practice).request_link_days)
    rows = []
    chosen: dict[str, TextVersion] = {}
    for info, _address, _name in eligible:
        version = texts.for_locale(info.locale)
        chosen[info.ref] = version
        rows.append(
            _new_request_values(
                key, tenant=tenant, client=info.ref, purpose=PURPOSE_CONSENT, text=version,
                now=now, expires_at=expires, actor=actor, batch_key=batch_key,
            )
        )
    inserted = _insert_pending(session, rows)
    if inserted:
        asked = [(info, a, n) for info, a, n in eligible if info.ref in inserted]
        consent.request(
            session, tenant,
            [consent.Asked(client=info.ref, text=chosen[info.ref], request_id=inserted[info.ref])
             for info, _a, _n in asked],
            actor=actor, now=now,
        )
        if queue_mail:
            domain = mail_domain(host, tenant)
            session.execute(
                _INSERT_ONE_OUTBOX,
                [
                    _outbox_values(
                        domain, tenant=tenant, client=info.ref, request_id=inserted[info.ref],
                        kind=KIND_REQUEST, to_addr=address, locale=info.locale,
                        payload={"name": name}, now=now,
                    )
                    for info, address, name in asked
                ],
            )
    for info, _a, _n in eligible:
        if info.ref not in inserted:  # a concurrent request got there first
            reasons[info.ref] = _WHY_PENDING
    return _ChunkCounts(
        asked=len(inserted), valid=valid, pending=pending + len(eligible) - len(inserted),
        no_email=no_email, bad_name=bad_name, withdrawn=withdrawn, refused=refused,
        links=dict(inserted), reasons=reasons,
    )


def _one_of(column: Any, dialect: str) -> Any:
    """``column`` is one of the strings of the ``refs`` parameter: one bound array
    (PostgreSQL) or JSON text (SQLite), so a chunk's query is compiled once however
    many clients it names."""
    if dialect == "postgresql":
        return column == any_(bindparam("refs", type_=postgresql.ARRAY(String())))
    values: Any = select(literal_column("value")).select_from(func.json_each(bindparam("refs")))
    return column.in_(values)


#: Why :func:`_already_settled` leaves a client out, most decisive first.
_SETTLED_ORDER = {"valid": 0, State.WITHDRAWN.value: 1, State.REFUSED.value: 1, "pending": 2}


def _already_settled(
    session: Session, tenant: str, clients: Sequence[str], current_major: int, now: datetime
) -> dict[str, str]:
    """Why each client of ``clients`` that a batch leaves out is left out: ``"valid"``
    (valid consent), ``"withdrawn"`` or ``"refused"`` (the client's own "no"), or
    ``"pending"`` (an unexpired pending link for the current text).  One query.  (A row
    already waiting for its link is found by the insert's ``ON CONFLICT``: a query on
    the outbox, which grows during the batch, would be planned on stale statistics.)"""
    if not clients:
        return {}
    dialect = session.get_bind().dialect.name
    query = union_all(
        select(_STATE.c.client_ref, literal("valid").label("why")).where(
            _STATE.c.tenant_ref == tenant, _one_of(_STATE.c.client_ref, dialect),
            store.valid_condition(current_major, now),
        ),
        select(_STATE.c.client_ref, _STATE.c.state).where(
            _STATE.c.tenant_ref == tenant, _one_of(_STATE.c.client_ref, dialect),
            _STATE.c.state.in_(_SAID_NO_STATES),
        ),
        select(_REQUESTS.c.client_ref, literal("pending")).where(
            _REQUESTS.c.tenant_ref == tenant, _one_of(_REQUESTS.c.client_ref, dialect),
            _REQUESTS.c.purpose == PURPOSE_CONSENT, _PENDING,
            _REQUESTS.c.expires_at > now, _REQUESTS.c.text_major == current_major,
        ),
    )
    refs: Any = list(clients) if dialect == "postgresql" else json.dumps(list(clients))
    found: dict[str, str] = {}
    for client, why in session.execute(query, {"refs": refs}):
        known = found.get(client)
        if known is None or _SETTLED_ORDER[why] < _SETTLED_ORDER[known]:
            found[client] = why
    return found


def _queue_chunk(
    host: Host,
    session: Session,
    tenant: str,
    infos: Sequence[ClientInfo],
    *,
    actor: str,
    batch_key: str,
) -> _ChunkCounts:
    """A batch request for the clients of ``infos``: one waiting outbox row for each
    client without valid consent, who has not withdrawn or declined, without a pending
    link for the current text and without a row already waiting, whose address and
    name can go into a mail.  The relay mints the link, records the ``requested`` event
    and fills the row in when it claims it (:func:`complete_requests`).  Does not
    commit."""
    practice = practices.require_practice(session, tenant)
    session.refresh(practice)
    now = common.now_utc(host)
    unique = {str(info.ref): info for info in infos}
    settled = _already_settled(session, tenant, list(unique), practice.current_major, now)
    left_out: Counter[str] = Counter()
    unmailable: Counter[str] = Counter()
    rows: list[dict[str, Any]] = []
    domain: str | None = None
    payload = {"actor": actor[:160], "batch_key": batch_key}  # one object: converted once
    for ref, info in unique.items():
        known = settled.get(ref)
        if known is not None:
            left_out[known] += 1
            continue
        address = _mail_address(info.email, info.name)
        if isinstance(address, _NotMailable):
            unmailable[address.why] += 1
            continue
        if domain is None:
            practice_name(host, tenant)  # a name unusable in mail stops the batch here
            domain = mail_domain(host, tenant)
        rows.append(_outbox_values(
            domain, tenant=tenant, client=ref, request_id=None, kind=KIND_REQUEST,
            to_addr=address, locale=info.locale, payload=payload, now=now,
        ))
    asked = _inserted_rows(session, _for_dialect(session, _INSERT_WAITING), rows)
    return _ChunkCounts(
        asked=asked, valid=left_out["valid"], pending=left_out["pending"] + len(rows) - asked,
        no_email=unmailable[_WHY_NO_EMAIL], bad_name=unmailable[_WHY_BAD_NAME],
        withdrawn=left_out[State.WITHDRAWN.value], refused=left_out[State.REFUSED.value],
    )


def count_clients(host: Host, tenant: str) -> int:
    """The number of clients of the practice: one ``count(*)`` on the host's
    :meth:`~hookspecs.host.ClientQuery.client_query`, else by streaming
    :meth:`~hookspecs.host.Host.iter_clients` (never all loaded at once)."""
    if isinstance(host, ClientQuery):
        return _count_listed(host.session(), host.client_query(TenantRef(tenant)).subquery())
    return sum(1 for _ in host.iter_clients(TenantRef(tenant)))


def _not_among(ref: Any, refs: Select[Any], column: Any, dialect: str) -> Any:
    """``ref`` is not one of the ``column`` values ``refs`` selects (a NOT NULL column).

    SQLite runs ``NOT IN`` on the list built once (a correlated ``NOT EXISTS`` probes an
    index per client, three times slower); PostgreSQL plans ``NOT EXISTS`` as an anti-join
    (its ``NOT IN`` hashes the list only when it fits in ``work_mem`` and otherwise
    rescans it for every client)."""
    if dialect == "postgresql":
        return ~refs.where(column == ref).exists()
    return ref.not_in(refs)


def _queue_everyone(
    host: Host, session: Session, tenant: str, clients: Select[Any], *, actor: str,
    batch_key: str,
) -> tuple[int, _ChunkCounts]:
    """A batch request for every client of ``clients`` (the host's
    :meth:`~hookspecs.host.ClientQuery.client_query`), set-based: the number of clients
    and what was done, decided and counted as :func:`_queue_chunk` does per chunk.

    One ``INSERT … SELECT`` queues a waiting outbox row for each client
    without valid consent, who has not withdrawn or declined, and without a pending
    link for the current text (``ON CONFLICT DO NOTHING`` skips those already
    waiting); the new rows' clients are then read with their addresses and names, and
    the rows that cannot be mailed are deleted again.  The clients already waiting are
    read first, as the streamed batch checks their addresses too.  Counted: the clients
    (each ref once), those who withdrew or declined, those with a pending link, and
    those with valid consent: on SQLite the rest (the unit holds the write lock, so
    nothing changes between the statements), on PostgreSQL by a query of its own (a
    second run at the same moment may take clients between the statements: they count
    as already asked, as in the streamed batch).  Does not commit.
    """
    practice = practices.require_practice(session, tenant)
    session.refresh(practice)
    now = common.now_utc(host)
    major = practice.current_major
    dialect = session.get_bind().dialect.name
    listed = clients.subquery("samtycke_batch_clients")
    ref = listed.c.ref
    valid = select(_STATE.c.client_ref).where(
        _STATE.c.tenant_ref == tenant, store.valid_condition(major, now)
    )
    # Left out before anything else: valid consent, or the client's own "no".
    settled = select(_STATE.c.client_ref).where(
        _STATE.c.tenant_ref == tenant,
        or_(store.valid_condition(major, now), _STATE.c.state.in_(_SAID_NO_STATES)),
    )
    linked = select(_REQUESTS.c.client_ref).where(
        _REQUESTS.c.tenant_ref == tenant, _REQUESTS.c.purpose == PURPOSE_CONSENT, _PENDING,
        _REQUESTS.c.expires_at > now, _REQUESTS.c.text_major == major,
    )
    waiting_rows = and_(_OUTBOX.c.tenant_ref == tenant, text(WAITING_REQUEST))
    unsettled = _not_among(ref, settled, _STATE.c.client_ref, dialect)
    unlinked = _not_among(ref, linked, _REQUESTS.c.client_ref, dialect)
    total = _count_listed(session, listed)
    said_no: Counter[str] = Counter()
    for state, count in session.execute(
        select(_STATE.c.state, func.count()).where(
            _STATE.c.tenant_ref == tenant, _STATE.c.state.in_(_SAID_NO_STATES),
            _STATE.c.client_ref.in_(select(ref).where(ref.is_not(None))),
        ).group_by(_STATE.c.state)
    ):
        said_no[state] = int(count)
    n_said_no = said_no.total()
    n_linked = _count_listed(session, listed, ref.in_(linked), unsettled)
    unmailable: Counter[str] = Counter()
    # The clients waiting in the outbox, with their addresses and names: a semi-join on
    # the host's query, which need not have an index on its ``ref`` (a join could rescan
    # it for every row).
    waiting_clients = select(ref, listed.c.email, listed.c.name).where(
        ref.in_(select(_OUTBOX.c.client_ref).where(waiting_rows))
    )
    # Those already waiting (usually none): not queued again, but an address or name
    # that cannot be mailed counts as such, as in the streamed batch.
    earlier = _mail_checks(session.execute(waiting_clients.where(unsettled, unlinked)))
    unmailable.update(why for why in earlier.values() if why is not None)
    # One Message-ID per row: a stem unique to this run (as message_id()), then the row's
    # number in the run.  The address, language and name are filled in when the relay
    # claims the row (complete_requests), as for a row queued by _queue_chunk.
    stem = f"<samtycke.{time.time_ns():x}.{secrets.token_hex(8)}."
    domain = mail_domain(host, tenant)
    payload = {"actor": actor[:160], "batch_key": batch_key}
    rows = select(
        literal(tenant), ref, null(), literal(KIND_REQUEST),
        literal(stem) + cast(func.row_number().over(), String) + literal(f"@{domain}>"),
        null(), literal(lang(None)), literal(payload, _OUTBOX.c.payload.type), literal(QUEUED),
        literal(0), literal(now, _OUTBOX.c.created_at.type),
        literal(now, _OUTBOX.c.created_at.type),
    ).where(ref.is_not(None), unsettled, unlinked)
    ins: Any = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(_OUTBOX)
    insert_rows = ins.from_select(
        ["tenant_ref", "client_ref", "request_id", "kind", "message_id", "to_addr",
         "locale", "payload", "status", "attempts", "next_attempt_at", "created_at"],
        rows,
    ).on_conflict_do_nothing(
        index_elements=["tenant_ref", "client_ref"], index_where=text(WAITING_REQUEST)
    )
    queued: set[str] | None = None
    before: set[str] = set()
    if dialect == "postgresql":
        # Another run may queue clients at the same moment: ours are the rows returned.
        queued = set(session.scalars(insert_rows.returning(_OUTBOX.c.client_ref)))
    else:
        # The unit holds SQLite's write lock: every row waiting now and not before is
        # ours (RETURNING would make SQLite's insert twice as slow).
        before = set(session.scalars(select(_OUTBOX.c.client_ref).where(waiting_rows)))
        session.execute(insert_rows)
    ours = {
        client: why
        for client, why in _mail_checks(session.execute(waiting_clients)).items()
        if (client in queued if queued is not None else client not in before)
    }
    unmailable.update(why for why in ours.values() if why is not None)
    gone = [client for client, why in ours.items() if why is not None]
    for start in range(0, len(gone), _IN_CHUNK):  # a client has one waiting row: ours
        part = gone[start : start + _IN_CHUNK]
        session.execute(delete(_OUTBOX).where(waiting_rows, _OUTBOX.c.client_ref.in_(part)))
    if len(ours) > len(gone) or None in earlier.values():
        practice_name(host, tenant)  # a name unusable in mail stops the batch here
    asked = len(ours) - len(gone)
    if dialect == "postgresql":
        n_valid = _count_listed(session, listed, ref.in_(valid))
    else:
        n_valid = total - len(ours) - n_linked - len(earlier) - n_said_no
    no_email, bad_name = unmailable[_WHY_NO_EMAIL], unmailable[_WHY_BAD_NAME]
    return total, _ChunkCounts(
        asked=asked, valid=n_valid, no_email=no_email, bad_name=bad_name,
        withdrawn=said_no[State.WITHDRAWN.value], refused=said_no[State.REFUSED.value],
        pending=max(0, total - n_valid - asked - no_email - bad_name - n_said_no),
    )


def _count_listed(session: Session, listed: Any, *where: Any) -> int:
    """How many distinct clients of the host's query (a subquery) meet ``where``."""
    query = select(func.count(distinct(listed.c.ref))).where(listed.c.ref.is_not(None), *where)
    return int(session.scalar(query) or 0)


def _mail_checks(rows: Iterable[Any]) -> dict[str, str | None]:
    """``{client: why it cannot be mailed, or None}`` of (ref, email, name) rows; a ref
    the host's query lists twice is looked at once."""
    out: dict[str, str | None] = {}
    for client, email, name in rows:
        if client not in out:
            address = _mail_address(email, name)
            out[client] = address.why if isinstance(address, _NotMailable) else None
    return out


def _chunk_job(
    host: Host, tenant: str, chunk: Sequence[ClientInfo], *, actor: str, batch_key: str
) -> Callable[[Session], _ChunkCounts]:
    def job(session: Session) -> _ChunkCounts:
        return _queue_chunk(host, session, tenant, chunk, actor=actor, batch_key=batch_key)

    return job


def complete_requests(
    host: Host, session: Session, rows: Sequence[OutboxMessage]
) -> dict[int, str | None]:
    """Give requests queued by a batch (:func:`request_batch`) their links, ``requested``
    events, addresses, names and languages (in the caller's transaction: the relay's
    claim; the rows of one claim are done together, per practice).  The clients are
    looked at again now: one who has given consent, been asked another way, been
    erased or lost a usable address in the meantime is not asked.  Returns
    ``{row id: None}`` for each row made ready to send, ``{row id: why}`` for the others.
    """
    out: dict[int, str | None] = {}
    groups: dict[tuple[str, str, str | None], list[tuple[OutboxMessage, ClientInfo]]] = {}
    for row in rows:
        client = row.client_ref
        info = (
            host.lookup_client(TenantRef(row.tenant_ref), ClientRef(client)) if client else None
        )
        if info is None:
            out[row.id] = "not asked: the client no longer exists in this practice"
            continue
        payload = row.payload if isinstance(row.payload, dict) else {}
        actor, batch_key = payload.get("actor"), payload.get("batch_key")
        key = (
            row.tenant_ref,
            actor if isinstance(actor, str) and actor else "system:batch",
            batch_key if isinstance(batch_key, str) else None,
        )
        groups.setdefault(key, []).append((row, info))
    for (tenant, actor, batch_key), members in groups.items():
        try:
            counts = _ask_chunk(host, session, tenant, [info for _r, info in members],
                                actor=actor, batch_key=batch_key, queue_mail=False)
        except (InputError, NotActive) as exc:
            for row, _info in members:
                out[row.id] = f"not asked: {exc}"
            continue
        for row, info in members:
            request_id = counts.links.get(info.ref)
            if request_id is None:
                out[row.id] = counts.reasons.get(info.ref, _WHY_PENDING)
                continue
            row.request_id = request_id
            row.to_addr = normalise_address(info.email)
            row.locale = lang(info.locale)
            row.payload = {"name": (info.name or "").strip()}
            out[row.id] = None
    session.flush()
    return out


def _chunks(items: Iterable[ClientInfo], size: int) -> Iterator[list[ClientInfo]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def request_batch(
    host: Host,
    tenant: str,
    *,
    actor: str,
    clients: Sequence[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    total: int | None = None,
    chunk_size: int = BATCH_CHUNK,
    batch_key: str | None = None,
) -> BatchResult:
    """E-mail a consent request to every client of the practice without valid consent
    (``clients=None``), or to the given client refs.  Clients who withdrew their consent
    or declined it are left out (counted in the result): a batch never answers a
    client's "no" with another mail; the practitioner can still ask one of them from the
    client's profile (:func:`send_request`).

    When the host implements :class:`~hookspecs.host.ClientQuery`, the whole practice
    is queued in one transaction by a few set-based statements on its query
    (:func:`_queue_everyone`; ``chunk_size`` does not apply, ``progress`` is called
    once).  Otherwise the clients are streamed from ``host.iter_clients``, set-based
    and cheap per client: for each chunk, one query finds the clients with
    valid consent, a pending link or a queued request, and one ``executemany`` writes
    an outbox row for each of the others (whose address and name can go into a mail).
    Minting the link, recording the ``requested`` event and revoking an expired or
    outdated link happen when the relay claims the row (:func:`complete_requests`), with
    the client looked at again then; a practice of 100,000 clients is queued in
    seconds.

    Idempotent: a client who already has a pending, unexpired request for the current
    text, or a queued one, is skipped (a partial unique index on queued rows decides,
    with ``INSERT … ON CONFLICT DO NOTHING``, so a double click or two concurrent runs
    queue each client once).

    **Transactions:** with a client query, one transaction on ``host.session()``,
    committed at the end; the clients are never loaded into Python, only the refs,
    addresses and names of those queued are read back.  On SQLite it holds the write
    lock throughout (longer the more clients and the more addresses that need
    email-validator), so bookings wait that long.
    Streamed, the work is done in chunks of ``chunk_size`` clients and each chunk is
    committed on ``host.session()`` (a 100k-client practice is never held in memory or
    in one transaction).  A run that stops half-way (crash, timeout) can simply be run
    again: clients already asked are skipped.  Because of these commits,
    ``host.iter_clients`` must not hold a cursor on ``host.session()`` across them
    (page through the client table, or read it on another connection).

    ``progress(done, total)`` is called after each chunk (with a client query once, at
    the end): ``done`` is the number of clients looked at so far, ``total`` the number
    expected (``len(clients)``, the ``total`` argument, or 0 when unknown).
    """
    session = host.session()
    practice = practices.require_practice(session, tenant)
    tenant = practice.tenant_ref
    batch_key = batch_key or uuid.uuid4().hex
    unknown = 0
    if clients is None and isinstance(host, ClientQuery):
        key = batch_key
        query = host.client_query(TenantRef(tenant))
        done, counts = run_in_transaction(
            host.session,
            lambda s: _queue_everyone(host, s, tenant, query, actor=actor, batch_key=key),
        )
        if progress is not None:
            progress(done, done)
        return _batch_result(counts, unknown=0, batch_key=batch_key, tenant=tenant)
    if clients is not None:
        refs = [common.check_ref("client", c) for c in clients]
        expected = len(refs)

        def looked_up() -> Iterator[ClientInfo]:
            nonlocal unknown
            for ref in refs:
                info = host.lookup_client(TenantRef(tenant), ClientRef(ref))
                if info is None:
                    unknown += 1
                else:
                    yield info

        source: Iterable[ClientInfo] = looked_up()
    else:
        expected = total or 0
        source = host.iter_clients(TenantRef(tenant))

    asked = valid = pending = no_email = bad_name = withdrawn = refused = done = 0
    for chunk in _chunks(source, max(1, chunk_size)):
        counts = run_in_transaction(
            host.session, _chunk_job(host, tenant, chunk, actor=actor, batch_key=batch_key)
        )
        asked += counts.asked
        valid += counts.valid
        pending += counts.pending
        no_email += counts.no_email
        bad_name += counts.bad_name
        withdrawn += counts.withdrawn
        refused += counts.refused
        done += len(chunk)
        if progress is not None:
            progress(done + (unknown if clients is not None else 0), expected)
    if clients is not None and progress is not None and done == 0:
        progress(unknown, expected)
    return _batch_result(
        _ChunkCounts(asked=asked, valid=valid, pending=pending, no_email=no_email,
                     bad_name=bad_name, withdrawn=withdrawn, refused=refused),
        unknown=unknown, batch_key=batch_key, tenant=tenant,
    )


def _batch_result(
    counts: _ChunkCounts, *, unknown: int, batch_key: str, tenant: str
) -> BatchResult:
    result = BatchResult(
        asked=counts.asked, skipped_valid=counts.valid, skipped_pending=counts.pending,
        skipped_no_email=counts.no_email, skipped_bad_name=counts.bad_name,
        skipped_unknown=unknown, skipped_withdrawn=counts.withdrawn,
        skipped_refused=counts.refused, batch_key=batch_key,
    )
    log.info(
        "batch request %s for practice %s: %d asked, %d valid, %d pending, %d without "
        "address, %d bad name, %d unknown, %d withdrawn, %d declined",
        batch_key, tenant, result.asked, result.skipped_valid, result.skipped_pending,
        result.skipped_no_email, result.skipped_bad_name, unknown, result.skipped_withdrawn,
        result.skipped_refused,
    )
    return result
