"""Online booking: the consent block of the booking form, with one box per purpose the
practice asks for, the check (phase 1, no writes) and the record step (phase 2, in the
host's transaction).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
from attrs import frozen
from markupsafe import Markup
from sqlalchemy.orm import Session

from hookspecs.types import (
    BookingFormContext,
    BookingSubmission,
    ClientRef,
    FormFragment,
    TenantRef,
    Veto,
)
from samtycke_plugin import consent, hostdb, ledger
from samtycke_plugin.booking_gate import (
    Gate,
    PurposeGate,
    ShownText,
    field_names,
    posted_text_ids,
    read_gate,
)
from samtycke_plugin.common import check_ref, now_utc
from samtycke_plugin.email import confirm, receipts
from samtycke_plugin.errors import Conflict
from samtycke_plugin.i18n import N_, lang, t
from samtycke_plugin.ledger import Head, NewEvent, lock_head
from samtycke_plugin.models import ConsentEvent, Practice
from samtycke_plugin.practice_texts import current_text
from samtycke_plugin.practices import get_practice, is_operational, require_practice
from samtycke_plugin.purpose_catalogue import by_key
from samtycke_plugin.purposes import DEFAULT_PURPOSE
from samtycke_plugin.render import render, trusted_html
from samtycke_plugin.rules import (
    VALID_STATES,
    GateOutcome,
    Snapshot,
    State,
    Status,
    needs_confirmation,
)
from samtycke_plugin.settings import PracticeSettings
from samtycke_plugin.text import sha256

if TYPE_CHECKING:
    from hookspecs.host import Host


FIELD_CONSENT, FIELD_TEXT, FIELD_NOTE = field_names(DEFAULT_PURPOSE)

_TICKED = ("yes", "on", "true", "1")


@frozen(kw_only=True)
class _Box:
    """One purpose's part of the consent block."""

    key: str
    #: The purpose's name as the block's legend (``None``: the generic legend, for the
    #: default purpose when it is the only box).
    legend: str | None
    #: Appended to the element ids (the default purpose keeps the ids hosts know).
    suffix: str
    text_html: Markup
    text_id: int
    text_lang: str
    required: bool
    field_consent: str
    field_text: str
    field_note: str
    change_note: str | None
    note_sha256: str | None
    outdated: bool

    @property
    def field_names(self) -> tuple[str, ...]:
        fields = (self.field_consent, self.field_text)
        return (*fields, self.field_note) if self.change_note else fields


def _name(purpose: PurposeGate, language: str) -> str:
    """The practice's name for the purpose, else the catalogue's (the default purpose
    has no name of the practice's own unless the practitioner gave it one)."""
    entry = by_key(purpose.key)
    return purpose.name(language) if purpose.names or entry is None else entry.name.get(language)


def _box(session: Session, practice: Practice, purpose: PurposeGate, client: str | None,
         locale: str, *, named: bool) -> _Box:
    key = purpose.key
    text = current_text(session, practice, locale, key)
    note = consent.change_note_for(session, practice, client, key)
    box, text_field, note_field = field_names(key)
    default = key == DEFAULT_PURPOSE
    return _Box(
        key=key, legend=_name(purpose, lang(locale)) if named or not default else None,
        suffix="" if default else "-" + key, text_html=trusted_html(text.html),
        text_id=text.id, text_lang=text.language, required=purpose.required,
        field_consent=box, field_text=text_field, field_note=note_field, change_note=note,
        note_sha256=sha256(note) if note else None,
        outdated=purpose.status is Status.OUTDATED,
    )


def form_fragment(host: Host, form: BookingFormContext) -> FormFragment | None:
    """The consent block of the booking form: one unticked box for each purpose this
    client is to be asked for, or ``None`` when none is."""
    with hostdb.session(host) as session:
        practice = get_practice(session, form.tenant)
        if not is_operational(practice):
            return None
        assert practice is not None
        client = check_ref("client", form.client) if form.client else None
        found = read_gate(session, practice.tenant_ref, client, {}, now_utc(host))
        asked = [p for p in found.purposes if p.asks(is_new_client=client is None)] if found else []
        if not asked:
            return None
        # Beside other boxes the default purpose's box says which purpose it is too.
        boxes = [_box(session, practice, p, client, form.locale, named=len(asked) > 1)
                 for p in asked]
        return FormFragment(
            key="samtycke.consent", html=render("form_fragment.html", form.locale, boxes=boxes),
            field_names=tuple(name for box in boxes for name in box.field_names),
            required=any(box.required for box in boxes), order=900,
        )


