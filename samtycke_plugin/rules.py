"""The consent-status rules: pure functions, no database, no I/O.

Vocabulary: W3C DPV consent states.  "Valid consent" = the latest state is
given or renewed, for the practice's current content (major) version, and not
expired.  Everything the badge, the list filters and the booking gate decide
comes from here.
"""

from __future__ import annotations

import unicodedata
from datetime import datetime, timedelta
from enum import StrEnum

from attrs import evolve, frozen

from samtycke_plugin.settings import CONFIRM_ALWAYS, PracticeSettings


class State(StrEnum):
    """Ledger event states (DPV ConsentStatus terms, plus ``erased``)."""

    UNKNOWN = "unknown"
    REQUESTED = "requested"
    DEFERRED = "deferred"
    GIVEN = "given"
    RENEWED = "renewed"
    REFUSED = "refused"
    WITHDRAWN = "withdrawn"
    REVOKED = "revoked"
    EXPIRED = "expired"
    INVALIDATED = "invalidated"
    #: Consent ticked in an online booking whose booker may not be the client (see
    #: :func:`needs_confirmation`): it waits for the client to confirm it from the mail
    #: sent to their address on record, and is not valid until then.
    UNCONFIRMED = "unconfirmed"
    ERASED = "erased"


VALID_STATES = frozenset({State.GIVEN, State.RENEWED})


class Status(StrEnum):
    """What a badge shows: valid, or why not."""

    VALID = "valid"
    UNKNOWN = "unknown"
    REQUESTED = "requested"
    BOUNCED = "bounced"
    UNDELIVERED = "undelivered"
    DEFERRED = "deferred"
    REFUSED = "refused"
    WITHDRAWN = "withdrawn"
    REVOKED = "revoked"
    EXPIRED = "expired"
    INVALIDATED = "invalidated"
    OUTDATED = "outdated"
    UNCONFIRMED = "unconfirmed"
    ERASED = "erased"


@frozen(kw_only=True)
class Snapshot:
    """The projection of one client's ledger (one ``consent_state`` row)."""

    state: State
    text_major: int | None
    expires_at: datetime | None
    since: datetime
    delivery: str | None = None


@frozen(kw_only=True)
class EventFacts:
    """The part of a ledger event the projection depends on."""

    state: State
    text_major: int | None
    expires_at: datetime | None
    occurred_at: datetime


def status(snapshot: Snapshot | None, current_major: int, now: datetime) -> Status:
    """The badge status of a client."""
    if snapshot is None:
        return Status.UNKNOWN
    if snapshot.state in VALID_STATES:
        if snapshot.text_major != current_major:
            return Status.OUTDATED
        if snapshot.expires_at is not None and snapshot.expires_at <= now:
            return Status.EXPIRED
        return Status.VALID
    if snapshot.state is State.REQUESTED and snapshot.delivery == "bounced":
        return Status.BOUNCED
    if snapshot.state is State.REQUESTED and snapshot.delivery == "failed":
        return Status.UNDELIVERED
    return Status(snapshot.state.value)


def fold(snapshot: Snapshot | None, event: EventFacts) -> Snapshot:
    """Apply one ledger event to a client's projection.

    A request, a deferral or an unconfirmed consent does not take away consent that is
    still given for the same or a newer content version (a stranger's booking must not
    end a client's consent); every other event replaces the state.
    """
    if (
        event.state in (State.REQUESTED, State.DEFERRED, State.UNCONFIRMED)
        and snapshot is not None
        and snapshot.state in VALID_STATES
        and snapshot.text_major is not None
        and event.text_major is not None
        and snapshot.text_major >= event.text_major
    ):
        return snapshot
    return Snapshot(
        state=event.state,
        text_major=event.text_major,
        expires_at=event.expires_at,
        since=event.occurred_at,
        delivery=None,
    )


def with_delivery(
    snapshot: Snapshot | None, outcome: str, *, request_open: bool
) -> Snapshot | None:
    """The client's projection showing how the mail of a request fared, or ``None`` when
    the outcome does not show: it shows only while the client waits for an answer to
    that request (state ``requested``, the request neither used nor replaced), so a
    late outcome of an older request never overwrites the status a newer one made."""
    if snapshot is None or snapshot.state is not State.REQUESTED or not request_open:
        return None
    return evolve(snapshot, delivery=outcome)


def grant_state(previous: Snapshot | None) -> State:
    """``renewed`` when the client had given consent before (any version), else ``given``."""
    if previous is not None and previous.state in VALID_STATES:
        return State.RENEWED
    return State.GIVEN


