"""Mails about the client's own page: the confirmation of a withdrawal, and the link
to the page a client asked for with the "send me my link" form.

Both go through the outbox like receipts (queued in the transaction that records what
they tell) and carry a link to the client's page (:mod:`.page_links`), derived again
by the relay from the stored nonce.  Neither has a consent or withdrawal link of its
own (no ``request_id``).

"Send me my link" never tells the visitor whether the address is known: the form
always inserts one :class:`~samtycke_plugin.models.LinkWish` row and answers the same;
the relay (:func:`handle_wishes`) looks the address up among the practice's clients
(:meth:`Host.iter_clients`), mails each client with that address a new link, and
deletes the row whatever it found.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from hookspecs.types import ClientRef, TenantRef
from samtycke_plugin import common, hostdb
from samtycke_plugin.email import page_links
from samtycke_plugin.email.addresses import (
    check_client_name,
    mail_domain,
    normalise_address,
    practice_name,
)
from samtycke_plugin.email.outbox import _INSERT_ONE_OUTBOX, _outbox_values
from samtycke_plugin.email.purpose_names import purpose_names
from samtycke_plugin.errors import InputError
from samtycke_plugin.i18n import lang, t
from samtycke_plugin.models import ConsentEvent, LinkWish, OutboxMessage, Practice

if TYPE_CHECKING:
    from hookspecs.host import Host
    from samtycke_plugin.email.messages import Rendered

log = logging.getLogger("samtycke.mail")

#: The outbox kind of a withdrawal's confirmation.
KIND_WITHDRAWN = "withdrawal"
#: The outbox kind of a mail carrying the link to the client's page.
KIND_PAGE_LINK = "page_link"
#: Outbox kinds sent without a consent or withdrawal link (no ``request_id``).
KINDS = (KIND_WITHDRAWN, KIND_PAGE_LINK)

#: Wishes handled per relay run.
WISHES_PER_RUN = 100


def _queue(host: Host, session: Session, tenant: str, client: str, kind: str,
           payload: dict[str, Any], page_link: int | None) -> int | None:
    """One outbox row of ``kind`` to the client, with a link to their page (``page_link``,
    or a new one).  ``None`` (nothing queued) when the client is gone or has no usable
    address or name."""
    info = host.lookup_client(TenantRef(tenant), ClientRef(client))
    if info is None:
        return None
    try:
        address = normalise_address(info.email)
        name = check_client_name(info.name or "")
        practice_name(host, tenant)
    except InputError as exc:
        log.info("practice %s: no %s mail queued (unusable %s)", tenant, kind, exc.field)
        return None
    if page_link is None:
        page_link = page_links.issue(session, host, tenant, client, actor="system:mail")
    return int(session.execute(
        _INSERT_ONE_OUTBOX.returning(OutboxMessage.id),
        _outbox_values(
            mail_domain(host, tenant), tenant=tenant, client=client, request_id=None, kind=kind,
            to_addr=address, locale=lang(info.locale),
            payload={"name": name, "page_link": page_link, **payload},
            now=common.now_utc(host),
        ),
    ).scalar_one())


def queue_withdrawal_confirmation(
    host: Host, events: Sequence[ConsentEvent], *, page_link: int | None = None
) -> int | None:
    """Queue the mail confirming the client's withdrawal of ``events`` (one client's),
    with a link to their page.  In the caller's transaction."""
    if not events:
        return None
    first = events[0]
    with hostdb.session(host) as session:
        return _queue(host, session, first.tenant_ref, first.client_ref, KIND_WITHDRAWN,
                      {"event_ids": [e.id for e in events]}, page_link)


def receipt_page_link(session: Session, tenant: str, request_id: int) -> int | None:
    """The unrevoked link to the client's page that the receipt carrying withdrawal
    link ``request_id`` was sent with (``None``: none, or revoked since)."""
    from samtycke_plugin.email.outbox import KIND_RECEIPT
    from samtycke_plugin.models import PageLink

    for payload in session.scalars(
        select(OutboxMessage.payload).where(
            OutboxMessage.tenant_ref == tenant, OutboxMessage.request_id == request_id,
            OutboxMessage.kind == KIND_RECEIPT)
    ):
        link_id = payload.get("page_link") if isinstance(payload, dict) else None
        row = session.get(PageLink, link_id) if isinstance(link_id, int) else None
        if row is not None and row.revoked_at is None and row.tenant_ref == tenant:
            return row.id
    return None


