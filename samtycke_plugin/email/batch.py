"""The batch request: asking every client without valid consent (or a given set) at
once, in chunks that commit as they go, without asking anyone twice.  Each asked
client gets a waiting outbox row; the relay mints the link and records the request
when it sends the mail.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from enum import StrEnum
from itertools import islice
from typing import TYPE_CHECKING, Any

from attrs import frozen
from sqlalchemy.orm import Session

from hookspecs.host import ClientQuery
from hookspecs.types import ClientInfo, ClientRef, TenantRef
from samtycke_plugin import common, hostdb, practices
from samtycke_plugin.db import run_in_transaction
from samtycke_plugin.email.addresses import (
    mail_domain,
    practice_name,
)
from samtycke_plugin.email.asking import (
    _WHY_BAD_NAME,
    _WHY_NO_EMAIL,
    _already_settled,
    _ChunkCounts,
    _mail_address,
    _NotMailable,
)
from samtycke_plugin.email.batch_query import _count_listed, _queue_everyone, listed_clients
from samtycke_plugin.email.outbox import (
    _INSERT_WAITING,
    _for_dialect,
    _inserted_rows,
    _outbox_values,
)
from samtycke_plugin.models import (
    KIND_REQUEST,
)
from samtycke_plugin.purposes import DEFAULT_PURPOSE
from samtycke_plugin.rules import State

if TYPE_CHECKING:
    from hookspecs.host import Host


log = logging.getLogger("samtycke.requests")


class Reason(StrEnum):
    """Why a batch leaves a client out (the job's ``skipped_*`` counts, the preview's lists)."""

    WITHDRAWN = State.WITHDRAWN.value
    REFUSED = State.REFUSED.value
    NO_EMAIL = "no_email"
    BAD_NAME = "bad_name"
    PENDING = "pending"
    VALID = "valid"


_UNMAILABLE = {_WHY_NO_EMAIL: Reason.NO_EMAIL, _WHY_BAD_NAME: Reason.BAD_NAME}


def decide(
    settled: str | None, email: str | None, name: str | None, *, waiting: bool = False
) -> Reason | str:
    """What a batch does with one client: the reason it is left out, or the normalised
    address its request goes to.  ``settled`` is what :func:`_already_settled` found
    for the client (valid consent, their own "no", a pending link), which decides
    first; then an address or name that cannot go into a mail; then ``waiting``, a
    request already waiting in the outbox.  The job learns of a waiting row only from
    its insert's conflict, after this, and counts it as pending there; the preview
    reads the waiting rows and passes them here, so both count every client alike."""
    if settled is not None:
        return Reason(settled)
    address = _mail_address(email, name)
    if isinstance(address, _NotMailable):
        return _UNMAILABLE[address.why]
    return Reason.PENDING if waiting else address


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


def _queue_chunk(
    host: Host,
    session: Session,
    tenant: str,
    infos: Sequence[ClientInfo],
    *,
    actor: str,
    batch_key: str,
    purpose: str = DEFAULT_PURPOSE,
) -> _ChunkCounts:
    """A batch request for ``purpose`` to the clients of ``infos``: one waiting outbox
    row for each client without valid consent to it, who has not withdrawn or declined
    it, without a pending link for its current text and without a row already waiting,
    whose address and name can go into a mail.  The relay mints the link, records the
    ``requested`` event and fills the row in when it claims it
    (:func:`complete_requests`).  Does not commit."""
    practice = practices.require_practice(session, tenant)
    session.refresh(practice)
    now = common.now_utc(host)
    unique = {str(info.ref): info for info in infos}
    settled = _already_settled(session, tenant, list(unique),
                               practices.purpose_major(session, practice, purpose), now,
                               practices.settings_of(practice), purpose)
    left_out: Counter[Reason] = Counter()
    rows: list[dict[str, Any]] = []
    domain: str | None = None
    # One object: converted once.
    payload = {"actor": actor[:160], "batch_key": batch_key, "purposes": [purpose]}
    for ref, info in unique.items():
        decided = decide(settled.get(ref), info.email, info.name)
        if isinstance(decided, Reason):
            left_out[decided] += 1
            continue
        if domain is None:
            practice_name(host, tenant)  # a name unusable in mail stops the batch here
            domain = mail_domain(host, tenant)
        rows.append(_outbox_values(
            domain, tenant=tenant, client=ref, request_id=None, kind=KIND_REQUEST,
            to_addr=decided, locale=info.locale, payload=payload, now=now,
        ))
    asked = _inserted_rows(session, _for_dialect(session, _INSERT_WAITING), rows)
    return _ChunkCounts(
        asked=asked, valid=left_out[Reason.VALID],
        pending=left_out[Reason.PENDING] + len(rows) - asked,
        no_email=left_out[Reason.NO_EMAIL], bad_name=left_out[Reason.BAD_NAME],
        withdrawn=left_out[Reason.WITHDRAWN], refused=left_out[Reason.REFUSED],
    )


def count_clients(host: Host, tenant: str) -> int:
    """The number of clients of the practice: one ``count(*)`` on the host's
    :meth:`~hookspecs.host.ClientQuery.client_query`, else by streaming
    :meth:`~hookspecs.host.Host.iter_clients` (never all loaded at once)."""
    if isinstance(host, ClientQuery):
        listed = listed_clients(host.client_query(TenantRef(tenant)))
        with hostdb.session(host) as session:
            return _count_listed(session, listed)
    return sum(1 for _ in host.iter_clients(TenantRef(tenant)))


def _chunk_job(
    host: Host, tenant: str, chunk: Sequence[ClientInfo], *, actor: str, batch_key: str,
    purpose: str = DEFAULT_PURPOSE,
) -> Callable[[Session], _ChunkCounts]:
    def job(session: Session) -> _ChunkCounts:
        return _queue_chunk(host, session, tenant, chunk, actor=actor, batch_key=batch_key,
                            purpose=purpose)

    return job


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
    purpose: str = DEFAULT_PURPOSE,
) -> BatchResult:
    """E-mail a consent request for ``purpose`` to every client of the practice without
    valid consent to it (``clients=None``), or to the given client refs (an unknown or
    archived purpose: :class:`~samtycke_plugin.errors.NotFound`).  The pause and
    "already asked" apply per purpose; a client who already has a request waiting in
    the outbox (for any purpose) counts as already asked.  Clients who withdrew their consent
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

    **Transactions:** with a client query, one unit of work (:meth:`Host.unit_of_work`),
    committed at the end; the clients are never loaded into Python, only the refs,
    addresses and names of those queued are read back.  On SQLite it holds the write
    lock throughout (longer the more clients and the more addresses that need
    email-validator), so bookings wait that long.
    Streamed, the work is done in chunks of ``chunk_size`` clients and each chunk is
    committed as a unit of work of its own (a 100k-client practice is never held in memory or
    in one transaction).  A run that stops half-way (crash, timeout) can simply be run
    again: clients already asked are skipped.  Because of these commits,
    ``host.iter_clients`` must not hold a cursor open across them (page through the
    client table, or read it on another connection).  Called inside a unit of work of
    the app (its batch page), all of it runs in that unit.

    ``progress(done, total)`` is called after each chunk (with a client query once, at
    the end): ``done`` is the number of clients looked at so far, ``total`` the number
    expected (``len(clients)``, the ``total`` argument, or 0 when unknown).
    """
    with hostdb.session(host) as session:
        practice = practices.require_practice(session, tenant)
        practices.purpose_major(session, practice, purpose)
        tenant = practice.tenant_ref
    batch_key = batch_key or uuid.uuid4().hex
    unknown = 0
    if clients is None and isinstance(host, ClientQuery):
        key = batch_key
        query = listed_clients(host.client_query(TenantRef(tenant)))
        done, counts = run_in_transaction(
            host,
            lambda s: _queue_everyone(host, s, tenant, query, actor=actor, batch_key=key,
                                      purpose=purpose),
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
            host, _chunk_job(host, tenant, chunk, actor=actor, batch_key=batch_key,
                             purpose=purpose)
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
