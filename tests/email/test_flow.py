"""The whole e-mail path against a real SMTP server (aiosmtpd) and the real WSGI pages:
request → mail → consent page → accept → receipt → withdrawal page → withdrawn
(F5b, F6, F14, F15), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from hostkit import TestHost, staff, submission
from smtp_support import FROM_ADDR, Browser, SmtpServer, form_fields, path_of, running_server
from sqlalchemy import func, select

from hookspecs.types import BookingRef, ClientInfo, ClientRef
from samtycke_plugin import consent, practice_texts, practices
from samtycke_plugin.chain import verify_chain
from samtycke_plugin.email import addresses, tokens
from samtycke_plugin.email import batch as batch_requests
from samtycke_plugin.email import requests as mail_requests
from samtycke_plugin.email.relay import send_due
from samtycke_plugin.ledger import projection, replay
from samtycke_plugin.models import ConsentEvent, ConsentRequest, OutboxMessage, TextVersion


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    yield from running_server()


def _events(host: TestHost, tenant: str) -> list[ConsentEvent]:
    host.session().rollback()
    return list(
        host.session().scalars(
            select(ConsentEvent).where(ConsentEvent.tenant_ref == tenant).order_by(ConsentEvent.seq)
        )
    )


def _setup(host: TestHost, **settings: object) -> tuple[str, str]:
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, **settings)
    client = host.new_client(tenant, name="Anna Svensson", email="Anna@Example.org")
    return tenant, client


def test_full_path_request_mail_accept_receipt_withdraw(
    host: TestHost, smtp_server: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tenant, client = _setup(host, validity_days=365)

    req = mail_requests.send_request(host, tenant, client, actor="staff:s1")
    host.session().commit()
    assert req.delivery == "queued"
    assert consent.client_status(host, tenant, client).status.value == "requested"

    report = send_due(host, tenant=tenant, transport=smtp_server.transport())
    assert (report.sent, report.retried, report.bounced) == (1, 0, 0)
    [mail] = smtp_server.messages
    assert mail.rcpt_tos == ["Anna@example.org"]  # normalised domain
    assert mail.mail_from == FROM_ADDR
    msg = mail.message
    assert "Kliniken Lugn & Ro" in msg["Subject"] and "samtycke" in msg["Subject"]
    assert msg["From"].addresses[0].display_name == "Kliniken Lugn & Ro"
    assert msg["To"].addresses[0].display_name == "Anna Svensson"
    assert msg["Reply-To"] == "info@lugnochro.example"
    assert msg["Message-ID"].startswith("<samtycke.")
    assert msg["Message-ID"].endswith("@booking.test>")
    assert msg.get_content_type() == "multipart/alternative"
    assert "<img" not in mail.html.lower() and "Hej Anna Svensson" in mail.text
    assert "08-123 45 67" in mail.text and "Kliniken Lugn &amp; Ro" in mail.html
    purpose, token = mail.link()
    assert purpose == "c"
    assert token in mail.html
    # The database holds the token's hash, never the token; the outbox holds no token.
    host.session().rollback()
    stored = host.session().get(ConsentRequest, req.id)
    assert stored is not None and stored.token_hash == tokens.token_hash(token)
    outbox = host.session().scalars(
        select(OutboxMessage).where(OutboxMessage.tenant_ref == tenant)
    ).all()
    assert all(token not in json.dumps(o.payload) for o in outbox)
    assert stored.delivery == "sent"

    browser = Browser(host)
    page = browser.get(path_of("c", token))
    assert page.status_code == 200
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["Cache-Control"] == "no-store"
    assert "<script" not in page.text.lower()
    html = page.text
    text_row = host.session().scalars(
        select(TextVersion).where(TextVersion.tenant_ref == tenant, TextVersion.language == "sv")
    ).one()
    assert "Kliniken Lugn" in html and "Jag godkänner" in html and "Jag avböjer" in html
    fields = form_fields(html)
    assert fields["text"] == str(text_row.id)
    assert len(_events(host, tenant)) == 1  # only "requested": the GET wrote nothing

    done = browser.post(path_of("c", token), data={**fields, "decision": "accept"})
    assert done.status_code == 200, done.text
    assert "Tack" in done.text and "kvitto" in done.text
    assert done.headers["Referrer-Policy"] == "no-referrer"
    events = _events(host, tenant)
    assert [e.state for e in events] == ["requested", "given"]
    given = events[-1]
    assert (given.channel, given.method, given.actor) == ("email_link", "button", "client")
    assert given.text_version_id == text_row.id and given.text_sha256 == text_row.sha256
    assert given.request_id == req.id and given.expires_at is not None
    assert consent.client_status(host, tenant, client).status.value == "valid"

    # The receipt: what, when, the text itself, a withdrawal link.
    report = send_due(host, tenant=tenant, transport=smtp_server.transport())
    assert report.sent == 1
    receipt = smtp_server.messages[-1]
    assert "Kvitto" in receipt.message["Subject"]
    assert "version 1.0" in receipt.text and text_row.sha256 in receipt.text
    assert "2026-11-29" in receipt.text  # the date consent was given
    assert "Samtycke till hälsouppgifter för din behandling" in receipt.text  # the text itself
    w_purpose, w_token = receipt.link()
    assert w_purpose == "w" and w_token != token
    # The standard receipt (Kantara Consent Receipt field names) rides along as JSON.
    [attachment] = list(receipt.message.iter_attachments())
    assert attachment.get_content_type() == "application/json"
    assert attachment.get_filename() == "samtyckeskvitto.json"
    kantara = json.loads(attachment.get_content())
    assert kantara["consentReceiptID"] and kantara["consentTimestamp"]
    assert kantara["language"] == "sv"

    confirm = browser.get(path_of("w", w_token))
    assert confirm.status_code == 200 and "Återkalla samtycke" in confirm.text
    assert len(_events(host, tenant)) == 2
    withdrawn = browser.post(
        path_of("w", w_token), data={**form_fields(confirm.text), "decision": "withdraw"}
    )
    assert withdrawn.status_code == 200 and "återkallat" in withdrawn.text
    events = _events(host, tenant)
    assert [e.state for e in events] == ["requested", "given", "withdrawn"]
    assert events[-1].channel == "email_link" and events[-1].actor == "client"
    assert consent.client_status(host, tenant, client).status.value == "withdrawn"

    # Used links: a calm page, nothing written.
    again = browser.post(path_of("w", w_token), data={**form_fields(confirm.text)})
    assert again.status_code == 200 and "redan" in again.text
    assert browser.get(path_of("c", token)).status_code == 200
    assert len(_events(host, tenant)) == 3

    host.session().rollback()
    assert verify_chain(host.session(), tenant).ok
    assert projection(host.session(), tenant) == replay(host.session(), tenant)
    # No token in any log of the app or the web stack ("mail.log" is the receiving
    # test server's own protocol trace, i.e. the recipient's side).
    app_records = [r for r in caplog.records if r.name != "mail.log"]
    assert any(r.name.startswith("samtycke") for r in app_records)
    for record in app_records:
        assert token not in record.getMessage() and w_token not in record.getMessage()


def test_english_client_gets_english_mail_page_and_receipt(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    tenant, _ = _setup(host)
    client = host.new_client(tenant, name="John Smith", email="john@example.com", locale="en_GB")
    mail_requests.send_request(host, tenant, client, actor="staff:s1")
    host.session().commit()
    send_due(host, tenant=tenant, transport=smtp_server.transport())
    [mail] = smtp_server.messages
    assert "asks for your consent" in mail.message["Subject"] and "Hello John Smith" in mail.text
    _, token = mail.link()
    browser = Browser(host)
    page = browser.get(path_of("c", token))
    assert 'lang="en"' in page.text and "I accept" in page.text
    assert "Consent to health information for your treatment" in page.text  # the English text
    done = browser.post(path_of("c", token), data={**form_fields(page.text), "decision": "accept"})
    assert "Thank you" in done.text
    event = _events(host, tenant)[-1]
    assert (event.state, event.language) == ("given", "en")
    send_due(host, tenant=tenant, transport=smtp_server.transport())
    assert "Receipt" in smtp_server.messages[-1].message["Subject"]


def test_decline_records_refused_without_receipt(host: TestHost, smtp_server: SmtpServer) -> None:
    tenant, client = _setup(host)
    mail_requests.send_request(host, tenant, client, actor="staff:s1")
    host.session().commit()
    send_due(host, tenant=tenant, transport=smtp_server.transport())
    _, token = smtp_server.messages[0].link()
    browser = Browser(host)
    page = browser.get(path_of("c", token))
    done = browser.post(path_of("c", token), data={**form_fields(page.text), "decision": "decline"})
    assert done.status_code == 200 and "avböjde" in done.text
    assert [e.state for e in _events(host, tenant)] == ["requested", "refused"]
    no_receipt = send_due(host, tenant=tenant, transport=smtp_server.transport())
    assert no_receipt.handled == 0
    assert consent.client_status(host, tenant, client).status.value == "refused"


def test_scanner_head_and_get_record_nothing_and_a_later_human_post_works(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    tenant, client = _setup(host)
    mail_requests.send_request(host, tenant, client, actor="staff:s1")
    host.session().commit()
    send_due(host, tenant=tenant, transport=smtp_server.transport())
    _, token = smtp_server.messages[0].link()
    scanner = Browser(host)
    for _ in range(3):
        head = scanner.head(path_of("c", token), headers={"User-Agent": "HeadlessChrome"})
        assert head.status_code == 200 and head.data == b""
        got = scanner.get(path_of("c", token), headers={"User-Agent": "SafeLinks/1.0"})
        assert got.status_code == 200
        # A scanner following every link on the page reaches nothing that writes.
        assert "<script" not in got.text.lower() and 'http-equiv="refresh"' not in got.text.lower()
    host.session().rollback()
    stored = host.session().scalars(
        select(ConsentRequest).where(ConsentRequest.tenant_ref == tenant)
    ).one()
    assert stored.used_at is None
    assert [e.state for e in _events(host, tenant)] == ["requested"]
    human = Browser(host)
    page = human.get(path_of("c", token))
    done = human.post(path_of("c", token), data={**form_fields(page.text), "decision": "accept"})
    assert done.status_code == 200
    assert [e.state for e in _events(host, tenant)] == ["requested", "given"]


def test_double_post_and_two_tabs_record_exactly_one_event(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    tenant, client = _setup(host)
    mail_requests.send_request(host, tenant, client, actor="staff:s1")
    host.session().commit()
    send_due(host, tenant=tenant, transport=smtp_server.transport())
    _, token = smtp_server.messages[0].link()
    tab1, tab2 = Browser(host), Browser(host)
    form1 = form_fields(tab1.get(path_of("c", token)).text)
    form2 = form_fields(tab2.get(path_of("c", token)).text)
    first = tab1.post(path_of("c", token), data={**form1, "decision": "accept"})
    second = tab1.post(path_of("c", token), data={**form1, "decision": "accept"})
    third = tab2.post(path_of("c", token), data={**form2, "decision": "decline"})
    assert first.status_code == 200 and "Tack" in first.text
    for calm in (second, third):
        assert calm.status_code == 200
        assert "Ditt svar är redan registrerat" in calm.text
    assert [e.state for e in _events(host, tenant)] == ["requested", "given"]
    host.session().rollback()
    assert host.session().scalar(
        select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.tenant_ref == tenant, OutboxMessage.kind == "receipt"
        )
    ) == 1


def test_text_changed_after_the_mail_shows_the_new_text_and_records_it(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    tenant, client = _setup(host)
    mail_requests.send_request(host, tenant, client, actor="staff:s1")
    host.session().commit()
    send_due(host, tenant=tenant, transport=smtp_server.transport())
    _, token = smtp_server.messages[0].link()
    browser = Browser(host)
    old_form = form_fields(browser.get(path_of("c", token)).text)

    practice = practices.require_practice(host.session(), tenant)
    [new] = practice_texts.publish_text(
        host, tenant, bodies={"sv": "Ny text om hur vi hanterar dina uppgifter, version två."},
        kind="content", reason="nytt system", actor="staff:s1",
        expected_major=practice.current_major,
    )
    host.session().commit()

    # The form shown before the change: not recorded, the new text is shown instead.
    stale = browser.post(path_of("c", token), data={**old_form, "decision": "accept"})
    assert stale.status_code == 409 and "Ny text om hur vi hanterar" in stale.text
    assert [e.state for e in _events(host, tenant)] == ["requested"]
    fresh = form_fields(stale.text)
    assert fresh["text"] == str(new.id)
    done = browser.post(path_of("c", token), data={**fresh, "decision": "accept"})
    assert done.status_code == 200
    given = _events(host, tenant)[-1]
    assert (given.state, given.text_version_id, given.text_major) == ("given", new.id, 2)
    assert consent.client_status(host, tenant, client).status.value == "valid"


def test_withdrawal_takes_no_more_steps_than_consent(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    """Art. 7(3): consent = open link + one button; withdrawal = open link + one button."""
    tenant, client = _setup(host)
    mail_requests.send_request(host, tenant, client, actor="staff:s1")
    host.session().commit()
    send_due(host, tenant=tenant, transport=smtp_server.transport())
    browser = Browser(host)
    _, token = smtp_server.messages[0].link()
    consent_page = browser.get(path_of("c", token))
    consent_buttons = consent_page.text.count('type="submit"')
    browser.post(path_of("c", token), data={**form_fields(consent_page.text), "decision": "accept"})
    send_due(host, tenant=tenant, transport=smtp_server.transport())
    _, w_token = smtp_server.messages[-1].link()
    withdraw_page = browser.get(path_of("w", w_token))
    assert withdraw_page.text.count('type="submit"') == 1 <= consent_buttons
    browser.post(
        path_of("w", w_token), data={**form_fields(withdraw_page.text), "decision": "withdraw"}
    )
    assert consent.client_status(host, tenant, client).status.value == "withdrawn"


def test_withdraw_link_when_consent_already_ended_writes_nothing(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    tenant, client = _setup(host)
    mail_requests.send_request(host, tenant, client, actor="staff:s1")
    host.session().commit()
    send_due(host, tenant=tenant, transport=smtp_server.transport())
    browser = Browser(host)
    _, token = smtp_server.messages[0].link()
    page = browser.get(path_of("c", token))
    browser.post(path_of("c", token), data={**form_fields(page.text), "decision": "accept"})
    send_due(host, tenant=tenant, transport=smtp_server.transport())
    _, w_token = smtp_server.messages[-1].link()
    confirm = browser.get(path_of("w", w_token))
    # The practitioner records the withdrawal first (F15, the other path).
    consent.withdraw(host, tenant, client, actor="staff:s1", channel="manual", method="phone",
                     by_client=True)
    host.session().commit()
    late = browser.post(path_of("w", w_token), data={**form_fields(confirm.text)})
    assert late.status_code == 200 and "Det finns inget samtycke att återkalla" in late.text
    assert [e.state for e in _events(host, tenant)] == ["requested", "given", "withdrawn"]


def test_online_booking_consent_gets_a_receipt_with_a_working_withdraw_link(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, require_consent_for_online_booking=True)
    client = host.new_client(tenant, email="bokare@example.org")
    no_mail = host.new_client(tenant, email=None)
    text_id = practice_texts.current_text(
        host.session(), practices.require_practice(host.session(), tenant), "sv"
    ).id
    host.session().rollback()
    for who in (client, no_mail):
        sub = submission(tenant, who, ticked=True, text_id=text_id)
        assert hooks.submit_check(sub) == []
        hooks.submitted(sub, BookingRef("b-" + who), ClientRef(who))
        host.session().commit()
    report = send_due(host, tenant=tenant, transport=smtp_server.transport())
    assert report.sent == 1  # only the client with an address gets a receipt
    [receipt] = smtp_server.messages
    assert receipt.rcpt_tos == ["bokare@example.org"] and "Kvitto" in receipt.message["Subject"]
    _, w_token = receipt.link()
    browser = Browser(host)
    confirm = browser.get(path_of("w", w_token))
    browser.post(path_of("w", w_token), data={**form_fields(confirm.text), "decision": "withdraw"})
    states = [e.state for e in _events(host, tenant) if e.client_ref == client]
    assert states == ["given", "withdrawn"]


def test_simultaneous_posts_from_two_connections_record_one_event(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    """L2: a double click racing on two database connections (two worker threads)."""
    import threading

    tenant, client = _setup(host)
    mail_requests.send_request(host, tenant, client, actor="staff:s1")
    host.session().commit()
    send_due(host, tenant=tenant, transport=smtp_server.transport())
    _, token = smtp_server.messages[0].link()
    form = form_fields(Browser(host).get(path_of("c", token)).text)
    workers = [TestHost(host.engine) for _ in range(4)]
    for w in workers:
        w.clients, w.practices = host.clients, host.practices
    barrier = threading.Barrier(len(workers))
    statuses: list[int] = []
    bodies: list[str] = []

    def click(w: TestHost) -> None:
        browser = Browser(w)
        barrier.wait()
        response = browser.post(path_of("c", token), data={**form, "decision": "accept"})
        statuses.append(response.status_code)
        bodies.append(response.text)
        w.close()

    threads = [threading.Thread(target=click, args=(w,)) for w in workers]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert statuses == [200] * len(workers)
    assert sum("Tack!" in b for b in bodies) == 1
    assert sum("redan registrerat" in b for b in bodies) == len(workers) - 1
    assert [e.state for e in _events(host, tenant)] == ["requested", "given"]


def test_a_batch_request_is_minted_when_sent_and_the_client_looked_at_again(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    """A batch queues rows; the relay mints each link as it sends.  A client who gave
    consent, was erased from the host or lost the address before the relay ran is not
    asked (the row is cancelled with the reason); the others get one mail each."""
    tenant, anna = _setup(host, validity_days=365)
    others = [host.new_client(tenant, name=f"Klient {i}", email=f"k{i}@example.org")
              for i in range(4)]
    consented, erased, no_address, *asked = others
    result = batch_requests.request_batch(host, tenant, actor="staff:s1")
    assert result.asked == 5
    assert consent.client_status(host, tenant, anna).status.value == "unknown"

    consent.record_manual(host, tenant, consented, staff(), method="paper",
                          given_at=host.now(), note=None)
    host.session().commit()
    del host.clients[(tenant, erased)]
    info = host.clients[(tenant, no_address)]
    host.clients[(tenant, no_address)] = ClientInfo(
        ref=info.ref, name=info.name, email=None, locale=info.locale
    )

    report = send_due(host, tenant=tenant, transport=smtp_server.transport())
    assert report.sent == 3  # two requests, and the receipt of the consent given on paper
    receipt_to = addresses.normalise_address(host.clients[(tenant, consented)].email)
    requests = [m for m in smtp_server.messages if m.rcpt_tos[0] != receipt_to]
    [receipt] = [m for m in smtp_server.messages if m.rcpt_tos[0] == receipt_to]
    assert receipt.link()[0] == "w"
    assert sorted(m.rcpt_tos[0] for m in requests) == sorted(
        addresses.normalise_address(host.clients[(tenant, c)].email) for c in [anna, *asked]
    )
    host.session().rollback()
    why = dict(host.session().execute(
        select(OutboxMessage.client_ref, OutboxMessage.last_error).where(
            OutboxMessage.tenant_ref == tenant, OutboxMessage.status == "cancelled")
    ).all())
    assert why == {
        consented: "not asked: the client has valid consent now",
        erased: "not asked: the client no longer exists in this practice",
        no_address: "not asked: the client has no usable e-mail address",
    }
    for ref in (anna, *asked):
        assert consent.client_status(host, tenant, ref).status.value == "requested"
    assert consent.client_status(host, tenant, no_address).status.value == "unknown"
    requested = [e.client_ref for e in _events(host, tenant) if e.state == "requested"]
    assert sorted(requested) == sorted([anna, *asked])
    host.session().rollback()
    assert verify_chain(host.session(), tenant).ok
    assert projection(host.session(), tenant) == replay(host.session(), tenant)