def add_wish(host: Host, tenant: str, address: str, locale: str) -> None:
    """Note a "send me my link" form (always one row, known address or not)."""
    with hostdb.session(host) as session:
        session.execute(insert(LinkWish).values(
            tenant_ref=tenant, address=address, locale=lang(locale),
            created_at=common.now_utc(host),
        ))


def _clients_with(host: Host, tenant: str, address: str) -> list[str]:
    """The practice's clients with ``address`` (letter case aside: people type it
    either way)."""
    wanted = address.casefold()
    found = []
    for info in host.iter_clients(TenantRef(tenant)):
        try:
            if normalise_address(info.email).casefold() == wanted:
                found.append(str(info.ref))
        except InputError:
            continue
    return found


def handle_wishes(host: Host, limit: int = WISHES_PER_RUN) -> int:
    """Mail each client whose address a "send me my link" form named a new link to
    their page, and delete the handled forms (a row two relays see is handled by the
    one whose delete took it).  Returns how many mails were queued."""
    queued = 0
    with hostdb.unit_of_work(host) as session:
        wishes = session.execute(
            select(LinkWish.id, LinkWish.tenant_ref, LinkWish.address)
            .order_by(LinkWish.id).limit(limit)
        ).all()
        for id_, tenant, address in wishes:
            taken = session.execute(delete(LinkWish).where(LinkWish.id == id_)).rowcount  # type: ignore[attr-defined]
            if taken != 1 or session.get(Practice, tenant) is None:
                continue
            for client in _clients_with(host, tenant, address):
                if _queue(host, session, tenant, client, KIND_PAGE_LINK, {}, None) is not None:
                    queued += 1
    return queued


def render(host: Host, session: Session, row: OutboxMessage) -> Rendered:
    """Render a withdrawal confirmation or a page-link mail in the client's language."""
    from samtycke_plugin.email import messages
    from samtycke_plugin.render import render as render_template

    tenant = row.tenant_ref
    practice = session.get(Practice, tenant)
    link_id = row.payload.get("page_link")
    url = page_links.url_of(session, host, link_id) if isinstance(link_id, int) else None
    if practice is None or not row.to_addr or url is None:
        raise messages.RenderError("the practice or the link to the client's page is gone")
    locale = lang(row.locale)
    name, reply_to, phone = messages._practice_contact(host, tenant)
    to_name = str(row.payload.get("name") or "")
    context: dict[str, Any] = {
        "practice": name, "practice_email": reply_to, "practice_phone": phone,
        "client_name": to_name, "page_url": url, "palette": messages._palette(practice),
    }
    if row.kind == KIND_WITHDRAWN:
        ids = [i for i in row.payload.get("event_ids", []) if isinstance(i, int)]
        events = [e for e in (session.get(ConsentEvent, i) for i in ids)
                  if e is not None and e.tenant_ref == tenant and e.client_ref == row.client_ref]
        if not events:
            raise messages.RenderError("the withdrawal of this confirmation no longer exists")
        names = purpose_names(session, tenant, locale)
        context["purposes"] = [names.get(e.purpose_key, e.purpose_key) for e in events]
        context["withdrawn_at"] = events[0].occurred_at
        subject = t(locale, "Confirmation: you withdrew your consent to %(practice)s",
                    practice=name)
        template = "mail_withdrawn"
    else:
        subject = t(locale, "Your link to your consents at %(practice)s", practice=name)
        template = "mail_page_link"
    return messages.Rendered(
        outbox_id=row.id, tenant=tenant, to_addr=row.to_addr, to_name=to_name,
        from_name=name, reply_to=reply_to, subject=subject,
        text=render_template(f"{template}.txt", locale, **context),
        html=render_template(f"{template}.html", locale, subject=subject, **context),
        message_id=row.message_id,
    )
