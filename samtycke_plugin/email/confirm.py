"""Confirming consent ticked in an online booking by someone who may not be the client.

When :func:`samtycke_plugin.rules.needs_confirmation` says so, the booking records the
consent as ``unconfirmed`` (not valid; the name and address the booker typed are kept in
the event's evidence) and, in the same transaction, a ``confirm`` link is made and its
mail queued to the client's address **on record** (as the host knows the client, never
an address the booker typed).  The link's page (``/v/<token>``) shows the text that was
ticked and a "Confirm" button; GET never records, the POST uses the link once and
records ``given`` by the client, for that text, which makes the consent valid and sends
the receipt (if the practice has changed the text's content since, the consent is to
the older text, shows as outdated, and the booking form asks again).  The link is a
consent link like any other (:mod:`.links`, :mod:`.tokens`): hashed at rest, single use,
expiring after the practice's link lifetime.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from attrs import frozen
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import Session

from hookspecs.types import BookingSubmission, ClientInfo
from samtycke_plugin import common, consent, hostdb, practices
from samtycke_plugin.email.addresses import (
    check_client_name,
    mail_domain,
    normalise_address,
    practice_name,
)
from samtycke_plugin.email.links import Link, _claim
from samtycke_plugin.email.outbox import (
    _INSERT_ONE_OUTBOX,
    _PENDING_LINK,
    _insert_pending,
    _new_request_values,
    _outbox_values,
    _revoke_ids,
)
from samtycke_plugin.email.purpose_names import purpose_names
from samtycke_plugin.email.receipts import queue_receipt
from samtycke_plugin.email.tokens import PURPOSE_CONFIRM, link_key
from samtycke_plugin.errors import InputError
from samtycke_plugin.ledger import load_snapshot
from samtycke_plugin.models import ConsentEvent, ConsentRequest, Practice, TextVersion
from samtycke_plugin.purposes import DEFAULT_PURPOSE
from samtycke_plugin.render import trusted_html
from samtycke_plugin.rules import Booker, State
from samtycke_plugin.settings import CONFIRM_ALWAYS, PracticeSettings

if TYPE_CHECKING:
    from hookspecs.host import Host


log = logging.getLogger("samtycke.confirm")

#: The outbox kind of the mail asking the client to confirm.
KIND_CONFIRM = "consent_confirm"

#: The longest typed name or address kept in the evidence (a form may post anything).
_TYPED_MAX = 200


def booker(submission: BookingSubmission, info: ClientInfo | None) -> Booker:
    """What is known about the booker of ``submission``, against the client's record."""
    return Booker(
        existing_client=submission.client is not None,
        signed_in=submission.booker_signed_in,
        typed_name=submission.booker_name, typed_email=submission.booker_email,
        record_name=info.name if info else None, record_email=info.email if info else None,
    )


def may_need_confirmation(settings: PracticeSettings, submission: BookingSubmission) -> bool:
    """Can :func:`~samtycke_plugin.rules.needs_confirmation` say yes for this booking?
    Not when the practice confirms only on a mismatch and the host says nothing that
    could mismatch (then the client's record need not be looked up)."""
    if settings.confirm_online_consent == CONFIRM_ALWAYS:
        return True
    said = (submission.booker_signed_in is False or submission.booker_name is not None
            or submission.booker_email is not None)
    return submission.client is not None and said


def _typed(value: str | None) -> str:
    if value is None:
        return "-"
    printable = "".join(ch if ch.isprintable() else " " for ch in value)
    return '"' + " ".join(printable.split())[:_TYPED_MAX] + '"'


def evidence_note(submission: BookingSubmission) -> str:
    """The unconfirmed event's evidence: what the booker typed and whether the host said
    they were signed in (erasable with the client's other personal evidence)."""
    signed = {True: "yes", False: "no", None: "not said"}[submission.booker_signed_in]
    return (f"Awaiting the client's confirmation. Booker typed name "
            f"{_typed(submission.booker_name)}, e-mail {_typed(submission.booker_email)}; "
            f"signed in: {signed}.")


