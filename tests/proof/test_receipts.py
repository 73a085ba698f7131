"""Standard receipts (F16): Kantara CR 1.1 field names, ISO/IEC TS 27560 record fields,
DPV status terms; every receipt validated against the shipped JSON Schema."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from hostkit import TestHost, staff, submission
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError
from sqlalchemy import select

from hookspecs.types import BookingFormContext, BookingRef, ClientRef, PracticeInfo, TenantRef
from samtycke_plugin import consent, receipts
from samtycke_plugin.email import requests as mail_requests
from samtycke_plugin.errors import InputError, NotFound
from samtycke_plugin.models import ConsentEvent, TextVersion

VALIDATOR = Draft202012Validator(receipts.receipt_schema(), format_checker=FormatChecker())


def valid(receipt: dict[str, Any]) -> dict[str, Any]:
    """Validate against the shipped schema (and survive a JSON round trip)."""
    VALIDATOR.validate(receipt)
    assert json.loads(json.dumps(receipt)) == receipt
    return receipt


def test_the_shipped_schema_is_a_valid_json_schema() -> None:
    Draft202012Validator.check_schema(receipts.receipt_schema())


def _book(host: TestHost, tenant: str, client: str) -> ConsentEvent:
    hooks = host.hooks()
    frags = hooks.form_fragments(
        BookingFormContext(tenant=TenantRef(tenant), client=ClientRef(client), locale="sv")
    )
    html = frags[0].html
    marker = 'name="samtycke_text" value="'
    start = html.index(marker) + len(marker)
    text_id = int(html[start : html.index('"', start)])
    host.session().rollback()
    sub = submission(tenant, client, ticked=True, text_id=text_id)
    assert hooks.submit_check(sub) == []
    hooks.submitted(sub, BookingRef("b-" + client), ClientRef(client))
    host.session().commit()
    return _latest(host, tenant, client)


def _latest(host: TestHost, tenant: str, client: str) -> ConsentEvent:
    event = host.session().scalars(
        select(ConsentEvent)
        .where(ConsentEvent.tenant_ref == tenant, ConsentEvent.client_ref == client)
        .order_by(ConsentEvent.seq.desc()).limit(1)
    ).first()
    assert event is not None
    return event


def _lifecycle(host: TestHost) -> tuple[str, str, dict[str, ConsentEvent]]:
    """given (online booking) → renewed (paper) → withdrawn (client) → given (verbal)
    → revoked (practice), for one client; a request for another."""
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, require_consent_for_online_booking=True, validity_days=365)
    client = host.new_client(tenant, name="Zlatan Unikson", email="zlatan.unikson@example.org")
    events: dict[str, ConsentEvent] = {"given": _book(host, tenant, client)}
    host.advance(days=2)
    events["renewed"] = consent.record_manual(
        host, tenant, client, staff(), method="paper", given_at=host.now() - timedelta(days=1),
        note="Signed the paper form at the reception",
    )
    host.session().commit()
    host.advance(days=3)
    events["withdrawn"] = consent.withdraw(
        host, tenant, client, actor="client", channel="practitioner",
        method="reported_by_staff", by_client=True,
    )
    host.session().commit()
    host.advance(days=1)
    events["given_again"] = consent.record_manual(
        host, tenant, client, staff(), method="verbal", given_at=host.now(), note=None,
        language="en",
    )
    host.session().commit()
    host.advance(days=1)
    events["revoked"] = consent.withdraw(
        host, tenant, client, actor="staff:s1", channel="practitioner",
        method="ended_by_practice", by_client=False,
    )
    host.session().commit()
    other = host.new_client(tenant, name="Other Person", email="other@example.org")
    mail_requests.send_request(host, tenant, other, actor="staff:s1")
    host.session().commit()
    events["requested"] = _latest(host, tenant, other)
    assert events["requested"].state == "requested"
    return tenant, client, events


def test_receipts_for_every_receipt_kind_validate_and_carry_the_facts(host: TestHost) -> None:
    tenant, client, events = _lifecycle(host)
    session = host.session()
    built = {
        name: valid(receipts.build_receipt(host, tenant, ev.id))
        for name, ev in events.items() if name != "requested"
    }
    given, renewed, withdrawn = built["given"], built["renewed"], built["withdrawn"]
    ev = events["given"]
    text = session.get(TextVersion, ev.text_version_id)
    assert text is not None

    # Kantara CR 1.1 fields.
    assert given["version"] == "KI-CR-v1.1.0"
    assert given["consentTimestamp"] == int(ev.given_at.timestamp())  # type: ignore[union-attr]
    assert given["piiPrincipalId"] == client
    assert given["language"] == "sv" and given["jurisdiction"] == "EU"
    assert given["piiControllers"][0]["piiController"] == "Kliniken Lugn & Ro"
    # The host gave no country: no guessed address, phone or jurisdiction.
    assert given["piiControllers"][0]["address"] == {}
    assert "phone" not in given["piiControllers"][0]
    assert given["policyUrl"].endswith("sha256:" + text.sha256)
    purpose = given["services"][0]["purposes"][0]
    assert purpose["consentType"] == "EXPLICIT" and purpose["primaryPurpose"] is True
    assert "2027-" in purpose["termination"]  # validity_days=365 → an end date
    assert given["collectionMethod"].startswith("Onlinebokning")  # Swedish: the text shown
    # ISO/IEC TS 27560 record fields.
    iso = given["iso27560"]
    assert iso["recordId"] == f"{tenant}/{ev.seq}"
    assert iso["receiptId"] == given["consentReceiptID"]
    assert iso["privacyNotice"]["text"] == text.body
    assert iso["privacyNotice"]["sha256"] == text.sha256 == ev.text_sha256
    assert iso["event"]["eventState"] == "dpv:ConsentGiven"
    assert iso["event"]["validityDuration"] == "P365D"
    assert iso["event"]["recordedBy"] == "client"
    # DPV terms.
    assert given["dpv"]["hasConsentStatus"] == "dpv:ConsentGiven"
    assert given["dpv"]["hasConsentControl"] == "dpv:ProvideConsent"
    assert renewed["dpv"]["hasConsentStatus"] == "dpv:RenewedConsentGiven"
    assert renewed["iso27560"]["event"]["recordedBy"] == "staff:s1"
    assert renewed["consentTimestamp"] == int(events["renewed"].given_at.timestamp())  # type: ignore[union-attr]
    assert renewed["consentTimestamp"] < int(events["renewed"].occurred_at.timestamp())
    assert "papper" in renewed["collectionMethod"]
    assert withdrawn["dpv"]["hasConsentStatus"] == "dpv:ConsentWithdrawn"
    assert withdrawn["dpv"]["isIndicatedBy"] == "dpv:DataSubject"
    assert withdrawn["iso27560"]["event"]["terminatesReceipt"] == renewed["consentReceiptID"]
    assert built["revoked"]["dpv"]["hasConsentStatus"] == "dpv:ConsentRevoked"
    assert built["revoked"]["dpv"]["isIndicatedBy"] == "dpv:DataController"
    assert (built["revoked"]["iso27560"]["event"]["terminatesReceipt"]
            == built["given_again"]["consentReceiptID"])
    # English text shown → an English receipt.
    assert built["given_again"]["language"] == "en"
    assert built["given_again"]["collectionMethod"] == (
        "Given verbally and recorded by the practice"
    )
    # Proof: tied to the chain.
    assert given["proof"]["rowHash"] == ev.row_hash and given["proof"]["seq"] == ev.seq
    # Pseudonymous: no name or e-mail of the client anywhere in any receipt.
    blob = json.dumps(built, ensure_ascii=False).lower()
    assert "zlatan" not in blob and "unikson" not in blob
    # Distinct, stable ids.
    ids = [r["consentReceiptID"] for r in built.values()]
    assert len(set(ids)) == len(ids)
    assert receipts.build_receipt(host, tenant, ev.id) == given
    assert receipts.receipts_for_client(host, tenant, client) == [
        built[k] for k in ("given", "renewed", "withdrawn", "given_again", "revoked")
    ]
    session.rollback()


def test_no_receipt_for_other_kinds_other_practices_or_bad_ids(host: TestHost) -> None:
    tenant, _client, events = _lifecycle(host)
    other = host.new_tenant()
    host.activate(host.hooks(), other)
    with pytest.raises(NotFound):
        receipts.build_receipt(host, tenant, events["requested"].id)
    with pytest.raises(NotFound):
        receipts.build_receipt(host, other, events["given"].id)
    with pytest.raises(NotFound):
        receipts.build_receipt(host, tenant, 10**12)
    for bad in (0, -1, True, "1"):
        with pytest.raises(InputError):
            receipts.build_receipt(host, tenant, bad)  # type: ignore[arg-type]
    with pytest.raises(InputError):
        receipts.build_receipt(host, "not a ref!", events["given"].id)
    host.session().rollback()


def test_the_schema_rejects_a_receipt_that_breaks_the_format(host: TestHost) -> None:
    tenant, _client, events = _lifecycle(host)
    good = receipts.build_receipt(host, tenant, events["given"].id)
    host.session().rollback()
    broken: list[dict[str, Any]] = [
        {k: v for k, v in good.items() if k != "consentReceiptID"},
        {**good, "version": "KI-CR-v1.0.0"},
        {**good, "consentTimestamp": "2026-11-29"},
        {**good, "extra": 1},
        {**good, "dpv": {**good["dpv"], "hasConsentStatus": "dpv:ConsentMaybe"}},
        {**good, "proof": {**good["proof"], "rowHash": "nothex"}},
        {**good, "services": [{"service": "x", "purposes": [
            {**good["services"][0]["purposes"][0], "thirdPartyDisclosure": True}]}]},
    ]
    for receipt in broken:
        with pytest.raises(ValidationError):
            VALIDATOR.validate(receipt)


def test_receipts_survive_deactivation_and_erasure(host: TestHost) -> None:
    tenant, client, events = _lifecycle(host)
    hooks = host.hooks()
    hooks.deactivate(TenantRef(tenant), "samtycke")
    host.session().commit()
    hooks.client_erased(TenantRef(tenant), ClientRef(client))
    host.session().commit()
    after = valid(receipts.build_receipt(host, tenant, events["given"].id))
    assert after["piiPrincipalId"] == client
    assert after["proof"]["evidenceSha256"] == events["given"].evidence_sha256
    host.session().rollback()


def test_controller_country_phone_and_jurisdiction_from_the_host(host: TestHost) -> None:
    tenant, _client, events = _lifecycle(host)
    info = host.practices[tenant]
    host.practices[tenant] = PracticeInfo(
        ref=info.ref, name=info.name, email=info.email, phone=info.phone, locale="sv_SE"
    )
    receipt = valid(receipts.build_receipt(host, tenant, events["given"].id))
    controller = receipt["piiControllers"][0]
    assert receipt["jurisdiction"] == "SE" and receipt["dpv"]["hasJurisdiction"] == "SE"
    assert controller["address"] == {"addressCountry": "SE"}
    assert controller["phone"] == "tel:+4681234567"  # 08-123 45 67, RFC 3966 global form
    assert controller["email"] == "info@lugnochro.example"
    host.practices[tenant] = PracticeInfo(
        ref=info.ref, name=info.name, email=None, phone="+47 22 33 44 55", locale="nb_NO"
    )
    receipt = valid(receipts.build_receipt(host, tenant, events["given"].id))
    assert receipt["piiControllers"][0]["phone"] == "tel:+4722334455"
    assert receipt["piiControllers"][0]["contact"] == "+47 22 33 44 55"
    assert "email" not in receipt["piiControllers"][0]
    host.session().rollback()