@frozen(kw_only=True)
class _Decision:
    purpose: PurposeGate
    outcome: GateOutcome


def _decide(
    host: Host, submission: BookingSubmission, client: str | None, *, locked: bool = False
) -> tuple[list[_Decision], Head | None, PracticeSettings | None]:
    """The gate's decision for each purpose; with ``locked``, taken under the practice's
    chain-head lock (the record step: a simultaneous submit or text change cannot slip in
    between), and the head read with it; and the practice's settings the gate read."""
    tenant = check_ref("tenant", submission.tenant)
    client = check_ref("client", client) if client else None
    if submission.channel != "online":
        return [], None, None
    with hostdb.session(host) as session:
        head = lock_head(session, tenant) if locked else None
        found = read_gate(session, tenant, client, posted_text_ids(submission.fields),
                          now_utc(host))
        return (_decide_on(submission, client, found), head,
                found.settings if found is not None else None)


def _decide_on(
    submission: BookingSubmission, client: str | None, found: Gate | None
) -> list[_Decision]:
    if found is None or not found.active:
        return []
    is_new = submission.is_new_client or client is None
    decisions = []
    for purpose in found.purposes:
        ticked = submission.fields.get(field_names(purpose.key)[0], "") in _TICKED
        outcome = purpose.outcome(is_new_client=is_new, ticked=ticked)
        if outcome is not GateOutcome.ACCEPT:
            decisions.append(_Decision(purpose=purpose, outcome=outcome))
    return decisions


def _veto(locale: str, decision: _Decision) -> Veto | None:
    purpose = decision.purpose
    default = purpose.key == DEFAULT_PURPOSE
    suffix = "" if default else "." + purpose.key
    name = purpose.name(lang(locale))
    if decision.outcome is GateOutcome.VETO_REQUIRED:
        return Veto(
            key="samtycke.consent_required" + suffix, field_name=field_names(purpose.key)[0],
            retryable=False,
            message=t(locale, "To book online you need to give your consent: read the text "
                              "about how your personal data is handled and tick the box.")
            if default else t(locale, "To book online you need to give your consent to "
                                      "“%(name)s”: read its text and tick its box.", name=name),
        )
    if decision.outcome is GateOutcome.VETO_TEXT_CHANGED:
        return Veto(
            key="samtycke.text_changed" + suffix, field_name=field_names(purpose.key)[0],
            retryable=True,
            message=t(locale, "The consent text was updated while you were booking. Please "
                              "read the new text and tick the box again.")
            if default else t(locale, "The text about “%(name)s” was updated while you were "
                                      "booking. Please read the new text and decide again.",
                              name=name),
        )
    return None


def check_booking(host: Host, submission: BookingSubmission) -> list[Veto]:
    """Phase 1: vetoes for a booking, without writing anything."""
    decisions, _, _ = _decide(host, submission, submission.client)
    return [v for d in decisions if (v := _veto(submission.locale, d)) is not None]


def _note_shown(
    session: Session, practice: Practice, client: str, key: str, posted: object
) -> str | None:
    """The hash of the change note the form showed above the purpose's text, when the form
    posted it back and it is the note the client is shown now (else ``None``)."""
    if not isinstance(posted, str) or not posted:
        return None
    note = consent.change_note_for(session, practice, client, key)
    return posted if note is not None and sha256(note) == posted else None


