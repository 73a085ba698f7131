"""The batch request for a host that gives its clients as a query
(:class:`~hookspecs.host.ClientQuery`): the whole practice queued by a few set-based
statements, deciding and counting as the chunked batch does.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Select,
    String,
    Subquery,
    and_,
    bindparam,
    cast,
    delete,
    distinct,
    func,
    literal,
    null,
    or_,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from hookspecs.types import ClientSelect
from samtycke_plugin import common, practices, store
from samtycke_plugin.email.addresses import (
    mail_domain,
    practice_name,
)
from samtycke_plugin.email.asking import (
    _WHY_BAD_NAME,
    _WHY_NO_EMAIL,
    _ChunkCounts,
    _mail_address,
    _NotMailable,
    asks_about,
    said_no_in_pause,
)
from samtycke_plugin.email.outbox import (
    _IN_CHUNK,
    _OUTBOX,
    _PENDING,
    _REQUESTS,
    _STATE,
    QUEUED,
)
from samtycke_plugin.email.tokens import PURPOSE_CONSENT
from samtycke_plugin.i18n import lang
from samtycke_plugin.models import (
    KIND_REQUEST,
    WAITING_REQUEST,
)
from samtycke_plugin.purposes import DEFAULT_PURPOSE
from samtycke_plugin.rules import State

if TYPE_CHECKING:
    from hookspecs.host import Host


def _not_among(ref: Any, refs: Select[Any], column: Any, dialect: str) -> Any:
    """``ref`` is not one of the ``column`` values ``refs`` selects (a NOT NULL column).

    SQLite runs ``NOT IN`` on the list built once (a correlated ``NOT EXISTS`` probes an
    index per client, which is slower); PostgreSQL plans ``NOT EXISTS`` as an anti-join
    (its ``NOT IN`` hashes the list only when it fits in ``work_mem`` and otherwise
    rescans it for every client)."""
    if dialect == "postgresql":
        return ~refs.where(column == ref).exists()
    return ref.not_in(refs)


def listed_clients(clients: ClientSelect) -> Subquery:
    """The host's :meth:`~hookspecs.host.ClientQuery.client_query` as a subquery of the
    app's statements, with its columns ``ref``, ``name`` and ``email``."""
    query = text(clients.sql).bindparams(
        *(bindparam(name, value) for name, value in clients.params.items())
    )
    return query.columns(ref=String, name=String, email=String).subquery(
        "samtycke_batch_clients"
    )


def _queue_everyone(
    host: Host, session: Session, tenant: str, listed: Subquery, *, actor: str,
    batch_key: str, purpose: str = DEFAULT_PURPOSE,
) -> tuple[int, _ChunkCounts]:
    """A batch request for every client of ``listed`` (the host's
    :meth:`~hookspecs.host.ClientQuery.client_query`, :func:`listed_clients`),
    set-based: the number of clients and what was done, decided and counted as
    :func:`_queue_chunk` does per chunk.

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
    major = practices.purpose_major(session, practice, purpose)
    settings = practices.settings_of(practice)
    dialect = session.get_bind().dialect.name
    ref = listed.c.ref
    valid = select(_STATE.c.client_ref).where(
        _STATE.c.tenant_ref == tenant, store.valid_condition(major, now, purpose)
    )
    # Left out before anything else: valid consent, or the client's own "no".
    settled = select(_STATE.c.client_ref).where(
        _STATE.c.tenant_ref == tenant,
        or_(store.valid_condition(major, now, purpose),
            said_no_in_pause(settings, now, purpose)),
    )
    linked = select(_REQUESTS.c.client_ref).where(
        _REQUESTS.c.tenant_ref == tenant, _REQUESTS.c.purpose == PURPOSE_CONSENT, _PENDING,
        _REQUESTS.c.expires_at > now, asks_about(purpose, major),
    )
    waiting_rows = and_(_OUTBOX.c.tenant_ref == tenant, text(WAITING_REQUEST))
    unsettled = _not_among(ref, settled, _STATE.c.client_ref, dialect)
    unlinked = _not_among(ref, linked, _REQUESTS.c.client_ref, dialect)
    total = _count_listed(session, listed)
    said_no: Counter[str] = Counter()
    for state, count in session.execute(
        select(_STATE.c.state, func.count()).where(
            _STATE.c.tenant_ref == tenant, said_no_in_pause(settings, now, purpose),
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
    payload = {"actor": actor[:160], "batch_key": batch_key, "purposes": [purpose]}
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