#: Clients whose earlier consent no longer holds (given for an older content version, or
#: lapsed), and clients the practice has asked by e-mail who have not answered: the
#: booking form asks them under every setting that asks at booking at all, so a change
#: of content reaches them even when only new clients are asked (and e-mailing them a
#: request does not take them out of the booking's asking).  A consent awaiting the
#: client's confirmation is asked again too: the client booking themselves settles it.
ASK_AGAIN = frozenset(
    {
        Status.OUTDATED,
        Status.EXPIRED,
        Status.REQUESTED,
        Status.BOUNCED,
        Status.UNDELIVERED,
        Status.DEFERRED,
        Status.UNCONFIRMED,
    }
)


def asks_at_booking(settings: PracticeSettings) -> bool:
    """Does the online booking form ask anyone at all under these settings?"""
    return (
        settings.require_consent_for_online_booking
        or settings.ask_clients_without_consent
        or settings.ask_new_clients
    )


#: The states after which a client is left in peace for the practice's pause.
SAID_NO = frozenset({State.REFUSED, State.WITHDRAWN})


def paused(snapshot: Snapshot | None, settings: PracticeSettings, now: datetime) -> bool:
    """Has the client declined or withdrawn within the practice's pause?  Then neither the
    booking form nor a batch request asks them again (asking again at once is pressure,
    and consent given under pressure is not freely given)."""
    if snapshot is None or snapshot.state not in SAID_NO or settings.pause_days == 0:
        return False
    return now < snapshot.since + timedelta(days=settings.pause_days)


def should_ask(
    settings: PracticeSettings, current: Status, *, is_new_client: bool, paused: bool = False
) -> bool:
    """Does the online booking form ask this client for consent?

    Everyone without valid consent when consent is required or every such client is
    asked; with only "ask new clients", new clients and the clients of
    :data:`ASK_AGAIN` (not those who never were asked, declined or withdrew).  A client
    who declined or withdrew within the pause (``paused``) is asked only when consent is
    required to book online: the booking cannot go ahead without it.
    """
    if current is Status.VALID:
        return False
    if settings.require_consent_for_online_booking:
        return True
    if paused:
        return False
    if settings.ask_clients_without_consent:
        return True
    return settings.ask_new_clients and (is_new_client or current in ASK_AGAIN)


def purpose_asking(settings: PracticeSettings, *, required: bool) -> PracticeSettings:
    """The asking settings of one purpose at booking (what :func:`should_ask` and
    :func:`gate` take), from the practice's settings and whether online booking requires
    consent to the purpose.

    A required purpose is asked of everyone without valid consent to it; an optional one
    follows the practice's asking settings, and whenever the practice asks at booking at
    all it is offered at least to new clients and to the clients whose consent to it no
    longer holds (so a change of its content reaches them under every setting that asks).
    """
    if required:
        return evolve(settings, require_consent_for_online_booking=True)
    return evolve(settings, require_consent_for_online_booking=False,
                  ask_new_clients=settings.ask_new_clients or asks_at_booking(settings))


class GateOutcome(StrEnum):
    """What the booking check decides."""

    ACCEPT = "accept"  # nothing to record
    ACCEPT_GIVEN = "accept_given"  # record consent
    ACCEPT_REFUSED = "accept_refused"  # optional mode, box left unticked: record a refusal
    VETO_REQUIRED = "veto_required"  # required mode, box unticked
    VETO_TEXT_CHANGED = "veto_text_changed"  # the text changed while the form was open


def gate(
    settings: PracticeSettings,
    current: Status,
    *,
    is_new_client: bool,
    ticked: bool,
    shown_major: int | None,
    current_major: int,
    paused: bool = False,
) -> GateOutcome:
    """The online-booking decision for one submission (check and record agree on it).

    In the pause the form does not ask, so an unticked box records nothing; a box the
    client ticked anyway (on a form that showed it) is the client acting themselves."""
    if not should_ask(settings, current, is_new_client=is_new_client, paused=paused):
        if paused and ticked and shown_major == current_major:
            return GateOutcome.ACCEPT_GIVEN
        return GateOutcome.ACCEPT
    if ticked:
        if shown_major != current_major:
            return GateOutcome.VETO_TEXT_CHANGED
        return GateOutcome.ACCEPT_GIVEN
    if settings.require_consent_for_online_booking:
        return GateOutcome.VETO_REQUIRED
    return GateOutcome.ACCEPT_REFUSED


