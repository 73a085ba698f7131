"""What the public link pages do with a link: find it (read only), and on the page's
POST use it once to record the client's answer or withdrawal.

A link never signs anyone in and GET/HEAD never change anything (mail scanners open
links): only a POST from the page, after a person pressed a button, records.  The POST
claims the link with ``UPDATE … SET used_at = now WHERE used_at IS NULL AND revoked_at
IS NULL`` and records only when exactly one row changed, in the same transaction.
"""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import TYPE_CHECKING

from attrs import frozen
from sqlalchemy import (
    select,
    update,
)

from hookspecs.types import ClientInfo, ClientRef, TenantRef
from samtycke_plugin import common, consent, hostdb, practices
from samtycke_plugin.email.receipts import queue_receipt
from samtycke_plugin.email.tokens import (
    PURPOSE_WITHDRAW,
    PURPOSES,
    TOKEN_RE,
    link_key,
    token_for,
    token_hash,
)
from samtycke_plugin.errors import InputError
from samtycke_plugin.inputs import whole_number
from samtycke_plugin.ledger import load_snapshot
from samtycke_plugin.models import (
    ConsentEvent,
    ConsentRequest,
    Practice,
    TextVersion,
)
from samtycke_plugin.rules import VALID_STATES

if TYPE_CHECKING:
    from hookspecs.host import Host




class LinkProblem(Exception):
    """A link that cannot be used.  ``kind`` is

    * ``unknown``: the token matches no link (malformed, forged, guessed, or its client
      was erased) — the only kind the pages' rate limit counts;
    * ``invalid``: a real link that cannot be used (an expired or replaced consent link,
      a consent link of a practice that deactivated the app, the wrong page for its
      purpose) — the page says the same as for ``unknown``;
    * ``used``: already used (the page names the practice);
    * ``replaced``: a withdrawal link a newer receipt replaced (the page says where to
      withdraw instead).
    """

    def __init__(self, kind: str, tenant: str | None = None, client: str | None = None) -> None:
        super().__init__(kind)
        self.kind = kind
        #: The link's practice and client (not for ``unknown`` and ``invalid``: their
        #: page names nobody).
        self.tenant = tenant
        self.client = client


@frozen(kw_only=True)
class Link:
    """A usable link: the request row, its practice and the client (as the host knows it)."""

    request: ConsentRequest
    practice: Practice
    client: ClientInfo | None
    token_hash: str


def open_link(host: Host, token: str, purpose: str) -> Link:
    """Find a usable link (read only).  Raises :class:`LinkProblem`.

    A withdrawal link works whatever the practice does with the app: neither
    deactivation, nor its settings, nor the link's age end it (withdrawal is possible at
    any time).  A consent link needs the practice to have the app active: a practice
    that switched the app off is not collecting consent."""
    if purpose not in PURPOSES or not isinstance(token, str) or not TOKEN_RE.match(token):
        raise LinkProblem("unknown")
    with hostdb.session(host) as session:
        digest = token_hash(token)
        # populate_existing: a long-lived host session must not answer from stale objects.
        req = session.scalars(
            select(ConsentRequest)
            .where(ConsentRequest.token_hash == digest)
            .execution_options(populate_existing=True)
        ).first()
        if req is None:
            raise LinkProblem("unknown")
        # Only the mailed token has this hash: from here on it is a real link, not a guess.
        if req.purpose != purpose or not hmac.compare_digest(token_for(link_key(host), req), token):
            raise LinkProblem("invalid")
        practice = session.get(Practice, req.tenant_ref, populate_existing=True)
        if practice is None:
            raise LinkProblem("invalid")
        if req.used_at is not None:
            raise LinkProblem("used", req.tenant_ref, req.client_ref)
        if purpose == PURPOSE_WITHDRAW:
            if req.revoked_at is not None:
                raise LinkProblem("replaced", req.tenant_ref, req.client_ref)
        elif not practice.active or req.revoked_at is not None \
                or req.expires_at <= common.now_utc(host):
            raise LinkProblem("invalid")
        client = host.lookup_client(TenantRef(req.tenant_ref), ClientRef(req.client_ref))
        return Link(request=req, practice=practice, client=client, token_hash=digest)


