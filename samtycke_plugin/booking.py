"""Online booking: the consent block of the booking form, the check (phase 1, no
writes) and the record step (phase 2, in the host's transaction).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from attrs import frozen

from hookspecs.types import (
    BookingFormContext,
    BookingSubmission,
    FormFragment,
    Veto,
)
from samtycke_plugin import consent, hostdb
from samtycke_plugin.common import check_ref, now_utc
from samtycke_plugin.email import receipts
from samtycke_plugin.errors import Conflict
from samtycke_plugin.i18n import N_, t
from samtycke_plugin.inputs import whole_number
from samtycke_plugin.ledger import Head, load_snapshot, lock_head, snapshot_of
from samtycke_plugin.models import (
    ConsentEvent,
)
from samtycke_plugin.practices import (
    current_text,
    get_practice,
    is_operational,
    require_practice,
    settings_from,
    settings_of,
)
from samtycke_plugin.render import render, trusted_html
from samtycke_plugin.rules import (
    GateOutcome,
    Snapshot,
    Status,
    gate,
    paused,
    should_ask,
    status,
)
from samtycke_plugin.settings import (
    PracticeSettings,
)
from samtycke_plugin.store import _gate_row

if TYPE_CHECKING:
    from hookspecs.host import Host


FIELD_CONSENT = "samtycke_consent"


FIELD_TEXT = "samtycke_text"


def form_fragment(host: Host, form: BookingFormContext) -> FormFragment | None:
    """The consent block of the booking form, when this client is to be asked."""
    with hostdb.session(host) as session:
        practice = get_practice(session, form.tenant)
        if not is_operational(practice):
            return None
        assert practice is not None
        settings = settings_of(practice)
        now = now_utc(host)
        snap = (
            load_snapshot(session, practice.tenant_ref, check_ref("client", form.client))
            if form.client
            else None
        )
        current = status(snap, practice.current_major, now)
        if not should_ask(settings, current, is_new_client=form.client is None,
                          paused=paused(snap, settings, now)):
            return None
        text = current_text(session, practice, form.locale)
        note = consent.change_note_for(session, practice, form.client)
        html = render(
            "form_fragment.html", form.locale, change_note=note,
            text_html=trusted_html(text.html), text_id=text.id, text_lang=text.language,
            required=settings.require_consent_for_online_booking,
            field_consent=FIELD_CONSENT, field_text=FIELD_TEXT,
            outdated=current is Status.OUTDATED,
        )
        return FormFragment(
            key="samtycke.consent", html=html, field_names=(FIELD_CONSENT, FIELD_TEXT),
            required=settings.require_consent_for_online_booking, order=900,
        )


@frozen(kw_only=True)
class _ShownText:
    """The text version the booking form showed (posted back in ``samtycke_text``)."""

    id: int
    major: int
    sha256: str
    language: str


@frozen(kw_only=True)
class _Decision:
    outcome: GateOutcome
    previous: Snapshot | None = None
    settings: PracticeSettings | None = None
    #: The gate row, for the text the form showed (read only when consent is recorded).
    row: Any = None

    def shown_text(self) -> _ShownText | None:
        """The text version the form showed, as the gate read it, or ``None``."""
        row = self.row
        if getattr(row, "shown_id", None) is None:
            return None
        return _ShownText(id=row.shown_id, major=row.shown_major, sha256=row.shown_sha256,
                          language=row.shown_language)


def _shown_text_id(raw: object) -> int | None:
    return whole_number(raw)  # ASCII digits only: "²" and "٣" are isdigit() too


def _decide(
    host: Host, submission: BookingSubmission, client: str | None, *, locked: bool = False
) -> tuple[_Decision, Head | None]:
    """The gate's decision; with ``locked``, taken under the practice's chain-head lock
    (the record step: a simultaneous submit or text change cannot slip in between),
    and the head read with it."""
    tenant = check_ref("tenant", submission.tenant)
    client = check_ref("client", client) if client else None
    if submission.channel != "online":
        return _Decision(outcome=GateOutcome.ACCEPT), None
    with hostdb.session(host) as session:
        head = lock_head(session, tenant) if locked else None
        row = _gate_row(session, tenant, client, _shown_text_id(submission.fields.get(FIELD_TEXT)))
        return _decide_on(host, submission, client, row), head


def _decide_on(
    host: Host, submission: BookingSubmission, client: str | None, row: Any
) -> _Decision:
    if row is None or not (row.active and row.setup_complete):
        return _Decision(outcome=GateOutcome.ACCEPT)
    settings = settings_from(row.settings)
    snap = snapshot_of(row) if client and row.state is not None else None
    now = now_utc(host)
    current = status(snap, row.current_major, now)
    ticked = submission.fields.get(FIELD_CONSENT, "") in ("yes", "on", "true", "1")
    outcome = gate(
        settings, current, is_new_client=submission.is_new_client or client is None,
        ticked=ticked,
        shown_major=row.shown_major if getattr(row, "shown_id", None) is not None else None,
        current_major=row.current_major, paused=paused(snap, settings, now),
    )
    if outcome in (GateOutcome.ACCEPT_GIVEN, GateOutcome.ACCEPT_REFUSED):
        return _Decision(outcome=outcome, previous=snap, settings=settings, row=row)
    return _Decision(outcome=outcome)


def check_booking(host: Host, submission: BookingSubmission) -> list[Veto]:
    """Phase 1: vetoes for a booking, without writing anything."""
    decision, _ = _decide(host, submission, submission.client)
    if decision.outcome is GateOutcome.VETO_REQUIRED:
        return [
            Veto(
                key="samtycke.consent_required", field_name=FIELD_CONSENT, retryable=False,
                message=t(
                    submission.locale,
                    "To book online you need to give your consent: read the text about how "
                    "your personal data is handled and tick the box.",
                ),
            )
        ]
    if decision.outcome is GateOutcome.VETO_TEXT_CHANGED:
        return [
            Veto(
                key="samtycke.text_changed", field_name=FIELD_CONSENT, retryable=True,
                message=t(
                    submission.locale,
                    "The consent text was updated while you were booking. Please read the "
                    "new text and tick the box again.",
                ),
            )
        ]
    return []


def record_booking(
    host: Host, submission: BookingSubmission, booking: str, client: str
) -> ConsentEvent | None:
    """Phase 2: record the consent decision of an accepted online booking.

    Runs inside the host's transaction.  The decision is re-made with the now
    known client, under the practice's lock, so a race (text changed between check and
    record) raises :class:`Conflict` and the host's transaction rolls back.  Returns the
    new event, or ``None`` when nothing was recorded.
    """
    booking = check_ref("booking", booking)
    client = check_ref("client", client)
    if submission.channel != "online":
        return None
    tenant = check_ref("tenant", submission.tenant)
    decision, head = _decide(host, submission, client, locked=True)
    outcome = decision.outcome
    if outcome in (GateOutcome.VETO_REQUIRED, GateOutcome.VETO_TEXT_CHANGED):
        raise Conflict(
            N_("The booking no longer passes the consent check; ask the client to try again.")
        )
    if outcome is GateOutcome.ACCEPT:
        return None
    settings = decision.settings
    assert settings is not None
    how = consent.How(
        channel="online_booking", method="checkbox", actor="client", booking_ref=booking,
        ip_address=submission.ip_address, user_agent=submission.user_agent,
    )
    with hostdb.session(host) as session:
        if outcome is GateOutcome.ACCEPT_GIVEN:
            shown = decision.shown_text()
            assert shown is not None
            return consent.grant(
                session, tenant, client, shown, how, now=now_utc(host),
                validity_days=settings.validity_days, previous=decision.previous, head=head,
            )
        practice = require_practice(session, submission.tenant)
        text = current_text(session, practice, submission.locale)
        return consent.refuse(session, tenant, client, text, how, now=now_utc(host),
                              previous=decision.previous, head=head)


def record(host: Host, submission: BookingSubmission, booking: str, client: str) -> None:
    """Phase 2 and what follows it, in the host's transaction: the consent decision of an
    accepted booking recorded, then the receipt of a consent given (or, after a staff
    booking, the e-mail request the practice asked for)."""
    with hostdb.in_host_transaction(host, write=True):
        event = record_booking(host, submission, booking, client)
        receipts.after_booking(host, submission, client, event)
