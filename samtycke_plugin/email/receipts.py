"""Receipts: after a consent, a mail with what was agreed, when, a withdrawal link
that works as long as the consent does, and a link to the client's own page.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from attrs import frozen
from sqlalchemy import (
    select,
)
from sqlalchemy.orm import Session

from hookspecs.types import BookingSubmission, ClientRef, TenantRef
from samtycke_plugin import common, hostdb, practices
from samtycke_plugin.email import page_links
from samtycke_plugin.email.addresses import (
    check_client_name,
    mail_domain,
    message_id,
    normalise_address,
    practice_name,
)
from samtycke_plugin.email.outbox import (
    _INSERT_ONE_OUTBOX,
    _PENDING_LINK,
    KIND_RECEIPT,
    _insert_pending,
    _new_request_values,
    _outbox_values,
    _revoke_ids,
)
from samtycke_plugin.email.requests import request_if_needed
from samtycke_plugin.email.tokens import PURPOSE_WITHDRAW, link_key
from samtycke_plugin.errors import InputError
from samtycke_plugin.i18n import lang
from samtycke_plugin.models import (
    ConsentEvent,
    ConsentRequest,
    ConsentStateRow,
    OutboxMessage,
)
from samtycke_plugin.purposes import DEFAULT_PURPOSE
from samtycke_plugin.rules import VALID_STATES, State

if TYPE_CHECKING:
    from hookspecs.host import Host


log = logging.getLogger("samtycke.requests")


#: The ``expires_at`` stored for a withdrawal link: it has none (see the module's doc).
#: Links are never compared with it, so rows with an older, finite value work alike.
WITHDRAW_LINK_NEVER_EXPIRES = datetime(9999, 1, 1, tzinfo=UTC)


def _receipt_placeholder(
    host: Host, tenant: str, client: str, payload: dict[str, Any], locale: str
) -> dict[str, Any]:
    return _outbox_values(
        "receipt.invalid", tenant=tenant, client=client, request_id=None, kind=KIND_RECEIPT,
        to_addr=None, locale=locale, payload=payload, now=common.now_utc(host),
    )


def after_booking(
    host: Host, submission: BookingSubmission, client: str, event: ConsentEvent | None
) -> None:
    """After the booking's record step, in the host's transaction: the receipt of a
    consent given online, or the e-mail request after a staff booking.

    The receipt is one outbox row naming the event by its sequence number, completed by
    the relay (:func:`complete_receipt`): the transactional outbox guarantees a receipt
    exactly when the consent commits, while looking the client up, checking the address
    and minting the withdrawal link happen off the booking path, with the address the
    client has when the mail goes out.
    """
    with hostdb.session(host) as session:
        if event is not None and State(event.state) in VALID_STATES:
            session.execute(_INSERT_ONE_OUTBOX, _receipt_placeholder(
                host, event.tenant_ref, event.client_ref, {"event_seq": event.seq},
                submission.locale))
            return
        if submission.channel != "staff":
            return
        practice = practices.get_practice(session, submission.tenant)
        if not practices.is_operational(practice):
            return
        assert practice is not None
        if practices.settings_of(practice).email_request_after_staff_booking:
            request_if_needed(host, practice.tenant_ref, client, actor="system:staff_booking")


@frozen(kw_only=True)
class _ReceiptLink:
    request_id: int
    address: str
    name: str
    locale: str


def _receipt_link(
    host: Host, session: Session, tenant: str, client: str, text_version_id: int | None,
    text_major: int | None, purpose: str = DEFAULT_PURPOSE,
) -> _ReceiptLink | str:
    """The withdrawal link a receipt carries: a new ``withdraw`` request covering
    ``purpose``, every other purpose whose consent stands, and the purposes of the
    client's older pending one, which is revoked (its unsent mail cancelled).  Returns
    why there is none instead (the client is gone or has no usable address or name)."""
    info = host.lookup_client(TenantRef(tenant), ClientRef(client))
    if info is None:
        return "the client no longer exists in this practice"
    try:
        address = normalise_address(info.email)
        name = check_client_name(info.name or "")
        practice_name(host, tenant)
    except InputError as exc:
        return f"no receipt: unusable {exc.field}"
    now = common.now_utc(host)
    older = session.execute(
        _PENDING_LINK, {"tenant": tenant, "client": client, "purpose": PURPOSE_WITHDRAW}
    ).one_or_none()
    covered: dict[str, int] = {}
    if older is not None:
        row = session.get(ConsentRequest, int(older.id))
        if row is not None:
            covered = (dict(row.purpose_majors) if isinstance(row.purpose_majors, dict)
                       else {DEFAULT_PURPOSE: row.text_major or 0})
        _revoke_ids(session, tenant, [int(older.id)], now)
    # Every consent that stands, so that each one given at the same time (several boxes
    # ticked at one booking, of which the receipt describes the first) can be withdrawn.
    covered.update(
        (str(key), int(major or 0)) for key, major in session.execute(
            select(ConsentStateRow.purpose_key, ConsentStateRow.text_major).where(
                ConsentStateRow.tenant_ref == tenant, ConsentStateRow.client_ref == client,
                ConsentStateRow.state.in_([s.value for s in VALID_STATES])))
    )
    covered[purpose] = text_major or 0
    values = _new_request_values(
        link_key(host), tenant=tenant, client=client, purpose=PURPOSE_WITHDRAW, text=None,
        text_version_id=text_version_id, text_major=text_major, now=now,
        expires_at=WITHDRAW_LINK_NEVER_EXPIRES, actor="client", batch_key=None,
        purpose_majors=covered,
    )
    inserted = _insert_pending(session, [values])
    if client not in inserted:  # pragma: no cover - a concurrent receipt won the race
        return "a newer receipt replaced this one"
    return _ReceiptLink(request_id=inserted[client], address=address, name=name,
                        locale=lang(info.locale))


def queue_receipt(host: Host, event: ConsentEvent) -> int | None:
    """Queue the receipt for a consent event: what was agreed, when, and a withdrawal
    link (a new ``withdraw`` request; the client's older one is revoked).  Skipped
    (``None``) when the client has no usable address.  In the caller's transaction."""
    with hostdb.session(host) as session:
        tenant, client = event.tenant_ref, event.client_ref
        link = _receipt_link(host, session, tenant, client, event.text_version_id,
                             event.text_major, event.purpose_key)
        if isinstance(link, str):
            log.info("practice %s: no receipt queued (%s)", tenant, link)
            return None
        session.execute(
            _INSERT_ONE_OUTBOX,
            _outbox_values(
                mail_domain(host, tenant), tenant=tenant, client=client,
                request_id=link.request_id, kind=KIND_RECEIPT, to_addr=link.address,
                locale=link.locale, payload={
                    "name": link.name, "event_id": event.id,
                    "page_link": page_links.issue(session, host, tenant, client,
                                                  actor="system:receipt"),
                },
                now=common.now_utc(host),
            ),
        )
        return link.request_id


def complete_receipt(host: Host, session: Session, row: OutboxMessage) -> str | None:
    """Give a receipt queued at booking (:func:`after_booking`) its withdrawal
    link, address, name, language and Message-ID (in the caller's transaction: the
    relay's claim).  Returns why it cannot be sent instead (client gone, no usable
    address)."""
    payload = row.payload if isinstance(row.payload, dict) else {}
    seq = payload.get("event_seq")
    event = session.scalars(
        select(ConsentEvent).where(
            ConsentEvent.tenant_ref == row.tenant_ref, ConsentEvent.seq == seq
        )
    ).one_or_none() if isinstance(seq, int) else None
    if event is None or event.tenant_ref != row.tenant_ref or row.client_ref is None \
            or event.client_ref != row.client_ref:
        return "the consent event of this receipt no longer exists"
    link = _receipt_link(host, session, row.tenant_ref, row.client_ref,
                         event.text_version_id, event.text_major, event.purpose_key)
    if isinstance(link, str):
        return link
    row.request_id = link.request_id
    row.to_addr = link.address
    row.locale = link.locale
    row.payload = {
        "name": link.name, "event_id": event.id,
        "page_link": page_links.issue(session, host, row.tenant_ref, row.client_ref,
                                      actor="system:receipt"),
    }
    row.message_id = message_id(mail_domain(host, row.tenant_ref))
    session.flush()
    return None
