"""What the public link pages do with a link: find it (read only), and on the page's
POST use it once to record the client's answer or withdrawal.

A link never signs anyone in and GET/HEAD never change anything (mail scanners open
links): only a POST from the page, after a person pressed a button, records.  The POST
claims the link with ``UPDATE … SET used_at = now WHERE used_at IS NULL AND revoked_at
IS NULL`` and records only when exactly one row changed, in the same transaction.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from attrs import frozen
from sqlalchemy import (
    select,
    update,
)

from hookspecs.types import ClientInfo, ClientRef, TenantRef
from samtycke_plugin import common, consent, hostdb, practices
from samtycke_plugin.email import page_links, page_mail
from samtycke_plugin.email.purpose_names import purpose_names
from samtycke_plugin.email.receipts import queue_receipt
from samtycke_plugin.email.tokens import (
    PURPOSE_WITHDRAW,
    PURPOSES,
    TOKEN_RE,
    link_key,
    token_for,
    token_hash,
)
from samtycke_plugin.errors import Conflict, InputError, NotFound
from samtycke_plugin.i18n import N_
from samtycke_plugin.inputs import whole_number
from samtycke_plugin.ledger import load_snapshot
from samtycke_plugin.models import (
    ConsentEvent,
    ConsentRequest,
    Practice,
    TextVersion,
)
from samtycke_plugin.purposes import DEFAULT_PURPOSE, list_purposes
from samtycke_plugin.rules import VALID_STATES
from samtycke_plugin.text import sha256

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

    def __init__(self, kind: str, tenant: str | None = None, client: str | None = None,
                 request_id: int | None = None) -> None:
        super().__init__(kind)
        self.kind = kind
        #: The link's request (a used or replaced one: its receipt names the client's page).
        self.request_id = request_id
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
            raise LinkProblem("used", req.tenant_ref, req.client_ref, req.id)
        if purpose == PURPOSE_WITHDRAW:
            if req.revoked_at is not None:
                raise LinkProblem("replaced", req.tenant_ref, req.client_ref, req.id)
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
                raise LinkProblem("used", req.tenant_ref, req.client_ref, req.id)
            if req.purpose == PURPOSE_WITHDRAW and req.revoked_at is not None:
                raise LinkProblem("replaced", req.tenant_ref, req.client_ref, req.id)
            raise LinkProblem("invalid")


class TextChanged(Exception):
    """The practice changed the content of its text after the page was shown."""


def asked_purposes(host: Host, link: Link) -> list[str]:
    """The purposes a link is about, in the practice's order of its purposes: a consent
    link asks for them, a withdrawal link covers them.  A link from before purposes
    concerns the default purpose."""
    majors = link.request.purpose_majors
    if not isinstance(majors, dict) or not majors:
        return [DEFAULT_PURPOSE]
    with hostdb.session(host) as session:
        order = [p.key for p in list_purposes(session, link.practice.tenant_ref,
                                              include_archived=True)]
    keys = [str(k) for k in majors]
    return sorted(keys, key=lambda k: order.index(k) if k in order else len(order))


@frozen(kw_only=True)
class Answer:
    """The client's choice for one purpose, against the text version the page showed."""

    purpose: str
    accept: bool
    shown: TextVersion


def shown_text(host: Host, link: Link, raw: str | None, purpose: str = DEFAULT_PURPOSE
               ) -> TextVersion:
    """The text version of ``purpose`` the page showed (posted back); another
    practice's or purpose's or an unknown id is :class:`InputError` (nothing is
    written), an outdated one :class:`TextChanged`."""
    text_id = whole_number(raw)  # ASCII digits only: "²" and "٣" are isdigit() too
    if text_id is None:
        raise InputError("text", "the form did not say which text was shown")
    with hostdb.session(host) as session:
        version = session.get(TextVersion, text_id)
        if version is None or version.tenant_ref != link.practice.tenant_ref \
                or version.purpose_key != purpose:
            raise InputError("text", "the form named a text of another practice")
        try:
            major = practices.purpose_major(session, link.practice, purpose)
        except NotFound:
            raise TextChanged() from None
        if version.major != major:
            raise TextChanged()
        return version


def read_answers(host: Host, link: Link, form: Mapping[str, str]) -> list[Answer]:
    """The client's choices posted from the consent page: ``decision``/``text`` when the
    link asks for one purpose, ``decision_<purpose>``/``text_<purpose>`` for each when it
    asks for several (each purpose its own choice, every one required).
    :class:`InputError` for a missing or unknown choice, :class:`TextChanged` when a
    text changed while the page was open."""
    purposes = asked_purposes(host, link)
    out: list[Answer] = []
    for purpose in purposes:
        suffix = "" if len(purposes) == 1 else f"_{purpose}"
        decision = form.get(f"decision{suffix}")
        if decision not in ("accept", "decline"):
            raise InputError(f"decision{suffix}", "choose accept or decline")
        shown = shown_text(host, link, form.get(f"text{suffix}"), purpose)
        out.append(Answer(purpose=purpose, accept=decision == "accept", shown=shown))
    return out