def renewal_window(settings: PracticeSettings, validity_days: int | None) -> int:
    """How many days before its end date consent to a purpose "expires soon": the
    practice's ``renew_days_before``, but at most half the purpose's lifetime
    (``validity_days``), so consent that lasts a short time is not asked to be renewed
    as soon as it is given.  0: never."""
    days = settings.renew_days_before
    if validity_days:
        days = min(days, validity_days // 2)
    return days


def expires_soon(
    snapshot: Snapshot | None,
    current_major: int,
    now: datetime,
    settings: PracticeSettings,
    *,
    validity_days: int | None,
) -> bool:
    """Is this valid consent going to lapse within the renewal window
    (:func:`renewal_window` of the purpose's lifetime ``validity_days``)?  Consent
    without an end date never is."""
    window = renewal_window(settings, validity_days)
    if window == 0 or snapshot is None or snapshot.expires_at is None:
        return False
    if status(snapshot, current_major, now) is not Status.VALID:
        return False
    return snapshot.expires_at <= now + timedelta(days=window)


def renewal_due(
    snapshot: Snapshot | None,
    current_major: int,
    now: datetime,
    settings: PracticeSettings,
    *,
    validity_days: int | None,
    already_asked: bool,
) -> bool:
    """Is a renewal request due for this consent: it expires soon
    (:func:`expires_soon`) and no renewal was asked for this end date yet (one request
    per consent: the next one is due only after the client renewed, for the new date)."""
    return not already_asked and expires_soon(snapshot, current_major, now, settings,
                                              validity_days=validity_days)


def reminder_due(
    *,
    requested_at: datetime,
    link_expires_at: datetime,
    answered: bool,
    delivered: bool,
    reminded: bool,
    now: datetime,
    settings: PracticeSettings,
) -> bool:
    """Is the one reminder due for an e-mailed request: reminders are on
    (``remind_after_days``), the first mail reached the server, the client has not
    answered (the link is neither used nor replaced), the link still works, no reminder
    went yet, and ``remind_after_days`` have passed since the request."""
    if settings.remind_after_days == 0 or answered or not delivered or reminded:
        return False
    if link_expires_at <= now:
        return False
    return now >= requested_at + timedelta(days=settings.remind_after_days)


@frozen(kw_only=True)
class Booker:
    """What is known about who ticked the consent box of an online booking: what the host
    said (:class:`hookspecs.types.BookingSubmission`) and the client's record."""

    #: The host named the client already when checking the booking: it matched a client
    #: it had (by e-mail address, a sign-in or a personal link), not one this booking made.
    existing_client: bool
    #: The host's word: signed in as this client (``True``), not (``False``), unsaid.
    signed_in: bool | None
    #: The name and address the booker typed (``None``: the host does not say).
    typed_name: str | None
    typed_email: str | None
    #: The client's name and address on record, as the host knows them.
    record_name: str | None
    record_email: str | None


def _folded(text: str) -> str:
    """A name or address compared as a person reads it: Unicode-normalised, case and
    runs of white space ignored (``"anna  SVENSSON"`` is ``"Anna Svensson"``)."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def same_details(typed: str | None, on_record: str | None) -> bool:
    """Does a typed detail agree with the record?  An untyped one (``None``) agrees."""
    if typed is None:
        return True
    return _folded(typed) == _folded(on_record or "")


def identity_mismatch(booker: Booker) -> bool:
    """May the booker be someone other than the client the booking is for?

    Only for a client that existed before the booking (a booking that creates the client
    gives consent for the person who typed the details), and then when the host says the
    booker is not signed in, or the typed name (or address) differs from the client's on
    record.  A host that says nothing about signing in leaves the name to decide.
    """
    if not booker.existing_client:
        return False
    if booker.signed_in is False:
        return True
    return not (same_details(booker.typed_name, booker.record_name)
                and same_details(booker.typed_email, booker.record_email))


def needs_confirmation(settings: PracticeSettings, booker: Booker) -> bool:
    """Is consent ticked in an online booking recorded as ``unconfirmed`` until the client
    confirms it from the mail sent to their address on record?  Always, when the practice
    chose so; otherwise on an identity mismatch (:func:`identity_mismatch`)."""
    if settings.confirm_online_consent == CONFIRM_ALWAYS:
        return True
    return identity_mismatch(booker)


@frozen(kw_only=True)
class VersionFacts:
    """What choosing the text a paper form showed needs of one text version."""

    id: int
    language: str
    major: int
    minor: int
    created_at: datetime


def text_in_force(
    versions: list[VersionFacts], signed_at: datetime, languages: list[str]
) -> int | None:
    """The id of the text version a client most likely signed on paper on ``signed_at``.

    The content in force that day is the newest major version published on or before
    it (a form signed before the first version, when the paper predates the app: the
    first one).  Of that content, the newest version then published in the first of
    ``languages`` (the client's, then the practice's) that has one, else in any
    language.  ``None`` when there is no version at all."""
    if not versions:
        return None
    day = signed_at.date()
    published = [v for v in versions if v.created_at.date() <= day]
    major = max(v.major for v in published) if published else min(v.major for v in versions)
    pool = [v for v in (published or versions) if v.major == major]
    for language in languages:
        if chosen := [v for v in pool if v.language == language]:
            pool = chosen
            break
    pick = max if published else min  # before the first version: the first one
    return pick(pool, key=lambda v: (v.minor, v.created_at)).id