def _claim(host: Host, link: Link) -> None:
    """Use the link once, in the caller's transaction (else :class:`LinkProblem`)."""
    now = common.now_utc(host)
    req = link.request
    usable = [
        ConsentRequest.id == req.id,
        ConsentRequest.tenant_ref == req.tenant_ref,
        ConsentRequest.used_at.is_(None),
        ConsentRequest.revoked_at.is_(None),
    ]
    if req.purpose != PURPOSE_WITHDRAW:  # a withdrawal link has no expiry
        usable.append(ConsentRequest.expires_at > now)
    with hostdb.session(host) as session:
        claimed = session.execute(
            update(ConsentRequest).where(*usable).values(used_at=now)
        ).rowcount  # type: ignore[attr-defined]
        if claimed != 1:
            session.expire(req)
            if req.used_at is not None:
                raise LinkProblem("used", req.tenant_ref, req.client_ref)
            if req.purpose == PURPOSE_WITHDRAW and req.revoked_at is not None:
                raise LinkProblem("replaced", req.tenant_ref, req.client_ref)
            raise LinkProblem("invalid")


class TextChanged(Exception):
    """The practice changed the content of its text after the page was shown."""


def shown_text(host: Host, link: Link, raw: str | None) -> TextVersion:
    """The text version the page showed (posted back); another practice's or an unknown
    id is :class:`InputError` (nothing is written), an outdated one :class:`TextChanged`."""
    text_id = whole_number(raw)  # ASCII digits only: "²" and "٣" are isdigit() too
    if text_id is None:
        raise InputError("text", "the form did not say which text was shown")
    with hostdb.session(host) as session:
        version = session.get(TextVersion, text_id)
        if version is None or version.tenant_ref != link.practice.tenant_ref:
            raise InputError("text", "the form named a text of another practice")
        if version.major != link.practice.current_major:
            raise TextChanged()
        return version


def answer(
    host: Host,
    link: Link,
    *,
    accept: bool,
    shown: TextVersion,
    ip_address: str | None,
    user_agent: str | None,
) -> ConsentEvent:
    """Record the client's answer on the consent page (POST): ``given``/``renewed`` or
    ``refused`` for the text version shown, using the link once.  Accepting queues a
    receipt with a withdrawal link.  In the caller's transaction."""
    _claim(host, link)
    with hostdb.session(host) as session:
        req = link.request
        how = consent.How(channel="email_link", method="button", actor="client",
                          request_id=req.id, ip_address=ip_address, user_agent=user_agent)
        now = common.now_utc(host)
        if not accept:
            return consent.refuse(session, req.tenant_ref, req.client_ref, shown, how, now=now)
        event = consent.grant(
            session, req.tenant_ref, req.client_ref, shown, how, now=now,
            validity_days=practices.settings_of(link.practice).validity_days,
        )
        queue_receipt(host, event)
        return event


def has_valid_consent(host: Host, link: Link) -> bool:
    return consent_given(host, link.request.tenant_ref, link.request.client_ref)


def consent_given(host: Host, tenant: str, client: str) -> bool:
    """Whether the client's consent stands (given or renewed, not yet ended)."""
    with hostdb.session(host) as session:
        snap = load_snapshot(session, tenant, client)
        return snap is not None and snap.state in VALID_STATES


def consented_event(host: Host, link: Link) -> ConsentEvent | None:
    """The client's latest given/renewed event (what a withdrawal page describes)."""
    with hostdb.session(host) as session:
        return consent.latest_given(session, link.request.tenant_ref,
                                    link.request.client_ref)


@frozen(kw_only=True)
class Consented:
    """The consent a withdrawal page describes: when it was given, to which version."""

    given_at: datetime
    #: The text version's label ("2.1"), or "" when the event names none.
    version: str


def consented(host: Host, link: Link) -> Consented | None:
    """What the client consented to, for the withdrawal page (``None``: nothing given)."""
    event = consented_event(host, link)
    if event is None:
        return None
    version = ""
    with hostdb.session(host) as session:
        if event.text_version_id is not None:
            text = session.get(TextVersion, event.text_version_id)
            version = common.version_label(text.major, text.minor) if text else ""
        return Consented(given_at=event.given_at or event.occurred_at, version=version)


def withdraw(
    host: Host, link: Link, *, ip_address: str | None, user_agent: str | None
) -> ConsentEvent:
    """Record the client's withdrawal from the receipt link (POST), using the link once,
    also when the practice has deactivated the app.
    :class:`~samtycke_plugin.errors.Conflict` when there is no given consent to withdraw."""
    _claim(host, link)
    return consent.withdraw(
        host, link.request.tenant_ref, link.request.client_ref, actor="client",
        channel="email_link", method="button", by_client=True, request_id=link.request.id,
        ip_address=ip_address, user_agent=user_agent, even_if_inactive=True,
    )
