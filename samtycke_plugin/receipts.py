"""Consent receipts in a standard shape.

A receipt is built from one ledger event on demand: nothing is stored, so the same
event always gives the same receipt (the receipt id is derived from the event's place
in the practice's hash chain).  The format, ``samtycke-receipt/1``, is described by
``samtycke_plugin/schemas/receipt.schema.json`` and field by field in ``docs/PROOF.md``:

* the top level uses the field names of the Kantara Initiative Consent Receipt
  Specification v1.1.0 (``KI-CR-v1.1.0``);
* ``iso27560`` carries the ISO/IEC TS 27560:2023 consent-record fields that apply and
  that Kantara has no field for (notice version and hash, lawful basis, retention,
  withdrawal method, the event with its state and validity);
* ``dpv`` states the same facts with W3C Data Privacy Vocabulary terms
  (``dpv:ConsentGiven``, ``dpv:ExplicitlyExpressedConsent``, …);
* ``proof`` ties the receipt to the ledger: practice, sequence number and hashes, so
  anyone holding a signed checkpoint can check that the event is in the chain.

The client is identified only by the host's opaque client reference: a receipt holds
no name or e-mail address and stays valid after the client is erased.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from functools import cache
from importlib.resources import files
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hookspecs.types import PracticeInfo, TenantRef
from samtycke_plugin import hostdb
from samtycke_plugin.common import check_ref
from samtycke_plugin.errors import InputError, NotFound
from samtycke_plugin.i18n import N_, lang, t
from samtycke_plugin.models import ConsentEvent, Practice, TextVersion
from samtycke_plugin.rules import VALID_STATES, State

if TYPE_CHECKING:
    from hookspecs.host import Host

RECEIPT_FORMAT = "samtycke-receipt/1"
KANTARA_VERSION = "KI-CR-v1.1.0"
ISO_27560 = "ISO/IEC TS 27560:2023"
#: Namespace of the name-based (UUID v5) receipt ids: one id per ledger event, forever.
RECEIPT_NAMESPACE = uuid.UUID("5d2f0c4e-6c1b-5b8e-9a57-3f4c2d7e8a10")

#: Events a receipt can be built for: consent given (or given again) and its end.
RECEIPT_STATES = frozenset({State.GIVEN, State.RENEWED, State.WITHDRAWN, State.REVOKED})

#: Ledger states → W3C DPV consent status terms (``erased`` is the app's own: no DPV term).
DPV_STATUS: dict[State, str] = {
    State.UNKNOWN: "dpv:ConsentUnknown",
    State.REQUESTED: "dpv:ConsentRequested",
    State.DEFERRED: "dpv:ConsentRequestDeferred",
    State.GIVEN: "dpv:ConsentGiven",
    State.RENEWED: "dpv:RenewedConsentGiven",
    State.REFUSED: "dpv:ConsentRefused",
    State.WITHDRAWN: "dpv:ConsentWithdrawn",
    State.REVOKED: "dpv:ConsentRevoked",
    State.EXPIRED: "dpv:ConsentExpired",
    State.INVALIDATED: "dpv:ConsentInvalidated",
    # Ticked by someone who may not be the client, and the client asked to confirm it.
    State.UNCONFIRMED: "dpv:ConsentRequested",
}

#: Ledger states → the DPV consent control the event exercised, where there is one.
DPV_CONTROL: dict[State, str] = {
    State.REQUESTED: "dpv:ObtainConsent",
    State.GIVEN: "dpv:ProvideConsent",
    State.RENEWED: "dpv:ReaffirmConsent",
    State.REFUSED: "dpv:RefuseConsent",
    State.WITHDRAWN: "dpv:WithdrawConsent",
}

#: How consent was collected, by ledger channel and method (in the receipt's language).
_COLLECTION: dict[tuple[str, str | None], str] = {
    ("online_booking", "checkbox"): N_(
        "Online booking: the client ticked an unticked consent box next to the text"
    ),
    ("email_link", "button"): N_(
        "E-mailed link: the client read the text on the consent page and pressed the "
        "consent button"
    ),
    ("email_link", "confirm"): N_(
        "Online booking, confirmed by the client: the box was ticked in a booking, and the "
        "client confirmed it with the link mailed to their address on record"
    ),
    ("client_page", "button"): N_(
        "The client's own page: the client read the text and pressed the consent button"
    ),
    ("manual", "paper"): N_("Given on paper and recorded by the practice"),
    ("manual", "verbal"): N_("Given verbally and recorded by the practice"),
    ("manual", "other_system"): N_("Given in another system and recorded by the practice"),
    ("manual", "other"): N_("Given in another way and recorded by the practice"),
}
_COLLECTION_OTHER = N_("Recorded by the practice (channel: %(channel)s)")

_PURPOSE = N_(
    "To book, carry out and follow up the client's appointments, and to contact the client "
    "about them"
)
_PURPOSE_CATEGORIES = (N_("Providing care or treatment"), N_("Booking and appointments"))
_PII_CATEGORIES = (
    N_("Contact details"),
    N_("Bookings"),
    N_("Notes the treatment requires (may include health data)"),
)
_SPI_CATEGORIES = (N_("Health data (GDPR Art. 9)"),)
_LAWFUL_BASIS = ("GDPR Art. 6(1)(a)", "GDPR Art. 9(2)(a)")
_RIGHTS = (
    N_("Access to your data"),
    N_("Correction of your data"),
    N_("Erasure of your data"),
    N_("Restriction of processing"),
    N_("Data portability"),
    N_("Complaint to a data protection authority"),
)
_WITHDRAWAL = N_(
    "Withdraw at any time, as easily as you gave your consent: with the link in the "
    "receipt e-mail or by contacting %(practice)s. Withdrawing does not affect processing "
    "that has already taken place."
)
_TERMINATION = N_("Valid until withdrawn.")
_TERMINATION_UNTIL = N_("Valid until withdrawn, at the latest until %(date)s.")
_RETENTION = N_(
    "As long as you are a client of %(practice)s, and after that only as long as the law "
    "requires (see the text you agreed to)."
)
_STORAGE = N_("In the booking platform %(practice)s uses")
_SERVICE = N_("Care and bookings at %(practice)s")

#: Telephone country codes for turning a national number into RFC 3966 form.
_CALLING_CODES = {"SE": "46", "NO": "47", "DK": "45", "FI": "358", "IS": "354", "DE": "49"}


@cache
def receipt_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the receipt format, as shipped."""
    raw = (files("samtycke_plugin") / "schemas" / "receipt.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(raw)
    return schema


def receipt_id(event: ConsentEvent) -> str:
    """The stable receipt id of an event (UUID v5 of its place in the chain)."""
    name = f"{event.tenant_ref}\n{event.seq}\n{event.row_hash}"
    return str(uuid.uuid5(RECEIPT_NAMESPACE, name))


def notice_uri(text: TextVersion) -> str:
    """A URI naming exactly the text version shown (language, version and content hash)."""
    return (
        f"urn:samtycke:notice:{text.tenant_ref}:{text.language}:{text.major}.{text.minor}:"
        f"sha256:{text.sha256}"
    )


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _country(locale: str | None) -> str | None:
    """``sv_SE`` / ``sv-SE`` → ``SE``; no region → ``None``."""
    if not locale:
        return None
    parts = locale.replace("-", "_").split("_")
    if len(parts) >= 2 and len(parts[1]) == 2 and parts[1].isalpha():
        return parts[1].upper()
    return None


def _tel(phone: str | None, country: str | None) -> str | None:
    """A phone number as an RFC 3966 global ``tel:`` URI, or ``None`` if unsure."""
    if not phone:
        return None
    digits = "".join(ch for ch in phone if ch in "0123456789")  # not "²" or "٣"
    if phone.strip().startswith("+") and 6 <= len(digits) <= 15:
        return f"tel:+{digits}"
    code = _CALLING_CODES.get(country or "")
    if code and digits.startswith("0") and 6 <= len(digits) <= 14:
        return f"tel:+{code}{digits[1:]}"
    return None


def _controller(tenant: str, info: PracticeInfo | None) -> dict[str, Any]:
    country = _country(info.locale) if info else None
    name = info.name if info and info.name else tenant
    controller: dict[str, Any] = {
        "piiController": name,
        "onBehalf": False,
        "contact": (info.email or info.phone or name) if info else name,
        "address": {"addressCountry": country} if country else {},
    }
    if info and info.email:
        controller["email"] = info.email
    tel = _tel(info.phone if info else None, country)
    if tel:
        controller["phone"] = tel
    return controller


def collection_method(event: ConsentEvent, language: str) -> str:
    """How the consent was collected, as a sentence in ``language``."""
    sentence = _COLLECTION.get((event.channel, event.method))
    if sentence is not None:
        return t(language, sentence)
    channel = event.channel + "/" + (event.method or "-")
    return t(language, _COLLECTION_OTHER, channel=channel)


def _ended_consent(session: Session, event: ConsentEvent) -> ConsentEvent | None:
    """The consent a withdrawal or revocation ended (the client's latest grant before it)."""
    return session.scalars(
        select(ConsentEvent)
        .where(
            ConsentEvent.tenant_ref == event.tenant_ref,
            ConsentEvent.client_ref == event.client_ref,
            ConsentEvent.seq < event.seq,
            ConsentEvent.state.in_([s.value for s in VALID_STATES]),
        )
        .order_by(ConsentEvent.seq.desc())
        .limit(1)
    ).first()


def _event(session: Session, tenant: str, event_id: int) -> ConsentEvent:
    if isinstance(event_id, bool) or not isinstance(event_id, int) or event_id < 1:
        raise InputError("event_id", "must be a positive whole number")
    event = session.get(ConsentEvent, event_id)
    if event is None or event.tenant_ref != tenant:
        raise NotFound(N_("No such consent event in this practice."))
    return event


def build_receipt(host: Host, tenant: str, event_id: int) -> dict[str, Any]:
    """The receipt (plain JSON data) for one ledger event of ``tenant``.

    ``event_id`` is the event's id (:attr:`ConsentEvent.id`, as returned by the record
    functions).  Receipts exist for consent given or given again and for its end
    (withdrawn by the client, revoked by the practice).  Another practice's event, or an
    event of another kind, raises :class:`NotFound`.  Reads only; works after the app was
    deactivated and after the client was erased.
    """
    with hostdb.session(host) as session:
        tenant = check_ref("tenant", tenant)
        event = _event(session, tenant, event_id)
        return receipt_for(host, event)


def receipt_for(host: Host, event: ConsentEvent) -> dict[str, Any]:
    """The receipt of an event already loaded (see :func:`build_receipt`)."""
    state = State(event.state)
    if state not in RECEIPT_STATES or event.text_version_id is None:
        raise NotFound(N_("There is no receipt for this kind of event."))
    with hostdb.session(host) as session:
        text = session.get(TextVersion, event.text_version_id)
        if text is None or text.tenant_ref != event.tenant_ref:
            raise NotFound(N_("The text version of this event is missing."))
        practice = session.get(Practice, event.tenant_ref)
        info = host.practice_info(TenantRef(event.tenant_ref))
        default = practice.default_language if practice else None
        language = lang(event.language or text.language or default)
        name = info.name if info and info.name else event.tenant_ref
        country = _country(info.locale) if info else None
        jurisdiction = country or "EU"
        granted = state in VALID_STATES
        when = (event.given_at or event.occurred_at) if granted else event.occurred_at
        ended = None if granted else _ended_consent(session, event)
        rid = receipt_id(event)
        notice = notice_uri(text)
        if event.expires_at is not None:
            termination = t(language, _TERMINATION_UNTIL,
                            date=event.expires_at.strftime("%Y-%m-%d"))
        else:
            termination = t(language, _TERMINATION)
        withdrawal = t(language, _WITHDRAWAL, practice=name)
        validity: str | None = None
        if granted and event.expires_at is not None:
            validity = f"P{max(0, (event.expires_at - when).days)}D"
        by_subject = state is not State.REVOKED
        return {
            "version": KANTARA_VERSION,
            "jurisdiction": jurisdiction,
            "consentTimestamp": int(when.timestamp()),
            "collectionMethod": collection_method(event, language),
            "consentReceiptID": rid,
            "language": language,
            "piiPrincipalId": event.client_ref,
            "piiControllers": [_controller(event.tenant_ref, info)],
            "policyUrl": notice,
            "services": [
                {
                    "service": t(language, _SERVICE, practice=name),
                    "purposes": [
                        {
                            "purpose": t(language, _PURPOSE),
                            "purposeCategory": [t(language, c) for c in _PURPOSE_CATEGORIES],
                            "consentType": "EXPLICIT",
                            "piiCategory": [t(language, c) for c in _PII_CATEGORIES],
                            "primaryPurpose": True,
                            "termination": f"{termination} {withdrawal}",
                            "thirdPartyDisclosure": False,
                        }
                    ],
                }
            ],
            "sensitive": True,
            "spiCat": [t(language, c) for c in _SPI_CATEGORIES],
            "iso27560": {
                "schemaVersion": f"{ISO_27560}; {RECEIPT_FORMAT}",
                "recordId": f"{event.tenant_ref}/{event.seq}",
                "receiptId": rid,
                "piiPrincipalId": event.client_ref,
                "privacyNotice": {
                    "uri": notice,
                    "version": f"{text.major}.{text.minor}",
                    "language": text.language,
                    "sha256": text.sha256,
                    "publishedAt": _iso(text.created_at),
                    "text": text.body,
                },
                "lawfulBasis": list(_LAWFUL_BASIS),
                "storageLocations": [t(language, _STORAGE, practice=name)],
                "retentionPeriod": t(language, _RETENTION, practice=name),
                "recipientThirdParties": [],
                "withdrawalMethod": withdrawal,
                "privacyRights": [t(language, r) for r in _RIGHTS],
                "event": {
                    "eventTime": _iso(when),
                    "recordedTime": _iso(event.occurred_at),
                    "validityDuration": validity,
                    "validUntil": _iso(event.expires_at) if granted else None,
                    "entityId": event.client_ref if by_subject else event.tenant_ref,
                    "recordedBy": event.actor,
                    "eventType": "dpv:ExplicitlyExpressedConsent",
                    "eventState": DPV_STATUS[state],
                    "indicationMethod": f"{event.channel}/{event.method or '-'}",
                    "terminatesReceipt": receipt_id(ended) if ended is not None else None,
                },
            },
            "dpv": {
                "hasConsentStatus": DPV_STATUS[state],
                "hasConsentControl": DPV_CONTROL.get(state),
                "hasLegalBasis": "dpv:ExplicitlyExpressedConsent",
                "hasDataSubject": event.client_ref,
                "hasDataController": name,
                "hasNotice": notice,
                "dct:language": language,
                "isIndicatedAtTime": _iso(when),
                "isIndicatedBy": "dpv:DataSubject" if by_subject else "dpv:DataController",
                "hasIndicationMethod": f"{event.channel}/{event.method or '-'}",
                "hasExpiryTime": _iso(event.expires_at) if granted else None,
                "hasJurisdiction": jurisdiction,
            },
            "proof": {
                "format": RECEIPT_FORMAT,
                "practice": event.tenant_ref,
                "seq": event.seq,
                "rowHash": event.row_hash,
                "prevHash": event.prev_hash,
                "textSha256": event.text_sha256,
                "evidenceSha256": event.evidence_sha256,
            },
        }


def receipts_for_client(host: Host, tenant: str, client: str) -> list[dict[str, Any]]:
    """Every receipt of one client in one practice, oldest first."""
    with hostdb.session(host) as session:
        tenant = check_ref("tenant", tenant)
        client = check_ref("client", client)
        events = session.scalars(
            select(ConsentEvent)
            .where(
                ConsentEvent.tenant_ref == tenant,
                ConsentEvent.client_ref == client,
                ConsentEvent.state.in_([s.value for s in RECEIPT_STATES]),
                ConsentEvent.text_version_id.is_not(None),
            )
            .order_by(ConsentEvent.seq)
        ).all()
        return [receipt_for(host, ev) for ev in events]


__all__ = [
    "DPV_STATUS",
    "KANTARA_VERSION",
    "RECEIPT_FORMAT",
    "RECEIPT_STATES",
    "build_receipt",
    "collection_method",
    "notice_uri",
    "receipt_for",
    "receipt_id",
    "receipt_schema",
    "receipts_for_client",
]
