"""What the client's own page ("Mina samtycken") shows and records.

The page shows each of the practice's purposes (archived ones left out) with its
status and reason, and for a consent that stands the exact text version the client
agreed to and when.  Each purpose has one button: give consent (to the purpose's
current text in the client's language) or withdraw it.  Every act is its own ledger
event through :mod:`samtycke_plugin.consent` (actor ``client``, channel
``client_page``); giving queues a receipt, withdrawing a confirmation mail.

A consent of any age can be withdrawn here, also while the practice has the app
deactivated; giving needs the app active (a practice that switched it off is not
collecting consent).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from attrs import frozen
from sqlalchemy import select

from samtycke_plugin import common, consent, hostdb, practice_texts, practices, status_text
from samtycke_plugin.email.page_links import Page
from samtycke_plugin.email.purpose_names import purpose_names
from samtycke_plugin.errors import Conflict, InputError, NotFound
from samtycke_plugin.i18n import N_, lang, t
from samtycke_plugin.inputs import whole_number
from samtycke_plugin.ledger import load_snapshot
from samtycke_plugin.models import ConsentEvent, TextVersion
from samtycke_plugin.purposes import check_key, list_purposes
from samtycke_plugin.render import trusted_html
from samtycke_plugin.rules import VALID_STATES, State, Status, status
from samtycke_plugin.text import sha256

if TYPE_CHECKING:
    from markupsafe import Markup

    from hookspecs.host import Host

#: The ledger channel of what the client does on their page.
CHANNEL = "client_page"

#: The events the page lists as receipts.
RECEIPT_STATES = (State.GIVEN.value, State.RENEWED.value, State.WITHDRAWN.value)


#: What each status means, said to the client (the badges' reasons speak to staff).
CLIENT_REASONS: dict[Status, str] = {
    Status.VALID: N_("You have consented to the current text."),
    Status.UNKNOWN: N_("You have not given consent to this."),
    Status.REQUESTED: N_("The practice has asked for your consent; you have not answered yet."),
    Status.BOUNCED: N_("You have not given consent to this."),
    Status.UNDELIVERED: N_("You have not given consent to this."),
    Status.DEFERRED: N_("The practice has asked for your consent; you have not answered yet."),
    Status.REFUSED: N_("You declined to consent to this."),
    Status.WITHDRAWN: N_("You have withdrawn your consent."),
    Status.REVOKED: N_("The practice has ended this consent."),
    Status.EXPIRED: N_("Your consent has expired. You can give it again."),
    Status.INVALIDATED: N_("The practice found this consent invalid. You can give it again."),
    Status.OUTDATED: N_(
        "The practice has changed the text since you consented. Read the new text and give "
        "your consent again if you agree."
    ),
    Status.ERASED: N_("Your personal data at the practice has been erased."),
}

#: Statuses about a mail's delivery, which the client's page shows as "no consent".
_AS_UNKNOWN = {Status.BOUNCED, Status.UNDELIVERED}


@frozen(kw_only=True)
class Agreed:
    """The consent that stands: the text version agreed to, and when."""

    given_at: datetime
    version: str
    language: str
    text_html: Markup
    seq: int


@frozen(kw_only=True)
class PurposeRow:
    key: str
    name: str
    status: str
    label: str
    reason: str
    tone: str
    agreed: Agreed | None
    withdrawable: bool
    #: The current text offered when the client may give consent (else ``None``).
    offer_html: Markup | None
    offer_id: int | None
    offer_version: str
    #: The practice's note on what changed, for a client who consented to an older text.
    change_note: str | None


def _agreed(host: Host, page: Page, purpose: str) -> Agreed | None:
    with hostdb.session(host) as session:
        event = consent.latest_given(session, page.tenant, page.client_ref, purpose)
        if event is None or event.text_version_id is None:
            return None
        text = session.get(TextVersion, event.text_version_id)
        if text is None:
            return None
        return Agreed(given_at=event.given_at or event.occurred_at,
                      version=common.version_label(text.major, text.minor),
                      language=text.language, text_html=trusted_html(text.html), seq=event.seq)


def rows(host: Host, page: Page, locale: str) -> list[PurposeRow]:
    """One row per purpose of the practice (not archived), in the practice's order."""
    language = lang(locale)
    out: list[PurposeRow] = []
    now = common.now_utc(host)
    with hostdb.session(host) as session:
        names = purpose_names(session, page.tenant, language)
        for info in list_purposes(session, page.tenant):
            snap = load_snapshot(session, page.tenant, page.client_ref, info.key)
            current = status(snap, info.current_major, now)
            withdrawable = snap is not None and snap.state in VALID_STATES
            offer = None
            if page.practice.active and current is not Status.VALID:
                offer = practice_texts.current_text(session, page.practice, language, info.key)
            shown = Status.UNKNOWN if current in _AS_UNKNOWN else current
            out.append(PurposeRow(
                key=info.key, name=names.get(info.key, info.key), status=current.value,
                label=status_text.label(shown, language),
                reason=t(language, CLIENT_REASONS[current]), tone=status_text.tone(shown),
                agreed=_agreed(host, page, info.key) if withdrawable else None,
                withdrawable=withdrawable,
                offer_html=trusted_html(offer.html) if offer is not None else None,
                offer_id=offer.id if offer is not None else None,
                offer_version=common.version_label(offer.major, offer.minor) if offer else "",
                change_note=consent.change_note_for(session, page.practice, page.client_ref,
                                                    info.key) if offer is not None else None,
            ))
    return out