def record_booking(
    host: Host, submission: BookingSubmission, booking: str, client: str
) -> list[ConsentEvent]:
    """Phase 2: record the consent decisions of an accepted online booking, one event per
    purpose asked (given, or refused for a box offered and left unticked), appended
    together.  A box ticked by a booker who may not be the client is recorded
    ``unconfirmed`` (:func:`samtycke_plugin.rules.needs_confirmation`) with what the
    booker typed in its evidence.

    Runs inside the host's transaction.  The decisions are re-made with the now known
    client, under the practice's lock, so a race (text changed between check and record)
    raises :class:`Conflict` and the host's transaction rolls back.  Returns the new
    events, in the form's order of purposes.
    """
    booking = check_ref("booking", booking)
    client = check_ref("client", client)
    if submission.channel != "online":
        return []
    tenant = check_ref("tenant", submission.tenant)
    decisions, head, settings = _decide(host, submission, client, locked=True)
    if any(d.outcome in (GateOutcome.VETO_REQUIRED, GateOutcome.VETO_TEXT_CHANGED)
           for d in decisions):
        raise Conflict(
            N_("The booking no longer passes the consent check; ask the client to try again.")
        )
    if not decisions:
        return []
    how = consent.How(
        channel="online_booking", method="checkbox", actor="client", booking_ref=booking,
        ip_address=submission.ip_address, user_agent=submission.user_agent,
    )
    unconfirmed = attrs.evolve(how, note=confirm.evidence_note(submission))
    now = now_utc(host)
    with hostdb.session(host) as session:
        practice: Practice | None = None
        confirming: bool | None = None
        events: list[NewEvent] = []
        for decision in decisions:
            purpose = decision.purpose
            posted = submission.fields.get(field_names(purpose.key)[2])
            if posted and practice is None:
                practice = require_practice(session, tenant)
            note = _note_shown(session, practice, client, purpose.key, posted) if practice else None
            if decision.outcome is GateOutcome.ACCEPT_GIVEN:
                assert purpose.shown is not None
                if confirming is None:
                    assert settings is not None  # a decision comes from a read gate
                    confirming = _needs_confirmation(host, settings, submission, tenant, client)
                if confirming:
                    events.append(consent.unconfirmed_event(
                        tenant, client, purpose.shown, unconfirmed, now, purpose=purpose.key,
                        change_note_sha256=note))
                    continue
                events.append(consent.grant_event(
                    tenant, client, purpose.shown, how, now, previous=purpose.snapshot,
                    validity_days=purpose.validity_days, purpose=purpose.key,
                    change_note_sha256=note))
                continue
            events.append(consent.refuse_event(
                tenant, client, _refused_text(session, tenant, purpose, submission.locale),
                how, now, purpose=purpose.key, change_note_sha256=note))
        previous: dict[tuple[str, str], Snapshot | None] = {
            (client, d.purpose.key): d.purpose.snapshot for d in decisions}
        return ledger.append(session, events, previous=previous, head=head)


def _needs_confirmation(
    host: Host, settings: PracticeSettings, submission: BookingSubmission, tenant: str,
    client: str,
) -> bool:
    """Does consent ticked in this booking wait for the client's confirmation by e-mail
    (:func:`samtycke_plugin.rules.needs_confirmation`)?"""
    if not confirm.may_need_confirmation(settings, submission):
        return False  # nothing to compare: no look-up of the client
    info = host.lookup_client(TenantRef(tenant), ClientRef(client))
    return needs_confirmation(settings, confirm.booker(submission, info))


def _refused_text(
    session: Session, tenant: str, purpose: PurposeGate, locale: str
) -> ShownText | consent.ShownText:
    """The text a refusal names: the current version the form showed, else the current one
    in the client's language."""
    if purpose.shown is not None and purpose.shown.major == purpose.major:
        return purpose.shown
    return current_text(session, require_practice(session, tenant), locale, purpose.key)


def record(host: Host, submission: BookingSubmission, booking: str, client: str) -> None:
    """Phase 2 and what follows it, in the host's transaction: the consent decisions of an
    accepted booking recorded, then the receipt of a consent given (or, after a staff
    booking, the e-mail request the practice asked for), and for a consent that waits
    for the client's confirmation the mail asking for it, to the address on record."""
    with hostdb.in_host_transaction(host, write=True) as session:
        events = record_booking(host, submission, booking, client)
        # One receipt, of the first consent given (the default purpose's when given).
        given = next((e for e in events if State(e.state) in VALID_STATES), None)
        receipts.after_booking(host, submission, client, given)
        waiting = [e for e in events if e.state == State.UNCONFIRMED.value]
        if waiting:
            tenant = TenantRef(waiting[0].tenant_ref)
            confirm.queue_confirmation(
                host, session, require_practice(session, tenant), waiting[0].client_ref,
                waiting, host.lookup_client(tenant, ClientRef(waiting[0].client_ref)),
                now=now_utc(host))
