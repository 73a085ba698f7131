"""Labels, tones and explanations for each status, in every supported language."""

from __future__ import annotations

from typing import Literal

from samtycke_plugin.i18n import N_, t
from samtycke_plugin.rules import Status

Tone = Literal["ok", "warn", "missing", "error"]

_LABELS: dict[Status, str] = {
    Status.VALID: N_("Valid consent"),
    Status.UNKNOWN: N_("No consent"),
    Status.REQUESTED: N_("Consent requested"),
    Status.BOUNCED: N_("Address rejected"),
    Status.UNDELIVERED: N_("Request not delivered"),
    Status.DEFERRED: N_("Answer deferred"),
    Status.REFUSED: N_("Consent declined"),
    Status.WITHDRAWN: N_("Consent withdrawn"),
    Status.REVOKED: N_("Ended by the practice"),
    Status.EXPIRED: N_("Consent expired"),
    Status.INVALIDATED: N_("Consent invalidated"),
    Status.OUTDATED: N_("Outdated text"),
    Status.ERASED: N_("Client erased"),
    Status.UNCONFIRMED: N_("Awaiting confirmation"),
}

_REASONS: dict[Status, str] = {
    Status.VALID: N_("The client has consented to the current text."),
    Status.UNKNOWN: N_("The client has never been asked for consent."),
    Status.REQUESTED: N_("A request has been sent; the client has not answered yet."),
    Status.BOUNCED: N_(
        "The consent request could not be delivered: the e-mail address was rejected. "
        "Check the address and send a new request."
    ),
    Status.UNDELIVERED: N_(
        "The consent request could not be delivered after repeated attempts. "
        "Check the address and send a new request."
    ),
    Status.DEFERRED: N_("The client put off answering the request."),
    Status.REFUSED: N_("The client declined to consent."),
    Status.WITHDRAWN: N_("The client has withdrawn their consent."),
    Status.REVOKED: N_("The practice ended this consent."),
    Status.EXPIRED: N_("The consent has expired and must be given again."),
    Status.INVALIDATED: N_("The consent was found to be invalid."),
    Status.OUTDATED: N_(
        "The client consented to an earlier version of the text; the content has changed "
        "since, so they will be asked again."
    ),
    Status.ERASED: N_(
        "The client's personal data has been erased; only pseudonymous proof remains."
    ),
    Status.UNCONFIRMED: N_(
        "Consent was ticked in an online booking whose booker may not be the client (not "
        "signed in, or another name). It counts once the client confirms it with the link "
        "mailed to their address on record."
    ),
}

_TONES: dict[Status, Tone] = {
    Status.VALID: "ok",
    Status.REQUESTED: "warn",
    Status.DEFERRED: "warn",
    Status.UNCONFIRMED: "warn",
    Status.BOUNCED: "error",
    Status.UNDELIVERED: "error",
}

_ICONS: dict[Tone, str] = {"ok": "✓", "warn": "…", "missing": "!", "error": "✗"}


def label(status: Status, locale: str | None) -> str:
    return t(locale, _LABELS[status])


def reason(status: Status, locale: str | None) -> str:
    return t(locale, _REASONS[status])


def tone(status: Status) -> Tone:
    return _TONES.get(status, "missing")


def icon(status: Status) -> str:
    return _ICONS[tone(status)]


#: Words for the codes stored on ledger events (history pages and exports).
STATE_LABELS = {
    "given": N_("Consent given"),
    "renewed": N_("Consent given again"),
    "requested": N_("Consent requested"),
    "deferred": N_("Answer deferred"),
    "refused": N_("Consent declined"),
    "withdrawn": N_("Consent withdrawn by the client"),
    "revoked": N_("Consent ended by the practice"),
    "expired": N_("Consent expired"),
    "invalidated": N_("Consent invalidated"),
    "erased": N_("Personal data erased"),
    "unknown": N_("Status unknown"),
    "unconfirmed": N_("Consent ticked, awaiting the client's confirmation"),
}

CHANNEL_LABELS = {
    "online_booking": N_("Online booking"),
    "manual": N_("Recorded by staff"),
    "email": N_("E-mail request"),
    "email_link": N_("E-mailed link"),
    "client_page": N_("The client's own page"),
    "link": N_("E-mailed link"),
    "practitioner": N_("Practitioner"),
    "system": N_("System"),
    "host": N_("Booking platform"),
}

METHOD_LABELS = {
    "paper": N_("On paper"),
    "verbal": N_("Verbally"),
    "other_system": N_("In another system"),
    "other": N_("In another way"),
    "checkbox": N_("Ticked the box"),
    "button": N_("Pressed the button on the consent page"),
    "link": N_("Through the e-mailed link"),
    "reported_by_staff": N_("Reported to the practice"),
    "ended_by_practice": N_("Ended by the practice"),
    "erasure": N_("Erasure of the client's personal data"),
    "confirm": N_("Confirmed on the page of the e-mailed link"),
}


def code_label(labels: dict[str, str], code: str | None, locale: str | None) -> str:
    """The translated word for an event code (the code itself when unknown)."""
    if not code:
        return ""
    known = labels.get(code)
    return t(locale, known) if known else code
