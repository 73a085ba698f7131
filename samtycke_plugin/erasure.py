"""Erasure of a client (GDPR Art. 17) that keeps the proof.

When the host erases a client it calls the ``booking_client_erased`` hook inside its
erasure transaction, before the client row goes.  The app then removes every piece of
personal data it holds about the client:

* the personal evidence of their events (truncated IP address, browser user agent, the
  practitioner's note), in ``samtycke_evidence``;
* their consent and withdrawal links (``samtycke_consent_request``: token hashes);
* their queued and sent e-mails (``samtycke_outbox``: address, name, links), matched by
  client reference and by the client's e-mail address;
* the bytes of the scans of their signed paper forms (``samtycke_attachment``: the
  hash, type and size stay, so the event that names a scan still verifies);

and appends an ``erased`` event to the ledger for each purpose the client has a status
for (no purpose's consent outlives the erasure).  What stays is pseudonymous proof: the
ledger events with the host's opaque client reference, the text version and its hash,
times, channel, method and who recorded them.  The hash chain covers the evidence only
through a salted hash, so it still verifies, and the ``erased`` event explains (to
``samtycke verify`` and to a reader) why the evidence is gone.

The access log (``samtycke_access_log``: who viewed or exported the client's consent
data) is kept unchanged as well: its rows name the client only by that opaque reference
and hold no personal detail of the client (``detail`` is a code such as ``locale=sv``),
and who looked at a record before it was erased must stay answerable.  Like the ledger,
the table is append-only, so nothing here could change it.

Erasure works whether or not the app is still active for the practice (deactivation
keeps data, so erasure must reach it) and is idempotent: erasing again appends nothing
new unless something new had been stored meanwhile.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from attrs import frozen
from sqlalchemy import and_, delete, exists, func, or_, select
from sqlalchemy.orm import Session

from hookspecs.types import ClientRef, TenantRef
from samtycke_plugin import attachments, consent, hostdb
from samtycke_plugin.common import check_ref, now_utc
from samtycke_plugin.errors import InputError
from samtycke_plugin.models import (
    ConsentEvent,
    ConsentRequest,
    Evidence,
    LinkWish,
    OutboxMessage,
    PageLink,
    Practice,
    ReminderSent,
    RenewalAsked,
)
from samtycke_plugin.rules import State

if TYPE_CHECKING:
    from hookspecs.host import Host

ERASURE_CHANNEL = "host"
ERASURE_METHOD = "erasure"
ERASURE_ACTOR = "host"


@frozen(kw_only=True)
class ErasureResult:
    """What one erasure removed and recorded."""

    tenant: str
    client: str
    evidence_deleted: int
    requests_deleted: int
    outbox_deleted: int
    #: Sequence number of the ``erased`` event appended, or ``None`` if none was needed.
    erased_seq: int | None
    #: Attached scans whose bytes were removed.
    attachments_erased: int = 0

    @property
    def held_data(self) -> bool:
        return bool(self.evidence_deleted or self.requests_deleted or self.outbox_deleted
                    or self.attachments_erased)


def _rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def _latest_state(session: Session, tenant: str, client: str) -> str | None:
    return session.scalar(
        select(ConsentEvent.state)
        .where(ConsentEvent.tenant_ref == tenant, ConsentEvent.client_ref == client)
        .order_by(ConsentEvent.seq.desc())
        .limit(1)
    )


def erase_client(host: Host, tenant: str, client: str) -> ErasureResult:
    """Remove the client's personal data from the app and record the erasure.

    Runs in the host's transaction (``host.connection()``) and never commits.  A practice
    that never activated the app holds nothing: the result says so and nothing is
    written.  Other clients and other practices are never touched.
    """
    with hostdb.in_host_transaction(host, write=True) as session:
        nothing = ErasureResult(
            tenant=tenant, client=client, evidence_deleted=0, requests_deleted=0,
            outbox_deleted=0, erased_seq=None,
        )
        try:
            tenant = check_ref("tenant", tenant)
            client = check_ref("client", client)
        except InputError:
            # The app never stores such a reference, so it holds nothing to erase; raising
            # would only abort the host's erasure transaction.
            return nothing
        if session.get(Practice, tenant) is None:
            return nothing
        info = host.lookup_client(TenantRef(tenant), ClientRef(client))
        address = info.email.strip().lower() if info and info.email else None

        request_ids = select(ConsentRequest.id).where(
            ConsentRequest.tenant_ref == tenant, ConsentRequest.client_ref == client
        )
        mail_of_client = or_(
            OutboxMessage.client_ref == client,
            OutboxMessage.request_id.in_(request_ids),
            # Mail not tied to any client but sent to the client's address (never another
            # client's mail, even when family members share an address).
            *(
                [and_(OutboxMessage.client_ref.is_(None),
                      func.lower(OutboxMessage.to_addr) == address)]
                if address
                else []
            ),
        )
        outbox = _rowcount(
            session.execute(
                delete(OutboxMessage)
                .where(OutboxMessage.tenant_ref == tenant, mail_of_client)
                .execution_options(synchronize_session=False)
            )
        )
        # The renewal bookkeeping names the client (and its requests): it goes too.
        session.execute(
            delete(ReminderSent)
            .where(ReminderSent.tenant_ref == tenant, ReminderSent.request_id.in_(request_ids))
            .execution_options(synchronize_session=False)
        )
        session.execute(
            delete(RenewalAsked)
            .where(RenewalAsked.tenant_ref == tenant, RenewalAsked.client_ref == client)
            .execution_options(synchronize_session=False)
        )
        requests = _rowcount(
            session.execute(
                delete(ConsentRequest)
                .where(ConsentRequest.tenant_ref == tenant, ConsentRequest.client_ref == client)
                .execution_options(synchronize_session=False)
            )
        )
        # Links to the client's page, and "send me my link" forms naming their address.
        session.execute(
            delete(PageLink)
            .where(PageLink.tenant_ref == tenant, PageLink.client_ref == client)
            .execution_options(synchronize_session=False)
        )
        if address:
            session.execute(
                delete(LinkWish)
                .where(LinkWish.tenant_ref == tenant, func.lower(LinkWish.address) == address)
                .execution_options(synchronize_session=False)
            )
        evidence = _rowcount(
            session.execute(
                delete(Evidence)
                .where(Evidence.tenant_ref == tenant, Evidence.client_ref == client)
                .execution_options(synchronize_session=False)
            )
        )
        # Evidence is keyed by event: also catch rows whose copy of the client ref is off.
        evidence += _rowcount(
            session.execute(
                delete(Evidence)
                .where(
                    exists().where(
                        ConsentEvent.id == Evidence.event_id,
                        ConsentEvent.tenant_ref == tenant,
                        ConsentEvent.client_ref == client,
                    )
                )
                .execution_options(synchronize_session=False)
            )
        )
        scans = attachments.erase(session, tenant, client, now=now_utc(host))
        latest = _latest_state(session, tenant, client)
        erased_seq: int | None = None
        held = bool(outbox or requests or evidence or scans)
        if held or (latest is not None and latest != State.ERASED.value):
            event = consent.erase(
                session, tenant, client,
                consent.How(channel=ERASURE_CHANNEL, method=ERASURE_METHOD, actor=ERASURE_ACTOR),
                now=now_utc(host),
            )
            erased_seq = event.seq
        return ErasureResult(
            tenant=tenant, client=client, evidence_deleted=evidence, requests_deleted=requests,
            outbox_deleted=outbox, erased_seq=erased_seq, attachments_erased=scans,
        )


__all__ = ["ErasureResult", "erase_client"]