def queue_confirmation(
    host: Host, session: Session, practice: Practice, client: str,
    events: Sequence[ConsentEvent], info: ClientInfo | None, *, now: datetime,
) -> int | None:
    """Make the ``confirm`` link for the ``unconfirmed`` ``events`` and queue its mail to
    the client's address on record, in the caller's transaction.  A pending confirm link
    of the client is replaced, its purposes carried over.  Returns the link's id, or
    ``None`` (logged) when the client has no usable address or name: the consent then
    stays unconfirmed until the client books again or staff record it."""
    tenant = practice.tenant_ref
    if not events:
        return None
    try:
        if info is None:
            raise InputError("client", "the client no longer exists")
        address = normalise_address(info.email)
        name = check_client_name(info.name or "")
        practice_name(host, tenant)
    except InputError as exc:
        log.info("practice %s: no confirmation mail queued (unusable %s)", tenant, exc.field)
        return None
    covered: dict[str, int] = {}
    older = session.execute(
        _PENDING_LINK, {"tenant": tenant, "client": client, "purpose": PURPOSE_CONFIRM}
    ).one_or_none()
    if older is not None:
        row = session.get(ConsentRequest, int(older.id))
        if row is not None and isinstance(row.purpose_majors, dict):
            covered = {str(k): int(v) for k, v in row.purpose_majors.items()}
        _revoke_ids(session, tenant, [int(older.id)], now)
    for event in events:
        covered[event.purpose_key] = event.text_major or 0
    days = practices.settings_of(practice).request_link_days
    values = _new_request_values(
        link_key(host), tenant=tenant, client=client, purpose=PURPOSE_CONFIRM, text=None,
        text_version_id=events[0].text_version_id, text_major=events[0].text_major, now=now,
        expires_at=now + timedelta(days=days), actor="system:online_booking", batch_key=None,
        purpose_majors=covered,
    )
    inserted = _insert_pending(session, [values])
    if client not in inserted:  # pragma: no cover - a concurrent booking's link won
        return None
    session.execute(_INSERT_ONE_OUTBOX, _outbox_values(
        mail_domain(host, tenant), tenant=tenant, client=client, request_id=inserted[client],
        kind=KIND_CONFIRM, to_addr=address, locale=info.locale, payload={"name": name},
        now=now,
    ))
    return inserted[client]


def _waiting(session: Session, tenant: str, client: str, purpose: str) -> ConsentEvent | None:
    """The client's unconfirmed event of ``purpose`` while it is their current state."""
    snap = load_snapshot(session, tenant, client, purpose)
    if snap is None or snap.state is not State.UNCONFIRMED:
        return None
    return session.scalars(
        select(ConsentEvent).where(
            ConsentEvent.tenant_ref == tenant, ConsentEvent.client_ref == client,
            ConsentEvent.purpose_key == purpose,
            ConsentEvent.state == State.UNCONFIRMED.value,
        ).order_by(ConsentEvent.seq.desc()).limit(1)
    ).first()


def _covered(link: Link) -> list[str]:
    majors = link.request.purpose_majors
    return [str(k) for k in majors] if isinstance(majors, dict) and majors else [DEFAULT_PURPOSE]


@frozen(kw_only=True)
class Waiting:
    """One consent the page asks the client to confirm: the text that was ticked."""

    key: str
    name: str
    text_html: Markup
    text_language: str
    version: str
    text: TextVersion


def waiting(host: Host, link: Link, locale: str) -> list[Waiting]:
    """The consents the link asks to confirm that still wait (read only)."""
    tenant, client = link.request.tenant_ref, link.request.client_ref
    out: list[Waiting] = []
    with hostdb.session(host) as session:
        names = purpose_names(session, tenant, locale)
        for key in _covered(link):
            event = _waiting(session, tenant, client, key)
            text = (session.get(TextVersion, event.text_version_id)
                    if event is not None and event.text_version_id is not None else None)
            if text is None:
                continue
            out.append(Waiting(
                key=key, name=names.get(key, key), text_html=trusted_html(text.html),
                text_language=text.language, text=text,
                version=common.version_label(text.major, text.minor)))
    return out


def confirm(
    host: Host, link: Link, *, ip_address: str | None, user_agent: str | None,
    locale: str,
) -> list[ConsentEvent]:
    """The client confirms (POST): the link is used once, and each consent it covers
    that still waits is recorded ``given`` by the client for the text that was ticked,
    with a receipt.  In the caller's transaction; raises
    :class:`~samtycke_plugin.email.links.LinkProblem` for a used or replaced link."""
    _claim(host, link)
    tenant, client = link.request.tenant_ref, link.request.client_ref
    how = consent.How(channel="email_link", method="confirm", actor="client",
                      request_id=link.request.id, ip_address=ip_address,
                      user_agent=user_agent)
    now = common.now_utc(host)
    events: list[ConsentEvent] = []
    with hostdb.session(host) as session:
        for one in waiting(host, link, locale):
            events.append(consent.grant(
                session, tenant, client, one.text, how, now=now, purpose=one.key,
                validity_days=practices.purpose_validity(session, link.practice, one.key),
            ))
        for event in events:
            queue_receipt(host, event)
    return events


def mail_context(session: Session, row_tenant: str, req: ConsentRequest,
                 locale: str) -> dict[str, Any]:
    """What the confirmation mail lists: the purposes' names (none for the default
    purpose alone)."""
    keys = list(req.purpose_majors) if isinstance(req.purpose_majors, dict) else []
    if keys in ([], [DEFAULT_PURPOSE]):
        return {"purpose_names": []}
    names = purpose_names(session, row_tenant, locale)
    return {"purpose_names": [names.get(str(k), str(k)) for k in keys]}
