"""Verified identity for online consent: a booking whose booker may not be the client
records the consent as unconfirmed, mails the client's address on record a link, and
only the client's confirmation on that link's page makes the consent valid (SQLite and
PostgreSQL, real SMTP, the real WSGI pages)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import attrs
import pytest
from hostkit import TestHost, staff, submission
from smtp_support import Browser, Received, SmtpServer, form_fields, path_of, running_server
from sqlalchemy import select, text

from hookspecs.types import BookingFormContext, BookingRef, BookingSubmission, ClientRef, TenantRef
from samtycke_plugin import consent
from samtycke_plugin.chain import verify_chain
from samtycke_plugin.email.confirm import KIND_CONFIRM
from samtycke_plugin.email.relay import send_due
from samtycke_plugin.ledger import projection, replay
from samtycke_plugin.models import ConsentEvent, Evidence, OutboxMessage

CONFIRM_LINK = re.compile(r"https?://[^\s\"'<>]+/apps/samtycke/v/([A-Za-z0-9_-]{43})")


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    yield from running_server()


def _events(host: TestHost, tenant: str) -> list[ConsentEvent]:
    host.session().rollback()
    return list(host.session().scalars(
        select(ConsentEvent).where(ConsentEvent.tenant_ref == tenant).order_by(ConsentEvent.seq)))


def _text_id(host: TestHost, tenant: str, client: str) -> int:
    [fragment] = host.hooks().form_fragments(BookingFormContext(
        tenant=TenantRef(tenant), client=ClientRef(client), locale="sv"))
    host.session().rollback()
    found = re.search(r'name="samtycke_text" value="(\d+)"', fragment.html)
    assert found is not None
    return int(found.group(1))


def _book(host: TestHost, tenant: str, client: str, **booker: object) -> BookingSubmission:
    """An online booking of an existing client who ticked the box, the host saying
    ``booker`` about who booked; checked, recorded and committed."""
    sub = attrs.evolve(
        submission(tenant, client, ticked=True, text_id=_text_id(host, tenant, client)),
        **booker)
    hooks = host.hooks()
    assert hooks.submit_check(sub) == []
    hooks.submitted(sub, BookingRef("b-" + client), ClientRef(client))
    host.session().commit()
    return sub


def _status(host: TestHost, tenant: str, client: str) -> str:
    host.session().rollback()
    return consent.client_status(host, tenant, client).status.value


def _setup(host: TestHost, **settings: object) -> tuple[str, str]:
    tenant = host.new_tenant()
    settings.setdefault("ask_clients_without_consent", True)  # set up: the form asks
    host.activate(host.hooks(), tenant, **settings)
    client = host.new_client(tenant, name="Anna Svensson", email="anna@example.org")
    return tenant, client


def _kept_by(host: TestHost, tenant: str, client: str) -> set[str]:
    """The consent list filters that keep ``client``, run as a host runs them."""
    kept = set()
    for key in ("samtycke.valid", "samtycke.not_valid"):
        clause = host.hooks().list_filter_clause(TenantRef(tenant), key, f"'{client}'")
        assert clause is not None
        found = host.session().execute(text(f"SELECT 1 WHERE {clause.condition.sql}"),
                                       dict(clause.condition.params)).first()
        kept |= {key} if found else set()
    host.session().rollback()
    return kept


def _confirm_token(mail: Received) -> str:
    found = set(CONFIRM_LINK.findall(mail.text))
    assert len(found) == 1, found
    return found.pop()


def test_a_mismatched_booking_is_unconfirmed_until_the_client_confirms(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    tenant, client = _setup(host, validity_days=365)
    _book(host, tenant, client, booker_signed_in=False, booker_name="Eva Annan",
          booker_email="anna@example.org")

    [waiting] = _events(host, tenant)
    assert (waiting.state, waiting.channel, waiting.actor) == ("unconfirmed", "online_booking",
                                                               "client")
    assert waiting.given_at is None and waiting.expires_at is None
    evidence = host.session().get(Evidence, waiting.id)
    assert evidence is not None and evidence.note is not None
    assert '"Eva Annan"' in evidence.note and "signed in: no" in evidence.note
    assert _status(host, tenant, client) == "unconfirmed"
    hooks = host.hooks()
    answer = hooks.consent_lookup(TenantRef(tenant), [ClientRef(client)], "care")
    assert answer is not None and answer[ClientRef(client)].may_use is False
    assert answer[ClientRef(client)].status == "unconfirmed"
    [panel] = hooks.profile_panels(TenantRef(tenant), ClientRef(client), staff(), "sv")
    assert "Väntar på bekräftelse" in panel.html and panel.tone == "warn"
    [badge] = hooks.list_badges(TenantRef(tenant), [ClientRef(client)], "sv")[ClientRef(client)]
    assert badge.label == "Väntar på bekräftelse"
    host.session().rollback()
    assert _kept_by(host, tenant, client) == {"samtycke.not_valid"}

    report = send_due(host, tenant=tenant, transport=smtp_server.transport())
    assert report.sent == 1
    [mail] = smtp_server.messages
    assert mail.rcpt_tos == ["anna@example.org"]
    assert mail.message["To"].addresses[0].display_name == "Anna Svensson"  # not the typed name
    assert "Bekräfta" in mail.message["Subject"] and "Eva Annan" not in mail.text
    token = _confirm_token(mail)

    browser = Browser(host)
    page = browser.get(path_of("v", token))
    assert page.status_code == 200 and "Bekräfta" in page.text
    assert "Samtycke till hälsouppgifter" in page.text  # the text that was ticked
    assert browser.head(path_of("v", token)).status_code == 200
    assert browser.get(path_of("v", token)).status_code == 200
    assert [e.state for e in _events(host, tenant)] == ["unconfirmed"]  # GET records nothing
    fields = form_fields(page.text)
    forged = browser.post(path_of("v", token), data={"decision": "confirm"})
    assert forged.status_code == 403
    assert [e.state for e in _events(host, tenant)] == ["unconfirmed"]

    done = browser.post(path_of("v", token), data={**fields, "decision": "confirm"})
    assert done.status_code == 200 and "bekräftat" in done.text
    events = _events(host, tenant)
    assert [e.state for e in events] == ["unconfirmed", "given"]
    given = events[-1]
    assert (given.channel, given.method, given.actor) == ("email_link", "confirm", "client")
    assert given.text_version_id == waiting.text_version_id
    assert given.given_at is not None and given.expires_at is not None
    assert _status(host, tenant, client) == "valid"
    assert _kept_by(host, tenant, client) == {"samtycke.valid"}

    again = browser.post(path_of("v", token), data={**fields, "decision": "confirm"})
    assert again.status_code == 200 and "redan" in again.text
    assert len(_events(host, tenant)) == 2
    report = send_due(host, tenant=tenant, transport=smtp_server.transport())
    assert report.sent == 1 and "Kvitto" in smtp_server.messages[-1].message["Subject"]
    host.session().rollback()
    assert verify_chain(host.session(), tenant).ok
    assert projection(host.session(), tenant) == replay(host.session(), tenant)


def test_the_mail_goes_to_the_address_on_record_not_the_one_typed(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    tenant, client = _setup(host)
    _book(host, tenant, client, booker_signed_in=True, booker_name="Anna Svensson",
          booker_email="eva@elsewhere.example")
    assert _status(host, tenant, client) == "unconfirmed"
    send_due(host, tenant=tenant, transport=smtp_server.transport())
    assert [m.rcpt_tos for m in smtp_server.messages] == [["anna@example.org"]]
    host.session().rollback()
    [row] = host.session().scalars(
        select(OutboxMessage).where(OutboxMessage.tenant_ref == tenant)).all()
    assert row.kind == KIND_CONFIRM and row.to_addr == "anna@example.org"


def test_another_name_alone_is_a_mismatch_and_case_and_spaces_are_not(host: TestHost) -> None:
    tenant, client = _setup(host)
    _book(host, tenant, client, booker_signed_in=True, booker_name="  anna   SVENSSON ")
    assert _status(host, tenant, client) == "valid"
    other = host.new_client(tenant, name="Bo Ek", email="bo@example.org")
    _book(host, tenant, other, booker_name="Bo Eklund")  # the host says nothing of sign-in
    assert _status(host, tenant, other) == "unconfirmed"


def test_a_matching_signed_in_booker_is_valid_at_once(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    tenant, client = _setup(host)
    _book(host, tenant, client, booker_signed_in=True, booker_name="Anna Svensson",
          booker_email="anna@example.org")
    assert [e.state for e in _events(host, tenant)] == ["given"]
    assert _status(host, tenant, client) == "valid"
    send_due(host, tenant=tenant, transport=smtp_server.transport())
    assert ["Kvitto" in m.message["Subject"] for m in smtp_server.messages] == [True]


def test_a_host_that_says_nothing_keeps_the_old_behaviour(host: TestHost) -> None:
    tenant, client = _setup(host)
    _book(host, tenant, client)
    assert _status(host, tenant, client) == "valid"


def test_always_asks_a_matching_booker_too(host: TestHost, smtp_server: SmtpServer) -> None:
    tenant, client = _setup(host, confirm_online_consent="always")
    _book(host, tenant, client, booker_signed_in=True, booker_name="Anna Svensson",
          booker_email="anna@example.org")
    assert [e.state for e in _events(host, tenant)] == ["unconfirmed"]
    assert _status(host, tenant, client) == "unconfirmed"
    send_due(host, tenant=tenant, transport=smtp_server.transport())
    [mail] = smtp_server.messages
    token = _confirm_token(mail)
    browser = Browser(host)
    page = browser.get(path_of("v", token))
    browser.post(path_of("v", token), data={**form_fields(page.text), "decision": "confirm"})
    assert _status(host, tenant, client) == "valid"


def test_a_new_client_is_not_asked_to_confirm_on_mismatch(host: TestHost) -> None:
    tenant, client = _setup(host)
    sub = attrs.evolve(
        submission(tenant, None, ticked=True, text_id=_text_id(host, tenant, client),
                   is_new=True),
        booker_signed_in=False, booker_name="Anna Svensson")
    hooks = host.hooks()
    assert hooks.submit_check(sub) == []
    hooks.submitted(sub, BookingRef("b-new"), ClientRef(client))
    host.session().commit()
    assert _status(host, tenant, client) == "valid"


def test_a_second_mismatched_booking_replaces_the_link(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    tenant, client = _setup(host)
    _book(host, tenant, client, booker_signed_in=False)
    send_due(host, tenant=tenant, transport=smtp_server.transport())
    first = _confirm_token(smtp_server.messages[0])
    _book(host, tenant, client, booker_signed_in=False)
    send_due(host, tenant=tenant, transport=smtp_server.transport())
    second = _confirm_token(smtp_server.messages[1])
    browser = Browser(host)
    assert browser.get(path_of("v", first)).status_code == 404  # replaced: unusable
    page = browser.get(path_of("v", second))
    browser.post(path_of("v", second), data={**form_fields(page.text), "decision": "confirm"})
    assert _status(host, tenant, client) == "valid"
    host.session().rollback()
    assert verify_chain(host.session(), tenant).ok