def answer(
    host: Host,
    link: Link,
    answers: Sequence[Answer],
    *,
    ip_address: str | None,
    user_agent: str | None,
) -> list[ConsentEvent]:
    """Record the client's answers on the consent page (POST): ``given``/``renewed`` or
    ``refused`` per purpose for the text version shown, using the link once; an event
    of a client shown the practitioner's change note records the note's checksum.
    Each purpose accepted gets a receipt with a withdrawal link.  In the caller's
    transaction."""
    _claim(host, link)
    events: list[ConsentEvent] = []
    with hostdb.session(host) as session:
        req = link.request
        how = consent.How(channel="email_link", method="button", actor="client",
                          request_id=req.id, ip_address=ip_address, user_agent=user_agent)
        now = common.now_utc(host)
        for one in answers:
            note = consent.change_note_for(session, link.practice, req.client_ref, one.purpose)
            note_sha = sha256(note) if note else None
            if not one.accept:
                events.append(consent.refuse(
                    session, req.tenant_ref, req.client_ref, one.shown, how, now=now,
                    purpose=one.purpose, change_note_sha256=note_sha,
                ))
                continue
            event = consent.grant(
                session, req.tenant_ref, req.client_ref, one.shown, how, now=now,
                validity_days=practices.purpose_validity(session, link.practice, one.purpose),
                purpose=one.purpose, change_note_sha256=note_sha,
            )
            events.append(event)
        for event in events:
            if event.state in ("given", "renewed"):
                queue_receipt(host, event)
        return events


def has_valid_consent(host: Host, link: Link) -> bool:
    """Whether the client's consent to any purpose the link covers stands."""
    return bool(given_purposes(host, link))


def given_purposes(host: Host, link: Link) -> list[str]:
    """The purposes the link covers whose consent stands (given or renewed, not ended)."""
    return [p for p in asked_purposes(host, link)
            if consent_given(host, link.request.tenant_ref, link.request.client_ref, p)]


def consent_given(host: Host, tenant: str, client: str, purpose: str = DEFAULT_PURPOSE) -> bool:
    """Whether the client's consent to ``purpose`` stands (given or renewed, not yet ended)."""
    with hostdb.session(host) as session:
        snap = load_snapshot(session, tenant, client, purpose)
        return snap is not None and snap.state in VALID_STATES


def any_consent_given(host: Host, tenant: str, client: str) -> bool:
    """Whether the client's consent to any of the practice's purposes stands."""
    with hostdb.session(host) as session:
        keys = [p.key for p in list_purposes(session, tenant, include_archived=True)]
    return any(consent_given(host, tenant, client, p) for p in keys or [DEFAULT_PURPOSE])


def client_page_url(host: Host, problem: LinkProblem) -> tuple[str, bool]:
    """Where the client of a used or replaced link sees and withdraws their consents:
    the link to their page their receipt carried (``(url, True)``), or else the
    practice's "send me my link" form (``(url, False)``; read only: no link is issued
    on a GET)."""
    assert problem.tenant is not None
    if problem.request_id is not None:
        with hostdb.session(host) as session:
            link_id = page_mail.receipt_page_link(session, problem.tenant, problem.request_id)
            url = page_links.url_of(session, host, link_id) if link_id is not None else None
        if url is not None:
            return url, True
    return host.absolute_url(TenantRef(problem.tenant),
                             page_links.wish_path(problem.tenant)), False


@frozen(kw_only=True)
class Consented:
    """The consent a withdrawal page describes: to which purpose, when, which version."""

    purpose: str
    #: The purpose's name in the page's language.
    name: str
    given_at: datetime
    #: The text version's label ("2.1"), or "" when the event names none.
    version: str


def consented(host: Host, link: Link, locale: str) -> list[Consented]:
    """What the client consented to, per purpose the link covers, for the withdrawal
    page (empty: nothing given)."""
    out: list[Consented] = []
    tenant, client = link.request.tenant_ref, link.request.client_ref
    with hostdb.session(host) as session:
        names = purpose_names(session, tenant, locale)
        for purpose in given_purposes(host, link):
            event = consent.latest_given(session, tenant, client, purpose)
            if event is None:
                continue
            version = ""
            if event.text_version_id is not None:
                text = session.get(TextVersion, event.text_version_id)
                version = common.version_label(text.major, text.minor) if text else ""
            out.append(Consented(purpose=purpose, name=names.get(purpose, purpose),
                                 given_at=event.given_at or event.occurred_at, version=version))
    return out


def withdraw(
    host: Host, link: Link, *, ip_address: str | None, user_agent: str | None,
    purposes: Sequence[str] | None = None,
) -> list[ConsentEvent]:
    """Record the client's withdrawal from the receipt link (POST) for ``purposes``
    (``None``: every purpose the link covers whose consent stands), using the link once,
    also when the practice has deactivated the app.  A purpose the link does not cover
    is :class:`InputError`; :class:`~samtycke_plugin.errors.Conflict` when there is no
    given consent to withdraw.  Queues the confirmation mail, with the link to the
    client's page the receipt carried (or a new one)."""
    standing = given_purposes(host, link)
    chosen = standing if purposes is None else list(dict.fromkeys(purposes))
    if any(p not in asked_purposes(host, link) for p in chosen):
        raise InputError("purpose", "the link does not cover that purpose")
    if not chosen:
        raise Conflict(N_("There is no given consent to withdraw for this client."))
    _claim(host, link)
    events = [
        consent.withdraw(
            host, link.request.tenant_ref, link.request.client_ref, actor="client",
            channel="email_link", method="button", by_client=True, request_id=link.request.id,
            ip_address=ip_address, user_agent=user_agent, even_if_inactive=True, purpose=p,
        )
        for p in chosen
    ]
    with hostdb.session(host) as session:
        page_link = page_mail.receipt_page_link(session, link.request.tenant_ref,
                                                link.request.id)
    page_mail.queue_withdrawal_confirmation(host, events, page_link=page_link)
    return events
