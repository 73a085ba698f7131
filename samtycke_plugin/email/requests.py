"""E-mailing one client a consent request: from the client's profile, and the
automatic ones (a client created by staff, a booking made by staff).

Everything here works in the session :func:`samtycke_plugin.hostdb.session` gives and
never commits.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import (
    insert,
    select,
)
from sqlalchemy.orm import Session

from hookspecs.types import ClientCreated, ClientRef, TenantRef
from samtycke_plugin import common, consent, hostdb, practice_texts, practices
from samtycke_plugin.email.addresses import (
    check_client_name,
    mail_domain,
    normalise_address,
    practice_name,
)
from samtycke_plugin.email.asking import _ask_chunk
from samtycke_plugin.email.outbox import (
    BOUNCED,
    FAILED,
    NO_SUCH_CLIENT,
    _insert_pending,
    _new_request_values,
    _outbox_values,
    _revoke_pending,
)
from samtycke_plugin.email.tokens import PURPOSE_CONSENT, link_key
from samtycke_plugin.errors import Conflict, InputError, NotFound
from samtycke_plugin.i18n import N_
from samtycke_plugin.models import (
    KIND_REQUEST,
    ConsentRequest,
    OutboxMessage,
    Practice,
)
from samtycke_plugin.purposes import DEFAULT_PURPOSE, list_purposes

if TYPE_CHECKING:
    from hookspecs.host import Host


log = logging.getLogger("samtycke.requests")


#: A second single request for the same client, address and text within this window
#: returns the first (a double click sends one mail, not two).
RESEND_WINDOW = timedelta(seconds=60)


def send_request(
    host: Host, tenant: str, client: str, *, actor: str, purposes: Sequence[str] | None = None
) -> ConsentRequest:
    """E-mail a consent request to one client (the profile's "send a request") for
    ``purposes`` (``None``: each of the practice's purposes the client has no valid
    consent to, else the default purpose).  An unknown or archived purpose is
    :class:`NotFound`; the practitioner's request is not held back by the pause.

    Looks the client up in the host (:class:`NotFound` if unknown in this practice),
    validates and normalises the address (:class:`InputError`, field ``email``) and the
    names that go into headers (field ``name`` / ``practice_name``), revokes the
    client's older pending consent link (its unsent mail is cancelled), and writes the
    request, a ``requested`` ledger event and the outbox row in the caller's
    transaction.  Nothing is queued when a check fails.  A repeat within
    :data:`RESEND_WINDOW` for the same address and text returns the first request.
    """
    with hostdb.session(host) as session:
        practice = practices.require_practice(session, tenant)
        session.refresh(practice)  # the current text version, not a cached one
        tenant = practice.tenant_ref
        client = common.check_ref("client", client)
        info = host.lookup_client(TenantRef(tenant), ClientRef(client))
        if info is None:
            raise NotFound(NO_SUCH_CLIENT)
        address = normalise_address(info.email)
        name = check_client_name(info.name or "")
        practice_name(host, tenant)
        now = common.now_utc(host)
        asked = _chosen_purposes(host, session, practice, client, purposes)
        texts = {p: practice_texts.current_text(session, practice, info.locale, p) for p in asked}
        majors = {p: v.major for p, v in texts.items()}
        text_version = texts[asked[0]]

        recent = _recent_request(session, tenant, client, address, majors, now)
        if recent is not None:
            return recent
        _revoke_pending(session, tenant, [client], PURPOSE_CONSENT, now)
        key = link_key(host)
        days = practices.settings_of(practice).request_link_days
        values = _new_request_values(
            key, tenant=tenant, client=client, purpose=PURPOSE_CONSENT, text=text_version,
            now=now, expires_at=now + timedelta(days=days), actor=actor, batch_key=None,
            purpose_majors=majors,
        )
        inserted = _insert_pending(session, [values])
        if client not in inserted:
            # Someone else created a pending request for this client at the same moment.
            existing = session.scalars(
                select(ConsentRequest).where(
                    ConsentRequest.tenant_ref == tenant,
                    ConsentRequest.client_ref == client,
                    ConsentRequest.purpose == PURPOSE_CONSENT,
                    ConsentRequest.used_at.is_(None),
                    ConsentRequest.revoked_at.is_(None),
                )
            ).first()
            if existing is None:  # pragma: no cover - the conflicting row was rolled back
                raise Conflict(N_("Another request was being sent at the same time. Try again."))
            return existing
        request_id = inserted[client]
        consent.request(session, tenant, [
            consent.Asked(client=client, text=version, request_id=request_id, purpose=p)
            for p, version in texts.items()
        ], actor=actor, now=now)
        session.execute(
            insert(OutboxMessage).values(
                **_outbox_values(
                    mail_domain(host, tenant), tenant=tenant, client=client, request_id=request_id,
                    kind=KIND_REQUEST, to_addr=address, locale=info.locale, payload={"name": name},
                    now=now,
                )
            )
        )
        req = session.get(ConsentRequest, request_id)
        assert req is not None
        return req


def _chosen_purposes(
    host: Host, session: Session, practice: Practice, client: str,
    purposes: Sequence[str] | None,
) -> list[str]:
    """The purposes a single request asks for, in the practice's order."""
    listed = [p.key for p in list_purposes(session, practice.tenant_ref)]
    if purposes is None:
        missing = [p for p in listed
                   if not consent.client_status(host, practice.tenant_ref, client, p).valid]
        return missing or [DEFAULT_PURPOSE]
    chosen = set(purposes)
    if not chosen:
        raise InputError("purposes", "choose at least one purpose")
    for key in chosen:
        practices.purpose_major(session, practice, key)  # unknown or archived: NotFound
    return [p for p in listed if p in chosen]


def _recent_request(
    session: Session, tenant: str, client: str, address: str, majors: dict[str, int],
    now: datetime,
) -> ConsentRequest | None:
    row = session.execute(
        select(ConsentRequest, OutboxMessage.to_addr)
        .join(OutboxMessage, OutboxMessage.request_id == ConsentRequest.id)
        .where(
            ConsentRequest.tenant_ref == tenant,
            ConsentRequest.client_ref == client,
            ConsentRequest.purpose == PURPOSE_CONSENT,
            ConsentRequest.used_at.is_(None),
            ConsentRequest.revoked_at.is_(None),
            ConsentRequest.created_at > now - RESEND_WINDOW,
            ConsentRequest.expires_at > now,
            ConsentRequest.delivery.notin_((BOUNCED, FAILED)),
            OutboxMessage.kind == KIND_REQUEST,
        )
        .order_by(ConsentRequest.id.desc())
        .limit(1)
    ).first()
    if row is None or row[1] != address or row[0].purpose_majors != majors:
        return None
    return row[0]


def request_if_needed(host: Host, tenant: str, client: str, *, actor: str) -> int | None:
    """Ask one client by e-mail unless they have valid consent, withdrew or declined it,
    have a pending request for the current text, or no usable address.  In the caller's
    transaction (for the triggers inside the host's booking and client-creation
    transactions); never raises for a missing or bad address.  Returns the new request
    id, or ``None``."""
    with hostdb.session(host) as session:
        practice = practices.get_practice(session, tenant)
        if not practices.is_operational(practice):
            return None
        assert practice is not None
        info = host.lookup_client(TenantRef(practice.tenant_ref), ClientRef(client))
        if info is None:
            return None
        try:
            counts = _ask_chunk(host, session, practice.tenant_ref, [info], actor=actor,
                                batch_key=None)
        except InputError:
            log.warning("practice %s: consent request not queued (practice name unusable in mail)",
                        practice.tenant_ref)
            return None
        return next(iter(counts.links.values()), None)


def on_client_created(host: Host, created: ClientCreated) -> int | None:
    """Trigger: a client created by staff gets a request when the practice chose so."""
    with hostdb.in_host_transaction(host, write=True) as session:
        if created.created_by != "staff":
            return None
        practice = practices.get_practice(session, created.tenant)
        if not practices.is_operational(practice):
            return None
        assert practice is not None
        if not practices.settings_of(practice).email_request_to_new_clients:
            return None
        return request_if_needed(host, created.tenant, created.client, actor="system:new_client")