def _purpose(host: Host, page: Page, raw: str | None) -> str:
    """A purpose of the page's practice that is not archived (else :class:`InputError`)."""
    try:
        key = check_key(raw)
    except InputError:
        raise InputError("purpose", "the form named no purpose of this practice") from None
    with hostdb.session(host) as session:
        if key not in {p.key for p in list_purposes(session, page.tenant)}:
            raise InputError("purpose", "the form named no purpose of this practice")
    return key


class TextChanged(Exception):
    """The purpose's text changed content after the page was shown."""


def give(host: Host, page: Page, raw_purpose: str | None, raw_text: str | None, *,
         ip_address: str | None, user_agent: str | None) -> ConsentEvent:
    """Record the client's consent to a purpose's current text, the version the page
    showed (posted back): another practice's or purpose's text is :class:`InputError`,
    an outdated one :class:`TextChanged`, consent that stands already
    :class:`Conflict`.  Queues the receipt."""
    from samtycke_plugin.email.receipts import queue_receipt

    purpose = _purpose(host, page, raw_purpose)
    text_id = whole_number(raw_text)
    if text_id is None:
        raise InputError("text", "the form did not say which text was shown")
    with hostdb.session(host) as session:
        practice = practices.require_practice(session, page.tenant)  # NotActive when off
        version = session.get(TextVersion, text_id)
        if version is None or version.tenant_ref != page.tenant \
                or version.purpose_key != purpose:
            raise InputError("text", "the form named a text of another practice")
        if version.major != practices.purpose_major(session, practice, purpose):
            raise TextChanged()
        if consent.client_status(host, page.tenant, page.client_ref, purpose).valid:
            raise Conflict(N_("Your consent to this purpose is already recorded."))
        note = consent.change_note_for(session, practice, page.client_ref, purpose)
        event = consent.grant(
            session, page.tenant, page.client_ref, version,
            consent.How(channel=CHANNEL, method="button", actor="client",
                        ip_address=ip_address, user_agent=user_agent),
            now=common.now_utc(host), purpose=purpose,
            validity_days=practices.purpose_validity(session, practice, purpose),
            change_note_sha256=sha256(note) if note else None,
        )
        queue_receipt(host, event)
        return event


def withdraw(host: Host, page: Page, raw_purpose: str | None, *,
             ip_address: str | None, user_agent: str | None) -> ConsentEvent:
    """Record the client's withdrawal of a purpose's consent, however old it is
    (:class:`Conflict` when none stands).  Queues the confirmation mail."""
    from samtycke_plugin.email.page_mail import queue_withdrawal_confirmation

    purpose = _purpose(host, page, raw_purpose)
    event = consent.withdraw(
        host, page.tenant, page.client_ref, actor="client", channel=CHANNEL, method="button",
        by_client=True, ip_address=ip_address, user_agent=user_agent, even_if_inactive=True,
        purpose=purpose,
    )
    queue_withdrawal_confirmation(host, [event], page_link=page.link_id)
    return event


@frozen(kw_only=True)
class Receipt:
    """One event as the printable receipt shows it."""

    seq: int
    state: str
    purpose: str
    occurred_at: datetime
    given_at: datetime | None
    actor: str
    channel: str
    version: str
    language: str | None
    text_html: Markup | None
    text_sha256: str | None
    row_hash: str


def receipts(host: Host, page: Page, locale: str) -> list[Receipt]:
    """The client's consent events (given, renewed, withdrawn), newest first."""
    return _receipts(host, page, locale, None)


def receipt(host: Host, page: Page, locale: str, seq: int) -> Receipt:
    """One of the client's consent events (:class:`NotFound` for another client's)."""
    found = _receipts(host, page, locale, seq)
    if not found:
        raise NotFound(N_("No such receipt."))
    return found[0]


def _actor_label(actor: str, language: str) -> str:
    """Who recorded an event, as the client reads it (never a staff member's ref)."""
    if actor == "client":
        return t(language, "You")
    if actor.startswith("staff:"):
        return t(language, "The practice's staff")
    return t(language, "The system")


def _receipts(host: Host, page: Page, locale: str, seq: int | None) -> list[Receipt]:
    language = lang(locale)
    with hostdb.session(host) as session:
        names = purpose_names(session, page.tenant, language)
        query = (
            select(ConsentEvent, TextVersion)
            .outerjoin(TextVersion, TextVersion.id == ConsentEvent.text_version_id)
            .where(ConsentEvent.tenant_ref == page.tenant,
                   ConsentEvent.client_ref == page.client_ref,
                   ConsentEvent.state.in_(RECEIPT_STATES))
            .order_by(ConsentEvent.seq.desc())
        )
        if seq is not None:
            query = query.where(ConsentEvent.seq == seq)
        out = []
        for event, text in session.execute(query).all():
            out.append(Receipt(
                seq=event.seq, state=event.state,
                purpose=names.get(event.purpose_key, event.purpose_key),
                occurred_at=event.occurred_at, given_at=event.given_at,
                actor=_actor_label(event.actor, language),
                channel=status_text.code_label(status_text.CHANNEL_LABELS, event.channel,
                                               language),
                version=common.version_label(text.major, text.minor) if text else "",
                language=event.language,
                text_html=trusted_html(text.html) if text is not None else None,
                text_sha256=event.text_sha256, row_hash=event.row_hash,
            ))
        return out
